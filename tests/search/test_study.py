"""The study loop against a real storage: a run killed with SIGKILL resumes, and workers share one study."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from tradeoff.errors import ConfigError
from tradeoff.search.record import claim, mark_candidate, records, write_result
from tradeoff.search.study import StudyRun, open_study

TESTS = Path(__file__).resolve().parents[1]
TRADEOFF = Path(sys.executable).with_name("tradeoff")


def _optimize(task: Path, out: Path) -> subprocess.Popen[bytes]:
    """`tradeoff optimize` as a user runs it, from the folder its factory (conftest:DigitsMLP) imports from."""
    return subprocess.Popen([str(TRADEOFF), "optimize", str(task), "--out", str(out), "--quiet"], cwd=TESTS,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop_when(condition, process: subprocess.Popen[bytes], timeout_s: float = 600.0) -> None:
    """Leave the process paused (SIGSTOP) at a moment the condition holds: checked on a running process, a slow or
    loaded machine could let the trial seen running finish before the kill arrives."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise AssertionError(f"optimize ended before it could be killed: {process.stderr.read().decode()[-2000:]}")
        process.send_signal(signal.SIGSTOP)
        if condition():
            return
        process.send_signal(signal.SIGCONT)
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("optimize did not reach the point to kill it at")
        time.sleep(0.2)


