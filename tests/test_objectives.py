"""Objectives and constraints read measured values by name: what a task file's names mean."""

from __future__ import annotations

import pytest

from tradeoff.config import task_from_dict
from tradeoff.errors import ConfigError
from tradeoff.objectives import OBJECTIVES, describe_change, minimized, times, violations

VALUES = {"metric": 0.95, "metric_drop": 0.004, "size_bytes": 2000, "macs": 5e4, "peak_memory_bytes": None,
          "latency_ms.p50@b1": 0.2, "latency_ms.p50@b32": 3.0}


def test_objectives_read_the_values_they_name_at_the_first_batch_size() -> None:
    assert minimized(["latency", "size", "macs"], VALUES, 1, higher_is_better=True) == (0.2, 2000.0, 5e4)
    assert minimized(["latency"], VALUES, 32, higher_is_better=True) == (3.0,)
    assert minimized(["metric"], VALUES, 1, higher_is_better=True) == (-0.95,)  # all minimized
    assert minimized(["metric"], {"metric": 0.1}, 1, higher_is_better=False) == (0.1,)
    assert minimized(["peak_memory"], VALUES, 1, higher_is_better=True) == (float("inf"),)  # not measured: worst


def test_constraints_name_what_they_bound_and_an_unmeasured_value_breaks_none() -> None:
    broken = violations({"max_metric_drop": 0.002, "max_latency_ms": 0.5, "max_size_bytes": 1000}, VALUES, 1)
    assert [(v.constraint, v.value, v.missed_by) for v in broken] == [("max_metric_drop", 0.004, pytest.approx(0.002)),
                                                                      ("max_size_bytes", 2000.0, 1000.0)]
    assert violations({"max_latency_ms": 0.1}, {"metric": 1.0}, 1) == []


def test_a_task_may_minimize_any_measured_objective_and_an_unknown_one_is_refused() -> None:
    minimal = {"name": "t", "model": {"source": "onnx", "path": "m.onnx"},
               "data": {"source": "builtin", "name": "wine"}}
    assert task_from_dict({**minimal, "objectives": ["macs", "size"]}).objectives == ("macs", "size")
    with pytest.raises(ConfigError, match=f"unknown objectives \\['energy'\\]; known: {', '.join(OBJECTIVES)}"):
        task_from_dict({**minimal, "objectives": ["energy"]})
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
