"""report.html: the numbers a reader relies on, escaped, self-contained, and drawn by a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Literal

import pytest

from tradeoff.replay import rerender
from tradeoff.report.html import render_html
from tradeoff.report.schema import (
    Best,
    Binding,
    Choice,
    Finalist,
    LatencyMs,
    LayerStat,
    Measured,
    Ratios,
    Report,
    SearchStats,
    Trial,
    Violation,
)

EVIL = "<script>alert('x')</script> & \"q\""
RECIPE_INT8 = {"version": 1, "steps": [{"pass": "export.onnx"}, {"pass": "quantize.dynamic", "per_channel": True}]}
RECIPE_PRUNE = {"version": 1, "steps": [{"pass": "prune.magnitude", "sparsity": 0.9}]}


def _latency(p50: float) -> LatencyMs:
    return LatencyMs(p50=p50, p95=p50 * 1.2, batch_size=1, threads=2, runs=200)


def _measured(metric: float, p50: float, size: int, split: Literal["val", "test"] = "test",
              fmt: Literal["torch", "onnx"] = "torch") -> Measured:
    return Measured(metric=metric, split=split, runtime="onnxruntime" if fmt == "onnx" else "torch-eager",
                    format=fmt, latency_ms=_latency(p50), size_bytes=size, size_zstd_bytes=size * 9 // 10,
                    params=12_345, nonzero_params=12_000)


def _report(*, best_is_baseline: bool = False, name: str = "digits-mlp", warning: str = "slow int8 kernels",
            speedup: float = 2.1, test_violations: tuple[Violation, ...] = ()) -> Report:
    """Three trials a real search produces: a feasible int8 model, one that missed the metric, one pruned early."""
    drop_miss = Violation(constraint="max_metric_drop", limit=0.01, value=0.06, missed_by=0.05)
    trials = [
        Trial(number=0, recipe=RECIPE_INT8, passes=["export.onnx", "quantize.dynamic"], state="complete",
              metric=0.962, metric_drop=0.004, latency_ms=_latency(0.21), size_bytes=14_000, size_zstd_bytes=9_000,
              params=12_345, nonzero_params=12_000, feasible=True),
        Trial(number=1, recipe=RECIPE_PRUNE, passes=["prune.magnitude"], state="complete", metric=0.906,
              metric_drop=0.06, latency_ms=_latency(0.35), size_bytes=50_000, size_zstd_bytes=20_000,
              params=12_345, nonzero_params=1_234, feasible=False, violations=[drop_miss]),
        Trial(number=2, recipe=RECIPE_PRUNE, passes=["prune.magnitude"], state="pruned", metric=0.5,
              metric_drop=0.466, size_bytes=50_000, note="metric too far below the front; not timed"),
    ]
    baseline = _measured(0.966, 0.42, 52_000)
    if best_is_baseline:
        best = Best(**baseline.model_dump(), recipe={"version": 1, "steps": []}, artifact="model.pt", trial=None,
                    is_baseline=True, ratios=Ratios(speedup=1.0, size_reduction=1.0, size_zstd_reduction=1.0,
                                                    metric_drop=0.0))
        binding = Binding(constraint="max_metric_drop", limit=0.01, nearest_trial=0, nearest_value=0.017,
                          missed_by=0.007)
    else:
        best = Best(**_measured(0.958, 0.2, 14_500, fmt="onnx").model_dump(), recipe=RECIPE_INT8,
                    artifact="model.onnx", trial=0, is_baseline=False,
                    layers=[LayerStat(name="layers.0.weight", shape=[128, 64], bits=8, sparsity=0.0)],
                    ratios=Ratios(speedup=speedup, size_reduction=3.59, size_zstd_reduction=3.4, metric_drop=0.008),
                    test_violations=list(test_violations))
        binding = None
    finalist = Finalist(trial=0, recipe=RECIPE_INT8, measured=_measured(0.958, 0.2, 14_500, fmt="onnx"),
                        ratios=best.ratios, meets_constraints=not best_is_baseline,
                        violations=[Violation(constraint="max_metric_drop", limit=0.01, value=0.017,
                                              missed_by=0.007)] if best_is_baseline else [])
    return Report(name=name, metric={"name": "accuracy", "higher_is_better": True},
                  objectives=["metric", "latency"], constraints={"max_metric_drop": 0.01, "max_latency_ms": None,
                                                                 "max_size_bytes": None},
                  baseline=baseline, baseline_val=_measured(0.966, 0.41, 52_000, split="val"), best=best,
                  finalists=[finalist], trials=trials, pareto=[0], binding=binding, warnings=[warning],
                  choice=Choice(rule="priority metric, latency: never worse than the baseline on metric",
                                excluded={0: "max_metric_drop: 0.017 > 0.01"} if best_is_baseline else {}),
                  search_stats=SearchStats(measured=3, failed=0, skipped=5, duplicates=2, interrupted=0),
                  env={"python": "3.11.9", "cpu": {"model": "Xeon", "cores": 16}, "threads": 2},
                  task={"name": name})


def _section(page: str, html_id: str) -> str:
    start = page.index(f'id="{html_id}"')
    return page[start:page.index("</table>", start)]


def test_trials_table_has_one_row_per_trial_with_passes_drop_and_violations() -> None:
    trials = _section(render_html(_report()), "trials")
    assert "<tr><td>0</td><td>complete</td><td>export.onnx → quantize.dynamic</td>" in trials
    assert "<td class=num>+0.40 pts</td>" in trials  # accuracy drop shown in points
    assert "<tr><td>1</td><td>complete</td><td>prune.magnitude</td>" in trials
    assert "max_metric_drop: 0.06 &gt; 0.01 (missed by 0.05)" in trials
    assert re.search(r"<tr><td>2</td><td>pruned</td>.*<td class=num>–</td>.*not timed", trials)  # never timed
    assert trials.count("<tr><td>") == 3


def test_samples_that_cost_nothing_are_counted_above_the_trials_table() -> None:
    page = render_html(_report())
    stats = page[page.index('id="search-stats"'):]
    assert stats.startswith('id="search-stats">3 measured, 0 failed; not listed, at no cost: 5 skipped, 2 repeated')


def test_baseline_vs_best_card_shows_metric_latency_size_and_ratios() -> None:
    card = _section(render_html(_report()), "best")
    for figure in ("0.9660", "0.9580", "0.420", "0.200", "0.504", "50.78 KiB", "14.16 KiB", "45.70 KiB",
                   "12,345 / 12,000", "2.10x faster", "3.59x smaller", "3.40x smaller", "drop +0.80 pts"):
        assert figure in card, figure
    assert "trial 0" in card and "model.onnx" in card and "No candidate met" not in card
    assert "Chosen on validation by priority metric, latency" in card and "test-violations" not in card


def test_a_slow_down_reads_slower_never_a_fraction_faster() -> None:
    card = _section(render_html(_report(speedup=0.625)), "best")
    assert "1.60x slower" in card and "x faster" not in card


def test_a_constraint_the_chosen_model_breaks_on_test_is_said_plainly() -> None:
    broken = Violation(constraint="max_metric_drop", limit=0.01, value=0.013, missed_by=0.003)
    page = render_html(_report(test_violations=(broken,)))
    card = page[page.index('id="best"'):page.index('id="comparison"')]
    assert "On the test split the chosen model breaks max_metric_drop: 0.013 &gt; 0.01" in card
    assert '<div class="card warn" id="best">' in page


def test_baseline_best_says_no_candidate_met_the_constraints_and_what_bound() -> None:
    page = render_html(_report(best_is_baseline=True))
    card = page[page.index('id="best"'):page.index('id="comparison"')]
    assert "No candidate met the constraints" in card
    assert "max_metric_drop ≤ 0.01" in card and "trial 0" in card and "missed by 0.007" in card
    finalists = _section(page, "finalists")
    assert "<td>no</td>" in finalists and "max_metric_drop: 0.017 &gt; 0.01" in finalists


def test_header_warnings_finalists_and_env_are_shown() -> None:
    page = render_html(_report())
    assert "tradeoff: digits-mlp" in page and "metric <b>accuracy</b>" in page
    assert "objectives metric, latency" in page and "max_metric_drop ≤ 0.01" in page
    assert '<li>slow int8 kernels</li>' in page
    assert "<tr><td>0</td><td class=num>0.9580</td>" in _section(page, "finalists")
    env = _section(page, "env")
    assert "<td>python</td><td>3.11.9</td>" in env
    assert "<td>cpu</td><td>" + '{&quot;cores&quot;: 16, &quot;model&quot;: &quot;Xeon&quot;}' in env


def test_strings_from_the_report_are_escaped() -> None:
    page = render_html(_report(name=EVIL, warning=EVIL))
    assert "<script>alert" not in page
    assert page.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;") >= 3


def test_plotly_is_embedded_once_and_nothing_loads_from_the_network() -> None:
    page = render_html(_report())
    assert page.count("* plotly.js v") == 1
    assert '<script src="http' not in page and not re.search(r"<script[^>]+src=", page)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)  # plotly.js itself names URLs
    assert "<link" not in markup and not re.search(r"(src|href)=[\"']?(https?:)?//", markup)
    assert 'id="plot-latency"' in page and 'id="plot-size"' in page


def test_report_command_rerenders_the_same_page_from_report_json(tmp_path: Path) -> None:
    report = _report()
    (tmp_path / "report.json").write_text(json.dumps(report.model_dump(mode="json")))
    assert rerender(tmp_path).read_text() == render_html(report)


# Runs before plotly.js, so any error while loading or drawing ends up in the dumped DOM.
ERROR_CATCHER = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
window.addEventListener('unhandledrejection', e => window.__errors.push(String(e.reason)));
window.addEventListener('load', () => setTimeout(() => {
  const out = document.createElement('pre'); out.id = 'js-errors';
  out.textContent = window.__errors.join('\\n'); document.body.appendChild(out);
}, 1500));
</script>"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=5000", "--dump-dom"]


@pytest.mark.parametrize("best_is_baseline", [False, True], ids=["best-candidate", "best-is-baseline"])
def test_report_renders_in_chromium_without_js_errors(tmp_path: Path, best_is_baseline: bool) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Chromium is not installed: apt-get install chromium (make chromium does it)")
    page = render_html(_report(best_is_baseline=best_is_baseline))
    target = tmp_path / "report.html"
    target.write_text(page.replace("<head>", "<head>" + ERROR_CATCHER, 1))
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", target.as_uri()],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert 'id="js-errors"' in dom, "the page never finished loading:\n" + dom[-500:]
    assert '<pre id="js-errors"></pre>' in dom, dom[dom.index('id="js-errors"'):][:500]
    assert dom.count('class="main-svg"') >= 4  # two plots, each drawn as plotly's SVG layers
    assert 'class="legendtext"' in dom and ">baseline<" in dom  # the legend drew


def test_a_report_of_an_older_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    from tradeoff.errors import ConfigError

    (tmp_path / "report.json").write_text(json.dumps({**_report().model_dump(mode="json"), "schema_version": 1}))
    with pytest.raises(ConfigError, match="schema 1"):
        rerender(tmp_path)
