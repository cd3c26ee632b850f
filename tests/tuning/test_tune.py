"""`tradeoff tune` on real data: what it searches, what it prunes and when, and what it hands on to optimize."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
import yaml
from safetensors.torch import save_file

import tradeoff as to
from tradeoff.architectures import MLP as MLPModule
from tradeoff.config import TrainSpec, load_task
from tradeoff.errors import ConfigError
from tradeoff.evaluation import Evaluator
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.problem import problem
from tradeoff.search.record import write_intermediate, write_result
from tradeoff.training import Trainer
from tradeoff.training.distill import KnowledgeDistillation
from tradeoff.tuning.run import NoTrialFinished
from tradeoff.tuning.strategies import DominancePruner, dominance_rule, pruner_for

TRADEOFF = Path(sys.executable).with_name("tradeoff")
MLP = {"source": "torch", "factory": "tradeoff.architectures:MLP",
       "options": {"input_shape": [64], "classes": 10, "widths": [32]}}
DIGITS = {"source": "builtin", "name": "digits", "standardize": True}


def _task(tmp_path: Path, space: dict[str, Any], trials: int = 8, **sections: Any) -> Path:
    raw = {"name": "digits-tune", "model": MLP, "data": DIGITS, "runtime": {"threads": 1},
           "train": {"epochs": 5, "batch_size": 64, "early_stopping": {"monitor": "metric", "patience": 2,
                                                                      "split": "val"}},
           "search": {"trials": trials, "seed": 0}, **sections}
    raw["tune"] = {"space": space, **raw.get("tune", {})}
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


SPACE = {"train.lr": {"low": 1.0e-4, "high": 3.0e-2, "log": True}, "train.optimizer": ["adam", "sgd"],
         "train.momentum": {"low": 0.5, "high": 0.95, "when": {"train.optimizer": "sgd"}},
         "model.widths": {"layers": {"low": 1, "high": 3}, "width": [16, 32, 64]}}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> to.TuneResult:
    folder = tmp_path_factory.mktemp("tune")
    return to.tune(_task(folder, SPACE, trials=10), out=folder / "runs", quiet=True)


def test_the_tasks_own_settings_are_measured_first_and_the_best_is_no_worse(tuned: to.TuneResult) -> None:
    summary = json.loads((tuned.run_dir / "tune.json").read_text())
    defaults = summary["trials"][0]
    assert defaults["strategy"] == "defaults"
    assert defaults["params"] == {"train.lr": 0.001, "train.optimizer": "adam", "model.widths": [32]}
    assert summary["best"]["values"]["metric"] >= summary["defaults"]["values"]["metric"]
    assert tuned.val_metric == summary["best"]["values"]["metric"] and 0.9 < tuned.test_metric <= 1.0


def test_conditional_and_per_layer_parameters_are_sampled_as_declared(tuned: to.TuneResult) -> None:
    trials = json.loads((tuned.run_dir / "tune.json").read_text())["trials"]
    assert {t["params"]["train.optimizer"] for t in trials} == {"adam", "sgd"}
    for trial in trials:
        params = trial["params"]
        assert ("train.momentum" in params) == (params["train.optimizer"] == "sgd")
        assert 1 <= len(params["model.widths"]) <= 3 and set(params["model.widths"]) <= {16, 32, 64}
    assert len({len(t["params"]["model.widths"]) for t in trials}) > 1  # depth itself is searched


def test_pruned_trials_spend_fewer_epochs_and_compute_is_counted(tuned: to.TuneResult) -> None:
    summary = json.loads((tuned.run_dir / "tune.json").read_text())
    trials = summary["trials"]
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned, "the median pruner stopped none of 10 trials, the worst of which train at a 1e-4 learning rate"
    assert all(t["values"]["epochs"] < 5 and "stopped after epoch" in t["note"] for t in pruned)
    assert summary["compute"]["epochs_trained"] == sum(t["values"]["epochs"] for t in trials) < 5 * len(trials)
    html = (tuned.run_dir / "report.html").read_text()
    assert "parameter importance" in html and "best so far" in html and html.count("<script") >= 1


def test_the_tuned_task_file_rebuilds_the_final_model_for_optimize(tuned: to.TuneResult) -> None:
    assert tuned.tuned_task is not None
    task = load_task(tuned.tuned_task)
    assert task.tune is None and task.model.options["widths"] == tuned.params["model.widths"]
    assert task.train.lr == pytest.approx(tuned.params["train.lr"])
    given = problem(task)
    from tradeoff.evaluation import Evaluator
    from tradeoff.metrics import get_metric

    evaluator = Evaluator(given.model, given.data, get_metric("accuracy"), 1, (1,))
    assert evaluator.score(given.model, "test") == pytest.approx(tuned.test_metric)


def test_a_candidate_over_a_size_ceiling_is_pruned_before_any_training(tmp_path: Path) -> None:
    space = {"model.widths": {"layers": 1, "width": [8, 256]}, "train.lr": [0.003]}
    # a 64-8-10 MLP is ~2.6 kB of float32, 64-256-10 ~77 kB
    result = to.tune(_task(tmp_path, space, trials=2, constraints={"max_size_bytes": 20_000}), out=tmp_path / "r",
                     quiet=True)
    summary = json.loads((result.run_dir / "tune.json").read_text())
    trials = {t["params"]["model.widths"][0]: t for t in summary["trials"]}
    assert trials[256]["state"] == "pruned" and trials[256]["note"].startswith("not trained: max_size_bytes")
    assert "epochs" not in trials[256]["values"] and trials[256]["values"]["size_bytes"] > 20_000
    assert trials[8]["state"] == "complete" and result.params["model.widths"] == [8]


def test_a_candidate_over_a_parameter_ceiling_is_pruned_before_it_is_even_timed(tmp_path: Path) -> None:
    space = {"model.widths": {"layers": 1, "width": [8, 256]}, "train.lr": [0.003]}  # 610 and 19,210 parameters
    task = _task(tmp_path, space, trials=2, constraints={"max_params": 5_000, "max_latency_ratio": 100.0})
    summary = json.loads((to.tune(task, out=tmp_path / "r", quiet=True).run_dir / "tune.json").read_text())
    trials = {t["params"]["model.widths"][0]: t for t in summary["trials"]}
    assert trials[256]["state"] == "pruned" and trials[256]["note"].startswith("not trained: max_params 1.921e+04")
    assert "latency_ratio.p50@b1" not in trials[256]["values"]  # what is counted refused it: no timing spent
    assert trials[8]["state"] == "complete" and trials[8]["values"]["latency_ratio.p50@b1"] > 0


def test_a_latency_ceiling_relative_to_the_tasks_own_model_prunes_by_the_measured_ratio(tmp_path: Path) -> None:
    # two layers of 2048 read 17 MB of weights per prediction; the task's own 64-32-10 MLP, 9 kB
    space = {"model.widths": {"layers": 2, "width": [8, 2048]}, "train.lr": [0.003]}
    task = _task(tmp_path, space, trials=4, constraints={"max_latency_ratio": 2.0}, tune={"sampler": "grid"})
    summary = json.loads((to.tune(task, out=tmp_path / "r", quiet=True).run_dir / "tune.json").read_text())
    trials = {tuple(t["params"]["model.widths"]): t for t in summary["trials"]}
    assert len(trials) == 4
    for trial in trials.values():  # each judged by the ratio timed beside the task's model, nothing else
        over = trial["values"]["latency_ratio.p50@b1"] > 2.0
        assert (trial["state"] == "pruned") == over
        assert (trial["note"] or "").startswith("not trained: max_latency_ratio") == over
    assert trials[(2048, 2048)]["state"] == "pruned" and trials[(8, 8)]["state"] == "complete"
    # before the choice the best is timed again, longer, and chosen only if it still holds the ceiling
    retimed = summary["retimed"]
    assert retimed and retimed[-1]["trial"] == summary["best"]["trial"] and not retimed[-1]["over"]
    for entry in retimed:
        assert bool(entry["over"]) == (entry["values"]["latency_ratio.p50@b1"] > 2.0)
    assert "The best trials timed again" in (tmp_path / "r" / "digits-tune" / "report.html").read_text()


def test_a_ceiling_a_search_that_trains_cannot_measure_is_refused_not_ignored(tmp_path: Path) -> None:
    task = _task(tmp_path, {"train.lr": [0.001]}, trials=1, constraints={"max_cost_per_million": 0.01},
                 cost={"usd_per_hour": 1.0})
    with pytest.raises(ConfigError, match="max_cost_per_million: a search that trains does not price"):
        to.tune(task, out=tmp_path / "r", quiet=True)


def test_nothing_within_the_ceilings_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NoTrialFinished, match="no trial finished within the constraints"):
        to.tune(_task(tmp_path, {"train.lr": [0.001]}, trials=1, constraints={"max_size_bytes": 100}),
                out=tmp_path / "r", quiet=True)


@pytest.mark.parametrize("sampler", ["tpe", "gp", "cmaes", "random", "grid", "nsga2", "evolution", "rl"])
def test_every_named_sampler_runs_a_study(tmp_path: Path, sampler: str) -> None:
    # a grid without the task's own settings (lr 0.001): Optuna's grid sampler itself visits every point
    space = {"train.lr": [0.003, 0.01], "model.widths": {"layers": 1, "width": [16, 32]}} if sampler == "grid" else \
        {"train.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}, "model.dropout": {"low": 0.0, "high": 0.3}}
    budget = 6 if sampler == "grid" else 4  # more trials than the grid's four points: the grid is spent first
    result = to.tune(_task(tmp_path, space, trials=budget, train={"epochs": 2}, tune={"sampler": sampler}),
                     out=tmp_path / "r", quiet=True)
    listed = json.loads((result.run_dir / "tune.json").read_text())["trials"]
    trials = [t for t in listed if t["state"] == "complete"]
    assert len(trials) == 4 and (sampler == "grid" or len(listed) == 4)  # elsewhere every trial completes
    if sampler == "grid":  # four points, each measured once
        assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 4


def test_two_objectives_are_pruned_by_dominance_at_the_same_epoch() -> None:
    """Optuna's pruners take one objective; a point dominated by at least half of the finished trials' points at
    that epoch is stopped."""
    study = optuna.create_study(directions=["minimize", "minimize"])
    for accuracy, size in [(0.9, 100), (0.8, 50), (0.95, 200), (0.85, 80), (0.7, 40)]:
        trial = study.ask()
        for epoch in (1, 2):
            write_intermediate(trial, epoch, (-accuracy + 0.1 * (2 - epoch), size))
        write_result(trial, "complete", values={"metric": accuracy})
        study.tell(trial, [-accuracy, size])
    rule = DominancePruner(startup_trials=5, warmup_epochs=1)
    assert rule(study, 2, (-0.6, 300))  # worse and larger than all five
    assert not rule(study, 2, (-0.96, 300))  # the most accurate so far, whatever its size
    assert not rule(study, 2, (-0.5, 10))  # the smallest so far
    assert not rule(study, 2, (-0.82, 90))  # dominated by one of five, (0.85, 80)
    assert not DominancePruner(startup_trials=6)(study, 2, (-0.6, 300))  # too few finished trials to judge


@pytest.mark.parametrize("pruner", ["median", "dominance"])
def test_no_trial_is_pruned_before_the_warm_up_epochs(pruner: str) -> None:
    """A slow starter (behind every finished trial until it leads at epoch 4) is judged only from
    pruner_warmup_epochs on: from epoch 1 it is stopped at once, from 3 at epoch 3, from 4 never."""
    def study_of_five() -> optuna.Study:
        study = optuna.create_study(directions=["minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
        for final in (0.80, 0.82, 0.84, 0.86, 0.88):
            trial = study.ask()
            for epoch in (1, 2, 3, 4):
                trial.report(-final * epoch / 4, epoch)
                write_intermediate(trial, epoch, (-final * epoch / 4,))
            write_result(trial, "complete", values={"metric": final})
            study.tell(trial, -final)
        return study

    def stopped_at(warmup: int) -> int | None:
        study = study_of_five()
        optuna_pruner, rule = pruner_for(pruner, 4, warmup), dominance_rule(pruner, warmup)
        study.pruner = optuna_pruner  # what open_study gives the study
        trial = study.ask()
        for epoch, value in ((1, 0.05), (2, 0.1), (3, 0.5), (4, 0.95)):  # behind until epoch 3, best at 4
            trial.report(-value, epoch)
            if rule(study, epoch, (-value,)) if rule else trial.should_prune():
                return epoch
        return None

    assert stopped_at(1) == 1
    assert stopped_at(3) == 3
    assert stopped_at(4) is None


def test_a_training_function_by_import_path_is_tuned_and_pruned(tmp_path: Path) -> None:
    (tmp_path / "my_training.py").write_text('''
import torch

def fit(module, data, options, report):
    optimizer = torch.optim.SGD(module.parameters(), lr=options.lr)
    x, y = torch.as_tensor(data.train.x), torch.as_tensor(data.train.y)
    for epoch in range(1, options.epochs + 1):
        module.train()
        for start in range(0, len(x), options.batch_size):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(module(x[start:start + options.batch_size]),
                                              y[start:start + options.batch_size]).backward()
            optimizer.step()
        module.eval()
        with torch.no_grad():
            accuracy = (module(torch.as_tensor(data.val.x)).argmax(1).numpy() == data.val.y).mean()
        report(epoch, float(accuracy))
''')
    result = to.tune(_task(tmp_path, {"train.lr": [0.001, 0.3]}, trials=2, train={"epochs": 3},
                           tune={"train_function": "my_training:fit", "sampler": "grid"}),
                     out=tmp_path / "r", quiet=True)
    trials = json.loads((result.run_dir / "tune.json").read_text())["trials"]
    assert {t["params"]["train.lr"]: t["values"]["epochs"] for t in trials} == {0.001: 3, 0.3: 3}
    assert result.params == {"train.lr": 0.3}  # plain SGD at 1e-3 barely moves in 3 epochs


@pytest.mark.parametrize(("tune", "message"), [
    ({"space": {"lr": [0.1]}}, "key 'lr' must start with train. or model."),
    ({"space": {"train.lr": {"low": 0.1, "high": 0.2, "when": {"train.optimizer": "sgd"}}}},
     "train.lr.when names 'train.optimizer', which is not tuned"),
    ({"space": {"model.depth": [1, 2]}}, "tunes model.depth, which tradeoff.architectures:MLP does not take"),
    ({"space": {"train.lr": {"low": 0.0, "high": 0.1, "log": True}}}, "log scale, so low must be above 0"),
    ({"space": {"train.epochs": [0, 3]}}, "tune.space.train.epochs"),
    ({"space": {"train.lr": [0.1]}, "sampler": "cmaes", "objectives": ["metric", "size"], "pruner": "dominance"},
     "sampler cmaes optimizes one objective"),
    ({"space": {"train.lr": {"low": 0.1, "high": 0.2}}, "sampler": "grid"}, "the grid sampler needs lists"),
    ({"space": {"train.lr": [0.1]}, "objectives": ["metric", "size"], "pruner": "median"},
     "pruner median compares one objective"),
    ({"space": {"train.lr": [0.1]}, "distill": {}}, "tune.distill learns from the task's model, and it has no "
                                                    "trained weights"),
    ({"space": {"train.lr": [0.1]}, "distill": {}, "train_function": "my_training:fit"},
     "tune.distill cannot reach into tune.train_function's training"),
])
def test_a_bad_tune_section_is_one_line_naming_the_fix(tmp_path: Path, tune: dict[str, Any], message: str) -> None:
    space = tune.pop("space")
    task = _task(tmp_path, space, tune=tune)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        to.tune(task, out=tmp_path / "r", quiet=True)


@pytest.mark.skipif(not TRADEOFF.is_file(), reason="the tradeoff command is not installed beside this Python")
def test_the_command_says_a_bad_tune_section_in_one_line(tmp_path: Path) -> None:
    """Every refusal above is a ConfigError, which the command turns into one line: one of them shows it (each
    command start costs seconds of imports)."""
    task = _task(tmp_path, {"model.depth": [1, 2]})
    done = subprocess.run([str(TRADEOFF), "tune", str(task), "--out", str(tmp_path / "r")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "model.depth" in done.stderr


def test_trials_are_reproducible_from_the_seed_and_their_parameters(tmp_path: Path) -> None:
    task = _task(tmp_path, {"train.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
                            "model.widths": {"layers": {"low": 1, "high": 2}, "width": [16, 32]}},
                 trials=3, train={"epochs": 2})
    first, second = (json.loads((to.tune(task, out=tmp_path / run, quiet=True).run_dir / "tune.json").read_text())
                     for run in ("a", "b"))
    assert [(t["params"], t["values"]["metric"]) for t in first["trials"]] == \
        [(t["params"], t["values"]["metric"]) for t in second["trials"]]
    assert first["final"]["test_metric"] == second["final"]["test_metric"]


def test_distill_trains_every_trial_with_the_tasks_own_model_as_teacher(tmp_path: Path) -> None:
    """With `distill`, a trial is the candidate trained on the labels and the task's model's softened outputs: the
    same fit done by hand with that teacher's distillation loss gives its validation metric to the last digit."""
    given = problem(load_task(_task(tmp_path, {"train.lr": [0.003]})))
    torch.manual_seed(0)
    teacher = MLPModule(**MLP["options"])
    Trainer(TrainSpec(epochs=20, lr=3e-3)).train(teacher, given.data)
    save_file(teacher.state_dict(), str(tmp_path / "teacher.safetensors"))
    model = {**MLP, "weights": str(tmp_path / "teacher.safetensors")}
    distill = {"temperature": 4.0, "weight": 5.0}
    train = {"epochs": 3, "early_stopping": None}

    def tuned(**tune: Any) -> to.TuneResult:
        task = _task(tmp_path, {"train.lr": [0.003]}, trials=1, model=model, train=train, tune=tune)
        return to.tune(task, out=tmp_path / f"r{len(tune)}", quiet=True)

    options = TrainSpec(**train, lr=0.003)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the run's torch threads (runtime.threads): a sum split otherwise may round apart
    try:
        torch.manual_seed(options.seed)
        student = MLPModule(**MLP["options"])
        with KnowledgeDistillation(student, teacher.eval(), **distill) as loss:
            Trainer(options).fit(student, given.data.train, given.data.val, metric=get_metric("accuracy"),
                                 extra_loss=loss)
    finally:
        torch.set_num_threads(threads)  # the tests after this one train on the process's threads again
    by_hand = Evaluator(given.model, given.data, get_metric("accuracy"), 1, (1,)).score(
        ModelHandle(module=student.eval()), "val")
    taught = tuned(distill=distill)
    assert taught.val_metric == by_hand != tuned().val_metric
    assert json.loads((taught.run_dir / "tune.json").read_text())["distill"] == distill
    assert "every candidate taught by the task's model (temperature 4, weight 5)" in \
        (taught.run_dir / "report.html").read_text()


def test_distill_refuses_labels_that_are_not_classes(tmp_path: Path) -> None:
    digits = to.data.digits(seed=0)
    x = np.concatenate([digits.train.x, digits.val.x, digits.test.x])
    np.savez(tmp_path / "scores.npz", x=x, y=np.linspace(0.0, 1.0, len(x)))  # a score to regress, not a class
    task = _task(tmp_path, {"train.lr": [0.003]}, data={"source": "file", "path": "scores.npz"}, metric="mse",
                 tune={"distill": {}})
    with pytest.raises(ConfigError, match="tune.distill teaches class probabilities, and these labels are not"):
        to.tune(task, out=tmp_path / "r", quiet=True)
