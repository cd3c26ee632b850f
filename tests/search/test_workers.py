"""Many `tradeoff worker` processes on one study in a real PostgreSQL server: they spend the budget between them,
a worker killed mid-trial costs nothing finished, and `tradeoff optimize` finalizes from every worker's trials."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from test_study import _stop_when

from tradeoff.search.record import TrialRecord, records
from tradeoff.search.study import TRIAL_ROUNDS

TESTS = Path(__file__).resolve().parents[1]
TRADEOFF = Path(sys.executable).with_name("tradeoff")
HEARTBEAT_S = 1

pytestmark = pytest.mark.skipif(not TRADEOFF.is_file(), reason="the tradeoff command is not installed beside this "
                                                               "Python")


def _worker(task: Path, storage: str) -> subprocess.Popen[str]:
    """`tradeoff worker` as a user starts it, from the folder its factory (conftest:DigitsMLP) imports from."""
    return subprocess.Popen([str(TRADEOFF), "worker", str(task), "--storage", storage], cwd=TESTS,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(worker: subprocess.Popen[str]) -> int:
    """Wait for a worker to end well; the number of trials it says it measured."""
    out, err = worker.communicate(timeout=600)
    assert worker.returncode == 0, err[-3000:]
    found = re.search(r"measured (\d+) trials; the study has (\d+) of (\d+)", out)
    assert found, out[-2000:]
    return int(found[1])


def _records(name: str, storage: str) -> list[TrialRecord]:
    return records(optuna.load_study(study_name=name, storage=storage))


def _task(task_file, name: str, budget: int) -> Path:  # noqa: ANN001 - the conftest fixture's writer
    """One finalist: optimize rebuilds each finalist's recipe to retime it, and these tests read the trials."""
    return task_file(name=name, objectives=["latency", "size"], runtime={"target": "auto", "threads": 1},
                     search={"trials": budget, "seed": 0, "heartbeat_s": HEARTBEAT_S, "finalists": 1})


def test_two_workers_spend_the_budget_between_them_and_optimize_finalizes_from_every_trial(
        task_file, postgres_url: str, tmp_path: Path) -> None:
    budget, name = 6, "two-workers"
    task = _task(task_file, name, budget)
    workers = [_worker(task, postgres_url) for _ in range(2)]
    measured = [_finish(w) for w in workers]
    assert sum(measured) == budget  # not one trial more, though both raced for the last ones
    assert not (TESTS / "runs").exists()  # a worker writes no run directory
    counted = [r for r in _records(name, postgres_url) if r.counted]
    assert len(counted) == budget and len({r.key for r in counted}) == budget
    assert all(r.spend is not None and r.spend.cpu_s > 0 for r in counted)  # what each worker's trials cost it
    # each worker timed the baseline beside each of its trials, in the same rounds, and stored every latency as a
    # ratio to it, the figure the sampler got
    timed = [r for r in counted if r.state == "complete"]
    assert timed
    for r in timed:
        ratio, ms, base = (r.values[f"{k}.p50@b1"] for k in ("latency_ratio", "latency_ms", "baseline_latency_ms"))
        assert ratio == pytest.approx(ms / base) and r.objectives is not None and r.objectives[0] == ratio
        assert r.latency is not None and r.latency.rounds == TRIAL_ROUNDS
    assert len({r.worker for r in counted}) == sum(m > 0 for m in measured)

    final = subprocess.run([str(TRADEOFF), "optimize", str(task), "--storage", postgres_url, "--out",
                            str(tmp_path / "runs")], cwd=TESTS, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"resuming the search: {budget} of {budget} trials already measured" in final.stdout
    assert not re.search(r"^trial \d+ \(", final.stdout, re.MULTILINE)  # nothing was left to measure
    report = json.loads((tmp_path / "runs" / name / "report.json").read_text())
    assert sorted(t["number"] for t in report["trials"]) == sorted(r.number for r in counted)  # each trial once
    assert all(t["spend"]["wall_s"] > 0 for t in report["trials"])
    assert report["best"]["trial"] is None or report["best"]["trial"] in {r.number for r in counted}
    assert (tmp_path / "runs" / name / "best" / "MANIFEST").is_file()


def test_a_worker_killed_mid_trial_costs_nothing_finished_and_its_trial_is_retried(
        task_file, postgres_url: str) -> None:
    budget, name = 12, "killed-worker"  # room after the kill and the seed trials queued before it: the retry runs
    task = _task(task_file, name, budget)
    doomed, survivor = _worker(task, postgres_url), _worker(task, postgres_url)

    def doomed_is_measuring() -> bool:
        try:
            found = _records(name, postgres_url)
        except (KeyError, optuna.exceptions.OptunaError):  # no study yet
            return False
        return sum(r.counted for r in found) >= 2 and any(
            r.state == "running" and r.key and r.worker and r.worker.endswith(f":{doomed.pid}") for r in found)

    _stop_when(doomed_is_measuring, doomed)
    killed = [r for r in _records(name, postgres_url)
              if r.state == "running" and r.worker and r.worker.endswith(f":{doomed.pid}")]
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    before = {r.number: r for r in _records(name, postgres_url) if r.counted}
    _finish(survivor)  # it went on alone to the end of the budget

    after = {r.number: r for r in _records(name, postgres_url)}
    assert sum(r.counted for r in after.values()) == budget
    for number, record in before.items():  # nothing finished before the kill was lost or changed
        assert after[number] == record
    assert len(killed) == 1 and after[killed[0].number].state == "interrupted"
    retried = [r for r in after.values() if r.retry_of == killed[0].number]
    assert len(retried) == 1 and retried[0].counted and retried[0].key == killed[0].key
    assert retried[0].worker is not None and retried[0].worker.endswith(f":{survivor.pid}")


def test_a_worker_without_a_shared_storage_is_one_clear_line(task_file) -> None:
    task = task_file()  # search.storage: the run directory's sqlite, which no other process shares
    done = subprocess.run([str(TRADEOFF), "worker", str(task)], cwd=TESTS, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "a worker needs a study the other processes can reach" in done.stderr and "--storage" in done.stderr


def test_workers_opening_a_fresh_database_at_once_all_get_the_study(postgres_url: str) -> None:
    """Optuna creates its tables on first use; processes started together race for the names, and the losers are
    retried instead of ending with a duplicate-key error."""
    import psycopg

    base, _, _ = postgres_url.rpartition("/")
    with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as connection:
        connection.execute("CREATE DATABASE fresh_race")
    fresh = f"{base}/fresh_race"
    opener = ("import sys; from tradeoff.search.study import _storage; "
              "import optuna; s = _storage(sys.argv[1], 1); optuna.create_study(storage=s, study_name='race', "
              "load_if_exists=True); print('opened')")
    openers = [subprocess.Popen([sys.executable, "-c", opener, fresh], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(4)]
    for process in openers:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0 and out.strip() == "opened", err[-2000:]
