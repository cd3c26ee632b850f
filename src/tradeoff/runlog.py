"""Library output goes to the run's log.txt; tradeoff's own progress stays on the terminal.

torch, ONNX Runtime, NNCF and transformers talk through every channel there is: Python warnings, their loggers,
print(), and C++ code writing straight to file descriptors 1 and 2 (the exporter's torch.fx graphs, ONNX Runtime's
"Model Optimization Failed!"). Pointing the two descriptors at the log catches all of them at once, whatever
object a library kept; tradeoff writes its own lines to `terminal()`, a copy of stdout taken before.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from tradeoff.search.record import TrialRecord

_terminal: TextIO | None = None


def terminal() -> TextIO:
    """Where tradeoff's own output goes: the real stdout, also while library output is captured."""
    return _terminal if _terminal is not None else sys.stdout


def terminal_console() -> Console:
    """A rich console on `terminal()`, for progress and results."""
    return Console(file=terminal(), highlight=False, soft_wrap=True)


def labelled_bar(label: str) -> tuple[ProgressColumn, ...]:
    """The columns of a bar that says what it counts, how far, for how long, and what is going on now."""
    return (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}"))


def live_progress(console: Console, *columns: ProgressColumn) -> Progress:
    """rich would route sys.stdout and sys.stderr above the bar, the libraries' prints too: those stay in the log."""
    return Progress(*columns, console=console, redirect_stdout=False, redirect_stderr=False)


@contextlib.contextmanager
def library_output_to(log: Path, heading: str) -> Iterator[None]:
    """Append everything written to stdout and stderr inside the block to `log`, under `heading`."""
    global _terminal
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    previous = _terminal
    with open(log, "a", encoding="utf-8") as sink, \
            os.fdopen(os.dup(saved[0]), "w", encoding="utf-8", errors="replace", buffering=1) as screen:
        sink.write(f"\n=== {heading}, {datetime.datetime.now().isoformat(timespec='seconds')}\n")
        sink.flush()
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        _terminal = screen
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            _terminal = previous


@contextlib.contextmanager
def trial_progress(total: int, done: int, quiet: bool, describe: Callable[[TrialRecord], str],
                   joining: str = "resuming the search"
                   ) -> Iterator[tuple[Callable[[TrialRecord], None], Callable[[str], None]]]:
    """A callback per finished trial (the bar advances) and one for what the current trial is doing. A resumed or
    joined study says so first (`joining`); without a terminal (CI, nohup) each finished trial is one plain line
    instead of a bar."""
    if quiet:
        yield (lambda record: None), (lambda status: None)
        return
    console = terminal_console()
    if done:
        console.print(f"{joining}: {done} of {total} trials already measured", markup=False)
    if not console.is_terminal:
        finished = itertools.count(done + 1)

        def line(record: TrialRecord) -> None:
            note = f": {record.note}" if record.note else ""
            said = f"trial {record.number} ({next(finished)}/{total}): {describe(record)} ({record.state}{note})"
            console.print(said, markup=False)

        yield line, (lambda status: None)
        return
    with live_progress(console, *labelled_bar("search")) as progress:
        bar = progress.add_task("", total=total, completed=done)

        def on_trial(record: TrialRecord) -> None:
            progress.update(bar, advance=1, description=f"trial {record.number}: {describe(record)} ({record.state})")

        def on_status(status: str) -> None:
            progress.update(bar, description=status)

        yield on_trial, on_status


@contextlib.contextmanager
def step_progress(label: str, total: int, quiet: bool) -> Iterator[Callable[[str], None]]:
    """A callback per measured step (the bar advances and says what was measured); without a terminal, one line
    when it starts instead."""
    if quiet:
        yield lambda status: None
        return
    console = terminal_console()
    if not console.is_terminal:
        console.print(f"{label}: {total} measurements", markup=False)
        yield lambda status: None
        return
    with live_progress(console, *labelled_bar(label)) as progress:
        bar = progress.add_task("", total=total)
        yield lambda status: progress.update(bar, advance=1, description=status)
