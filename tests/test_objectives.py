"""Objectives and constraints read measured values by name: what a task file's names mean."""

from __future__ import annotations

import json

import pytest
from conftest import kept_setting

from tradeoff.config import task_from_dict
from tradeoff.errors import ConfigError
from tradeoff.objectives import batches_read, describe_change, minimized, sampled_names, times, violations

VALUES = {"metric": 0.95, "metric_drop": 0.004, "size_bytes": 2000, "macs": 5e4, "peak_memory_bytes": None,
          "latency_ms.p50@b1": 0.2, "latency_ms.p50@b32": 3.0}


def test_objectives_read_the_values_they_name_at_the_first_batch_size() -> None:
    assert minimized(["latency", "size", "macs"], VALUES, 1, higher_is_better=True) == (0.2, 2000.0, 5e4)
    assert minimized(["latency"], VALUES, 32, higher_is_better=True) == (3.0,)
    assert minimized(["metric"], VALUES, 1, higher_is_better=True) == (-0.95,)  # all minimized
    assert minimized(["metric"], {"metric": 0.1}, 1, higher_is_better=False) == (0.1,)
    assert minimized(["peak_memory"], VALUES, 1, higher_is_better=True) == (float("inf"),)  # not measured: worst


def test_a_latency_objective_may_name_the_batch_size_it_reads() -> None:
    assert minimized(["latency@b32", "latency@b1", "latency"], VALUES, 1, higher_is_better=True) == (3.0, 0.2, 0.2)
    assert minimized(["latency@b32"], {"latency_ratio.p50@b32": 0.4}, 1, True, relative=True) == (0.4,)
    assert batches_read(["latency@b32", "size", "latency"], (1, 32)) == (32, 1)  # where runtimes are timed
    assert batches_read(["size"], (8, 32)) == (8,)
    assert sampled_names(["latency@b32", "latency", "metric"], True) == ["latency_ratio_b32", "latency_ratio",
                                                                        "negated_metric"]
    assert describe_change("latency@b32", 1.0, 1.6) == "1.60x slower at batch 32"


def test_constraints_name_what_they_bound_and_an_unmeasured_value_breaks_none() -> None:
    broken = violations({"max_metric_drop": 0.002, "max_latency_ms": 0.5, "max_size_bytes": 1000}, VALUES, 1)
    assert [(v.constraint, v.value, v.missed_by) for v in broken] == [("max_metric_drop", 0.004, pytest.approx(0.002)),
                                                                      ("max_size_bytes", 2000.0, 1000.0)]
    assert violations({"max_latency_ms": 0.1}, {"metric": 1.0}, 1) == []
    relative = {"params": 5300.0, "latency_ratio.p50@b1": 1.04, "latency_ms.p50@b1": 0.05}
    broken = violations({"max_params": 5210, "max_latency_ratio": 1.0, "max_latency_ms": 0.1}, relative, 1)
    assert [(v.constraint, v.value) for v in broken] == [("max_params", 5300.0), ("max_latency_ratio", 1.04)]


def test_a_task_may_minimize_any_measured_objective_and_an_unknown_one_is_refused() -> None:
    minimal = {"name": "t", "model": {"source": "onnx", "path": "m.onnx"},
               "data": {"source": "builtin", "name": "wine"}}
    assert task_from_dict({**minimal, "objectives": ["macs", "size"]}).objectives == ("macs", "size")
    with pytest.raises(ConfigError, match="unknown objective 'energy'; known: latency, size, .*latency@b<batch size>"):
        task_from_dict({**minimal, "objectives": ["energy"]})
    served = {**minimal, "runtime": {"batch_sizes": [1, 32]}}
    assert task_from_dict({**served, "objectives": {"latency@b1": 1, "latency@b32": 1}}).objectives == {
        "latency@b1": 1.0, "latency@b32": 1.0}
    with pytest.raises(ConfigError, match="reads batch 8, which runtime.batch_sizes does not time"):
        task_from_dict({**served, "objectives": ["latency@b8"]})
    with pytest.raises(ConfigError, match="only latency and cost are measured per batch size"):
        task_from_dict({**served, "objectives": ["size@b32"]})
    with pytest.raises(ConfigError, match="unknown objective 'latency@bx'"):
        task_from_dict({**served, "objectives": ["latency@bx"]})
    assert task_from_dict({**minimal, "objectives": {"size": 2, "latency": 1}}).objectives == {"size": 2.0,
                                                                                              "latency": 1.0}
    with pytest.raises(ConfigError, match="objective weights must be positive"):
        task_from_dict({**minimal, "objectives": {"size": 0, "latency": 1}})
    with pytest.raises(ConfigError, match="at least one"):
        task_from_dict({**minimal, "objectives": []})


def test_ratios_read_as_a_reader_says_them() -> None:
    assert times(2.3125, "faster", "slower") == "2.31x faster"
    assert times(0.625, "faster", "slower") == "1.60x slower"
    assert describe_change("size", 1000.0, 1140.0) == "1.14x larger"


def test_a_search_for_latency_at_batch_16_ships_nothing_slower_there(task_file) -> None:  # noqa: ANN001
    from tradeoff.optimize import optimize

    task = task_file(objectives=["latency@b16"], runtime={"target": "auto", "threads": 2, "batch_sizes": [1, 16]},
                     search={"trials": 4, "seed": 0, "passes": ["export.onnx", "quantize.dynamic"]})
    result = optimize(task, out=task.parent / "runs", quiet=True)
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["choice"]["rule"].startswith("priority latency@b16")
    baseline_b16 = report["baseline_val"]["latency_by_batch"]["16"]["p50"]
    for finalist in report["finalists"]:
        b16 = finalist["measured"]["latency_by_batch"]["16"]["p50"]
        if finalist["excluded"] is None:  # shipped: never slower than the baseline at the batch size named
            assert b16 <= baseline_b16
        elif b16 > baseline_b16 and finalist["meets_constraints"]:  # said in the batch size's terms
            assert finalist["excluded"].endswith("slower at batch 16 than the baseline")
    timed = [t for t in report["trials"] if t["runtimes"]]  # each runtime, on 2 threads and 1
    assert timed
    for trial in timed:  # the recipe names the setting kept: 'onnxruntime on 1 thread', 'openvino'
        runtimes = tuple(s for s in trial["runtimes"] if " on " not in s)
        setting = (trial["recipe"]["runtime"] or runtimes[0]) + (" on 1 thread" if trial["recipe"].get("threads")
                                                                 else "")  # runtime None: the format's only one
        assert setting == kept_setting(trial["runtimes"], runtimes)
