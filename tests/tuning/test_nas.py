"""`tradeoff nas` on MNIST-1D: the strategies under one protocol, the zero-cost proxy's first picks, the front, the
reference model, and the chosen architecture handed on to optimize."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

import tradeoff as to
from tradeoff.config import load_task
from tradeoff.errors import ConfigError
from tradeoff.evaluation import Evaluator
from tradeoff.metrics import get_metric
from tradeoff.nas import load_space, proxy_batch, rank_by_proxy, sample_candidates
from tradeoff.problem import problem
from tradeoff.search.select import dominates

TRADEOFF = Path(sys.executable).with_name("tradeoff")
SPACE = {"family": "cnn", "cnn": {"depth": {"low": 1, "high": 3}, "width": [8, 16, 32], "kernel": [3, 5],
                                  "stride": [1, 2], "norm": ["none", "batch"]}}


def _task(tmp_path: Path, trials: int, nas: dict[str, Any], epochs: int = 3, **sections: Any) -> Path:
    raw = {**sections, "name": "mnist1d-nas",
           "model": {"source": "torch", "factory": "tradeoff.architectures:mnist1d_paper_cnn"},
           "data": {"source": "builtin", "name": "mnist1d"},
           "runtime": {"threads": 1, "timing_s": 0.3},  # every candidate is timed; no test reads how fast
           "train": {"epochs": epochs, "lr": 0.003, "early_stopping": {"monitor": "metric", "patience": 2,
                                                                       "split": "val"}},
           "search": {"trials": trials, "seed": 0}, "nas": {"space": SPACE, **nas}}
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> to.NasResult:
    folder = tmp_path_factory.mktemp("nas")
    return to.nas(_task(folder, 6, {"strategy": "evolution", "proxy": "naswot", "proxy_candidates": 12,
                                    "proxy_top": 2}), out=folder / "runs", quiet=True)


def test_the_proxy_picks_are_trained_first(searched: to.NasResult) -> None:
    summary = json.loads((searched.run_dir / "nas.json").read_text())
    scores = [c["score"] for c in summary["proxy"]]
    assert len(scores) == 12 and scores == sorted(scores, reverse=True)
    first = [t for t in summary["trials"] if t["strategy"] == "proxy"]
    assert [t["number"] for t in first] == [0, 1]


def test_the_front_holds_exactly_the_undominated_trials(searched: to.NasResult) -> None:
    summary = json.loads((searched.run_dir / "nas.json").read_text())
    latency = "latency_ms.p50@b1"
    points = {t["number"]: (-t["values"]["metric"], t["values"][latency], t["values"]["params"])
              for t in summary["trials"] if t["state"] == "complete"}
    front = {n for n, p in points.items() if not any(dominates(q, p) for q in points.values())}
    assert set(summary["front"]) == front and searched.front == summary["front"]
    reference = summary["reference"]
    assert reference["model"]["factory"] == "tradeoff.architectures:mnist1d_paper_cnn"
    assert reference["values"]["params"] == 5210 and 0 < reference["test_metric"] <= 1
    mine = (-reference["values"]["metric"], reference["values"][latency], reference["values"]["params"])
    assert reference["dominated_by"] == [n for n, p in points.items() if dominates(p, mine)]


def test_the_chosen_architecture_goes_on_to_optimize_as_a_task_file(searched: to.NasResult) -> None:
    assert searched.tuned_task is not None and searched.tuned_task.name == "nas.yaml"
    task = load_task(searched.tuned_task)
    assert task.nas is None and task.model.factory == searched.architecture["factory"]
    assert task.model.options == searched.architecture["options"]
    given = problem(task)
    evaluator = Evaluator(given.model, given.data, get_metric("accuracy"), 1, (1,))
    assert evaluator.score(given.model, "test") == pytest.approx(searched.test_metric)
    html = (searched.run_dir / "report.html").read_text()
    assert "Pareto front" in html and "Reference, the task's own model" in html


@pytest.mark.parametrize("strategy", ["random", "tpe", "rl"])
def test_each_strategy_searches_under_the_same_protocol(tmp_path: Path, strategy: str) -> None:
    result = to.nas(_task(tmp_path, 3, {"strategy": strategy}, epochs=1), out=tmp_path / "runs", quiet=True)
    trials = json.loads((result.run_dir / "nas.json").read_text())["trials"]
    assert len(trials) == 3 and all(t["values"]["epochs"] == 1 for t in trials if t["state"] == "complete")
    assert all(t["params"]["model"]["factory"] == "tradeoff.architectures:CNN" for t in trials)


def test_proxy_ranking_is_what_the_search_queued(tmp_path: Path) -> None:
    """The same sample and ranking, rebuilt outside the run, gives the parameters the run trained first."""
    result = to.nas(_task(tmp_path, 2, {"strategy": "random", "proxy": "synflow", "proxy_candidates": 6,
                                        "proxy_top": 2}, epochs=1), out=tmp_path / "runs", quiet=True)
    given = problem(load_task(result.run_dir / "task.yaml"))
    space = load_space(SPACE, given.data.sample_shape, 10)
    ranked = rank_by_proxy(sample_candidates(space, 6, 0), proxy_batch(given.data.train, seed=0), "synflow", 0)
    summary = json.loads((result.run_dir / "nas.json").read_text())
    assert [t["params"]["model"] for t in summary["trials"]] == \
        [r.candidate.architecture.model_section() for r in ranked[:2]]


def test_a_strategy_of_one_objective_with_two_is_one_line(tmp_path: Path) -> None:
    task = _task(tmp_path, 2, {"strategy": "evolution", "objectives": ["metric", "latency"]})
    with pytest.raises(ConfigError, match="strategy evolution follows one objective"):
        to.nas(task, out=tmp_path / "runs", quiet=True)
    if TRADEOFF.is_file():
        done = subprocess.run([str(TRADEOFF), "nas", str(task)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_evolution_breeds_one_change_from_the_population_once_it_is_full(tmp_path: Path) -> None:
    result = to.nas(_task(tmp_path, 6, {"strategy": "evolution", "population": 3, "tournament": 2}, epochs=1),
                    out=tmp_path / "runs", quiet=True)
    trials = json.loads((result.run_dir / "nas.json").read_text())["trials"]
    study = optuna.load_study(study_name="mnist1d-nas", storage=f"sqlite:///{result.run_dir / 'study.db'}")
    params = [t.params for t in sorted(study.trials, key=lambda t: t.number)]
    assert len(trials) == 6
    for child in params[3:]:  # each bred from an earlier trial by exactly one changed choice (or a new block)
        assert any(sum(child.get(k) != parent.get(k) for k in {*child, *parent}) >= 1 and
                   sum(child.get(k) != parent.get(k) for k in child.keys() & parent.keys()) <= 1
                   for parent in params[: params.index(child)])


def test_rerank_trains_the_best_trials_longer_and_chooses_by_that(tmp_path: Path) -> None:
    """A short search protocol ranks roughly; rerank trains its best trials by the longer options, judges them on
    validation, chooses the best of those, and trains the choice (and the reference) so on train+val."""
    rerank = {"top": 3, "train": {"epochs": 3, "early_stopping": None}}
    result = to.nas(_task(tmp_path, 4, {"strategy": "random", "rerank": rerank}, epochs=1), out=tmp_path / "runs",
                    quiet=True)
    summary = json.loads((result.run_dir / "nas.json").read_text())
    complete = [t for t in summary["trials"] if t["state"] == "complete"]
    by_search = sorted(complete, key=lambda t: -t["values"]["metric"])[:3]  # stable: the earlier trial on a tie
    assert [r["trial"] for r in summary["reranked"]] == [t["number"] for t in by_search] == \
        [r["trial"] for r in result.reranked]
    assert all(r["epochs"] == 3 for r in result.reranked)  # the longer options, no early stop: all 3 epochs kept
    best = max(result.reranked, key=lambda r: r["metric"])
    assert result.trial == best["trial"] == summary["best"]["trial"]
    assert summary["final"]["epochs"] == 3 and summary["reference"]["rerank_metric"] > 0
    assert load_task(result.tuned_task).train.epochs == 3  # type: ignore[arg-type]
    assert "Rerank: the best trials" in (result.run_dir / "report.html").read_text()


def test_rerank_by_folds_judges_each_trial_on_every_fold_of_train_and_val(tmp_path: Path) -> None:
    """Where validation is too small to rank by, each reranked trial (and the reference) is trained once per fold
    of train+val and judged by the mean of the folds it did not train on."""
    rerank = {"top": 2, "folds": 3, "train": {"epochs": 2, "early_stopping": None}}
    result = to.nas(_task(tmp_path, 3, {"strategy": "random", "rerank": rerank}, epochs=1,
                          constraints={"max_latency_ratio": 10.0}), out=tmp_path / "runs", quiet=True)
    summary = json.loads((result.run_dir / "nas.json").read_text())
    # under a latency ceiling, the trials reranked are the best that still held it when timed again
    assert [r["trial"] for r in result.reranked] == [r["trial"] for r in summary["retimed"] if not r["over"]][:2]
    for judged in [*result.reranked, {"metric": summary["reference"]["rerank_metric"],
                                      "folds": summary["reference"]["rerank_folds"]}]:
        assert len(judged["folds"]) == 3 and judged["metric"] == pytest.approx(sum(judged["folds"]) / 3)
        assert all(0.0 < fold <= 1.0 for fold in judged["folds"])
    assert result.trial == max(result.reranked, key=lambda r: r["metric"])["trial"]
    html = (result.run_dir / "report.html").read_text()
    assert "the mean of 3 cross-validation folds of train+val" in html
    # the reference is judged in the same table, and where it beats every reranked trial the report says so
    beaten = summary["reference"]["rerank_metric"] > max(r["metric"] for r in result.reranked)
    assert summary["reference"]["rerank_beats_all"] == beaten
    assert ("the task's own model is better than every trial reranked" in html) == beaten
    assert f"reference</td><td class=num>–</td><td class=num>{summary['reference']['rerank_metric']:.4f}" in html


@pytest.mark.parametrize(("nas", "said"), [
    ({"objectives": ["latency", "metric"], "rerank": {}}, "metric must be the first of objectives"),
    ({"rerank": {"train": {"epoch": 3}}}, "nas.rerank.train"),
    ({"rerank": {"folds": 10_000}}, "nas.rerank.folds 10000 leaves fewer than 2 samples per fold"),
])
def test_a_rerank_that_cannot_run_is_refused_before_the_search(tmp_path: Path, nas: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        to.nas(_task(tmp_path, 2, {"strategy": "random", **nas}), out=tmp_path / "runs", quiet=True)
    assert not (tmp_path / "runs" / "mnist1d-nas" / "nas.json").exists()


def test_the_time_budget_holds_the_rerank_and_final_training(tmp_path: Path) -> None:
    """search.timeout_s bounds the whole run: the search stops while the time left holds the retrained best (the
    rerank's longer trainings on each fold, then train+val), reckoned from the speed its trials trained at; a search
    that filled the budget would overrun it by all of those."""
    rerank = {"top": 2, "folds": 2, "train": {"epochs": 10, "early_stopping": None}}
    timeout = 25.0
    start = time.monotonic()
    task = _task(tmp_path, 10_000, {"strategy": "random", "rerank": rerank}, epochs=2)
    raw = yaml.safe_load(task.read_text())
    task.write_text(yaml.safe_dump({**raw, "search": {**raw["search"], "timeout_s": timeout}}))
    result = to.nas(task, out=tmp_path / "runs", quiet=True)
    elapsed = time.monotonic() - start
    budget = json.loads((result.run_dir / "nas.json").read_text())["budget"]
    assert budget["timeout_s"] == timeout
    # what followed the search was worth keeping time for (a fifth of the budget and more), and the estimate kept
    # for it was near what it took (over it here: two-epoch trials carry their start-up in their speed)
    assert budget["after_search_s"] > timeout / 5
    assert 0.5 < budget["reserved_s"] / budget["after_search_s"] < 3.0
    assert elapsed < timeout + budget["after_search_s"] / 2