@pytest.mark.skipif(not TRADEOFF.is_file(), reason="the tradeoff command is not installed beside this Python")
def test_a_run_killed_mid_trial_resumes_without_losing_or_repeating_a_finished_trial(task_file, tmp_path: Path) -> None:
    heartbeat_s, budget = 1, 6  # more than the seeds, so the retried trial runs
    # one finalist: the report is read for its trials, and each finalist is rebuilt (fine-tuning included) to retime;
    # two passes: few seeds, so a small budget leaves room for the retried trial
    task = task_file(search={"trials": budget, "seed": 0, "heartbeat_s": heartbeat_s, "finalists": 1,
                             "passes": ["prune.magnitude", "quantize.dynamic"]},
                     runtime={"target": "auto", "threads": 2, "timing_s": 0.3})  # latency unread
    out = tmp_path / "runs"
    storage = f"sqlite:///{out / 'digits' / 'study.db'}"

    def finished_and_one_running() -> bool:
        try:
            found = records(optuna.load_study(study_name="digits", storage=storage))
        except (KeyError, optuna.exceptions.OptunaError, Exception):  # no study or no tables yet
            return False
        return sum(r.counted for r in found) >= 2 and any(r.state == "running" and r.key for r in found)

    first = _optimize(task, out)
    _stop_when(finished_and_one_running, first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = {r.number: r for r in records(optuna.load_study(study_name="digits", storage=storage)) if r.counted}
    killed = [r for r in records(optuna.load_study(study_name="digits", storage=storage)) if r.state == "running"]
    assert killed and before
    time.sleep(3 * heartbeat_s + 1)  # the dead worker's heartbeat goes stale

    resumed = subprocess.run([str(TRADEOFF), "optimize", str(task), "--out", str(out)], cwd=TESTS,
                             capture_output=True, text=True, timeout=600, env={**os.environ})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming the search: {len(before)} of {budget} trials already measured" in resumed.stdout
    assert len(re.findall(rf"^trial \d+ \(\d+/{budget}\): ", resumed.stdout, re.MULTILINE)) == budget - len(before)
    report = json.loads((out / "digits" / "report.json").read_text())
    trials = {t["number"]: t for t in report["trials"]}
    for number, record in before.items():  # nothing finished before the kill was lost or measured anew
        assert trials[number]["metric"] == record.values.get("metric")
        assert trials[number]["state"] == record.state
    assert len(trials) == budget  # the cut-off trial cost no budget: it is counted apart, not listed
    assert len({json.dumps(t["recipe"]["steps"], sort_keys=True) for t in trials.values()}) == budget
    assert killed[0].number not in trials and report["search_stats"]["interrupted"] == 1
    retried = [r for r in records(optuna.load_study(study_name="digits", storage=storage))
               if r.retry_of == killed[0].number]
    assert len(retried) == 1 and retried[0].counted and retried[0].key == killed[0].key


def test_a_study_of_another_task_or_written_by_an_older_tradeoff_is_refused() -> None:
    study = optuna.create_study()
    claim(study, "task a", "the study")
    claim(study, "task a", "the study")  # the same task joins it
    with pytest.raises(ConfigError, match="the study was run for a different task"):
        claim(study, "task b", "the study")
    old = optuna.create_study()
    old.set_user_attr("task_key", "task a")  # what studies held before trials were TrialRecords
    with pytest.raises(ConfigError, match="written by an older tradeoff"):
        claim(old, "task a", "the study")


def test_a_trial_killed_after_writing_its_result_but_before_the_study_heard_of_it_spent_no_budget(tmp_path) -> None:
    """The kill can land between the two writes that finish a trial; the trial is queued again, so counting its
    result too would spend the budget twice on one recipe."""
    storage = RDBStorage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1, grace_period=1,
                         heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    study = optuna.create_study(storage=storage)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(trial._trial_id)
    write_result(trial, "complete", values={"metric": 0.9})  # then SIGKILL, before study.tell
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    found = records(study)
    assert [r.state for r in found] == ["interrupted"] and not found[0].counted
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 1  # measured again instead


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # PartialFixedSampler
def test_a_sampler_that_only_repeats_itself_does_not_end_the_search_with_budget_unspent(
        mlp, digits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A converged sampler proposes measured candidates again (TPE late in a NAS search). Each repeat is followed by
    a point drawn at random, so the search spends its budget instead of stopping after EXHAUSTED_AFTER repeats."""
    optimize_module = sys.modules["tradeoff.optimize"]
    stuck = {"prune": "prune.magnitude", "prune__sparsity": 0.6, "prune__schedule": "one_shot"}

    def open_stuck_study(settings, url, task_key, sampler=None, pruner=None):
        sampler = optuna.samplers.PartialFixedSampler(stuck, optuna.samplers.RandomSampler(seed=0))
        return open_study(settings, url, task_key, sampler=sampler, pruner=pruner)

    monkeypatch.setattr(optimize_module, "open_study", open_stuck_study)
    result = optimize_module.optimize(model=mlp, data=digits, out=tmp_path, quiet=True, name="stuck",
                                      runtime={"target": "torch", "threads": 1},
                                      search={"trials": 3, "seed": 0, "finalists": 1, "passes": ["prune.magnitude"]})
    study = optuna.load_study(study_name="stuck", storage=f"sqlite:///{result.run_dir / 'study.db'}")
    found = [r for r in records(study) if r.counted]
    assert len(found) == 3 and len({r.key for r in found}) == 3
    assert found[0].candidate["steps"][0]["sparsity"] == 0.6
    assert all(r.strategy == "random, after a sample that spent no budget" for r in found[1:])


def test_a_candidate_another_worker_is_measuring_waits_for_its_result_instead_of_measuring_it_again(
        tmp_path: Path) -> None:
    """Two workers that find the queue empty at once both queue the seed points; a copy drawn while the first is
    still measured must not be measured twice (the two-worker test once measured one recipe twice)."""
    storage = RDBStorage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(storage=storage)
    run = StudyRun(study=study, space=None, ctx=None, measure=None, settings=None,  # type: ignore[arg-type]
                   higher_is_better=True)
    first, second = study.ask(), study.ask()
    mark_candidate(first, {"steps": []}, "the same recipe")

    def finish() -> None:
        write_result(first, "complete", values={"latency_ratio.p50@b1": 0.5})
        study.tell(first, 0.5)

    timer = threading.Timer(1.0, finish)
    timer.start()
    started = time.monotonic()
    twin = run._twin(second, "the same recipe")  # noqa: SLF001
    timer.join()
    assert twin is not None and twin.number == first.number and twin.state == "complete"
    assert time.monotonic() - started >= 1.0  # it waited for the first to end
    assert run._twin(second, "another recipe") is None  # noqa: SLF001
