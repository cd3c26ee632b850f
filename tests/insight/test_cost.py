"""Cost per prediction and energy: what a prediction costs from the measured throughput and the task's price, and
energy measured by RAPL or estimated, and said which (cost as an objective and a ceiling, and what optimizing cost:
tests/test_cost_objective.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tradeoff.config import CostSpec
from tradeoff.data import DataBundle
from tradeoff.energy import WATTS_PER_CORE, EnergyCounter, Meter, energy_of, rapl_zones
from tradeoff.evaluation import Evaluator
from tradeoff.insight.cost import SpendMeter, prediction_cost
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.report.build import measured as measured_entry

PRICE = 0.10  # USD per hour


@pytest.fixture(scope="module")
def timed(mlp: ModelHandle, digits: DataBundle) -> Evaluator:
    return Evaluator(mlp, digits, get_metric("accuracy"), 2, (1, 16), cost=CostSpec(usd_per_hour=PRICE))


def test_cost_per_million_is_the_price_over_the_measured_throughput_at_each_batch_size(
        timed: Evaluator, mlp: ModelHandle) -> None:
    measurement = timed.measure(mlp, "val")
    values, entry = measurement.values(), measured_entry(measurement)
    costs = {}
    for batch, latency in measurement.latency.items():
        predictions_per_hour = batch / latency.p50_ms * 3.6e6  # b / p50 per ms, on the task's 2 threads
        expected = PRICE / predictions_per_hour * 1e6
        assert values[f"cost_usd_per_million@b{batch}"] == pytest.approx(expected, rel=1e-9)
        assert entry.cost_by_batch[batch].usd_per_million == pytest.approx(expected, rel=1e-9)
        assert entry.cost_by_batch[batch].predictions_per_s == pytest.approx(batch / latency.p50_ms * 1000)
        costs[batch] = expected
    assert costs[1] != costs[16]  # each from its own timing, not one figure scaled


def test_without_a_price_there_is_no_cost_figure_but_energy_still_is(mlp: ModelHandle, digits: DataBundle) -> None:
    entry = measured_entry(Evaluator(mlp, digits, get_metric("accuracy"), 2, (1,)).measure(mlp, "val"))
    assert entry.cost_by_batch[1].usd_per_million is None
    assert entry.cost_by_batch[1].energy_per_prediction is not None


def test_energy_per_prediction_is_labelled_estimated_where_no_rapl_counter_is_readable(
        timed: Evaluator, mlp: ModelHandle) -> None:
    latency = timed.latency(mlp, "val")[16]
    energy = prediction_cost(latency, CostSpec()).energy
    assert energy is not None and latency.cpu_s is not None and latency.cpu_s > 0
    if rapl_zones():  # a machine whose counters this process reads measures instead
        assert energy.source == "measured"
        return
    assert latency.energy_j is None
    assert energy.source == "estimated"
    assert "CPU seconds" in energy.method and f"{WATTS_PER_CORE:g} W per busy core" in energy.method
    assert energy.joules == pytest.approx(latency.cpu_s * WATTS_PER_CORE / (latency.runs * 16))


def _package(root: Path, name: str, energy_uj: int, range_uj: int = 10_000_000) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "energy_uj").write_text(f"{energy_uj}\n")
    (folder / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return folder / "energy_uj"


def _count(counter: Path, energy_uj: int) -> None:
    """A new reading, whole at once as sysfs gives it (a sampler never sees a half-written file)."""
    fresh = counter.with_name("energy_uj.new")
    fresh.write_text(f"{energy_uj}\n")
    fresh.replace(counter)


def test_energy_is_measured_from_the_rapl_package_counters(tmp_path: Path) -> None:
    first, second = _package(tmp_path, "intel-rapl:0", 1_000_000), _package(tmp_path, "intel-rapl:1", 5_000_000)
    core = _package(tmp_path, "intel-rapl:0:0", 100)  # a subzone of package 0: counted there already
    meter = Meter(tmp_path)
    _count(first, 3_500_000)  # 2.5 J
    _count(second, 5_500_000)  # 0.5 J
    _count(core, 900_000)
    spent = meter.spent()
    assert spent.energy_j == pytest.approx(3.0)
    energy = energy_of(spent.cpu_s, spent.energy_j, WATTS_PER_CORE, share=1 / 100)
    assert energy.source == "measured" and energy.joules == pytest.approx(0.03) and "RAPL" in energy.method


def test_a_counter_that_wraps_around_is_counted_past_its_range(tmp_path: Path) -> None:
    counter = _package(tmp_path, "intel-rapl:0", 9_000_000, range_uj=10_000_000)
    energy = EnergyCounter(rapl_zones(tmp_path))
    _count(counter, 1_000_000)  # wrapped: 1 J to the top of the range, 1 J after
    assert energy.read() == pytest.approx(2.0)
    _count(counter, 9_500_000)
    assert energy.read() == pytest.approx(10.5)
    with SpendMeter(tmp_path, interval_s=0.001) as meter:  # its sampler reads the counter between the wraps
        _count(counter, 500_000)  # wrapped again: 0.5 J to the top, 0.5 J after
        time.sleep(0.05)
        _count(counter, 2_500_000)
    spend = meter.stop()
    assert spend.energy_j == pytest.approx(3.0)
    assert spend.energy(WATTS_PER_CORE).source == "measured"


def test_unreadable_counters_fall_back_to_an_estimate_never_a_partial_measurement(tmp_path: Path) -> None:
    _package(tmp_path, "intel-rapl:0", 1_000)
    (tmp_path / "intel-rapl:1").mkdir()  # a package whose counter this process cannot read
    assert rapl_zones(tmp_path) == []
    spent = Meter(tmp_path).spent()
    assert spent.energy_j is None
    assert energy_of(spent.cpu_s, spent.energy_j, 5.0).source == "estimated"
