"""A throwaway PostgreSQL server on loopback, for tests and benchmarks of many workers on one study.

It runs Debian's `postgresql` package (or any server whose `initdb` is on the PATH) from a fresh data directory
in a temporary folder, on a free port, without fsync (its data is thrown away), and yields the URL a user would
give `--storage`. PostgreSQL refuses to run as root, so under root the server runs as the `postgres` user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER_USER = "postgres"  # the account Debian's package creates
DATABASE = "tradeoff"


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on the PATH, else Debian's newest /usr/lib/postgresql/<version>/bin."""
    if found := shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: _version(p.parents[1].name))
    return versions[-1].parent if versions else None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def missing() -> str | None:
    """Why a server cannot be started here (None when it can): what to install."""
    if server_binaries() is None:
        return "PostgreSQL's server programs (initdb, pg_ctl) are not installed: apt-get install postgresql"
    if os.geteuid() == 0 and (shutil.which("runuser") is None or not _user_exists(SERVER_USER)):
        return f"running as root needs runuser and the '{SERVER_USER}' user that Debian's postgresql package creates"
    return None


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server, create a database, yield its `postgresql+psycopg://` URL, and stop and delete it on exit."""
    binaries, why = server_binaries(), missing()
    if binaries is None or why is not None:
        raise RuntimeError(why)
    as_server_user = ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="tradeoff-postgres-"))
    data, log = folder / "data", folder / "server.log"
    if as_server_user:
        shutil.chown(folder, user=SERVER_USER)
    port = _free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_server_user, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            detail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}{detail}")

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", SERVER_USER, "--auth=trust", "--no-sync",
            "--encoding=UTF8")
        # a session's tests hold SQLAlchemy pools open in-process while they start workers; 100 clients ran out
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off " \
                  "-c synchronous_commit=off -c max_connections=400"
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            run(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SERVER_USER, DATABASE)
            yield f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{port}/{DATABASE}"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
