"""monitor.html: one check of new data against a run, self-contained like report.html (plotly.js inlined once):
the verdict, agreement now against at optimize time, the drift tests, and each feature's PSI against its bands."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from tradeoff.insight.drift import PSI_MAJOR, PSI_MODERATE, Drift
from tradeoff.report.html import STYLE, fixed, html_table

if TYPE_CHECKING:
    from tradeoff.insight.monitor import Agreement, MonitorResult

BAND_COLOURS = {"stable": "#4e79a7", "moderate": "#f2b134", "major": "#d62728"}


def _psi_plot(drift: Drift) -> str:
    names = [f.name for f in drift.features]
    figure = go.Figure(go.Bar(x=names, y=[f.psi for f in drift.features],
                              marker={"color": [BAND_COLOURS[f.psi_band] for f in drift.features]},
                              hovertemplate="%{x}<br>PSI %{y:.3f}<extra></extra>"))
    for level, label in ((PSI_MODERATE, "moderate"), (PSI_MAJOR, "major")):
        figure.add_hline(y=level, line_dash="dash", line_color="#555", annotation_text=label)
    figure.update_layout(yaxis_title="PSI against the training split", height=380,
                         margin={"l": 60, "r": 10, "t": 30, "b": 120})
    return figure.to_html(full_html=False, include_plotlyjs=True, div_id="plot-psi")  # a fixed id: a pure function


def _agreement(agreement: Agreement) -> str:
    what = ("share of rows where both models predict the same class" if agreement.measure == "classes"
            else "mean cosine between the two models' outputs")
    rows = [["new data", fixed(agreement.now), str(agreement.rows)],
            ["test split, at optimize time", fixed(agreement.at_test), str(agreement.test_rows)],
            ["lowest figure that still agrees", fixed(agreement.least_expected), ""]]
    return (f"<h2>Optimized model against the original</h2><p class=sub>Agreement: the {what}; one-sided p-value "
            f"{agreement.p_value:.3g}.</p>{html_table(['', 'agreement', 'rows'], rows, {1, 2}, 'agreement')}")


def _drift(drift: Drift) -> str:
    whole = drift.whole
    summary = html_table(["test", "statistic", "p-value", "drift below", "rows (training / new)", "drifted"], [[
        "MMD, whole rows", f"{whole.statistic:.4g}", f"{whole.p_value:.3g}", f"{whole.level:g}",
        f"{whole.reference_rows} / {whole.rows}", "yes" if whole.drifted else "no"]], {1, 2, 3}, "whole")
    if not drift.features:
        return f"<h2>Input drift</h2><p class=sub>{escape(drift.method)}.</p>{summary}"
    rows = [[f.name, f.test, f"{f.statistic:.4g}", f"{f.p_value:.3g}", f"{f.p_holm:.3g}", "yes" if f.drifted else "no",
             f"{f.psi:.3f}", f.psi_band] for f in sorted(drift.features, key=lambda f: f.p_holm)]
    table = html_table(["feature", "test", "statistic", "p-value", "Holm p-value", "drifted", "PSI", "PSI band"], rows,
                       {2, 3, 4, 6}, "features")
    return (f"<h2>Input drift</h2><p class=sub>{escape(drift.method)}.</p>{summary}"
            f"<h3>Per feature (most drifted first)</h3>{table}{_psi_plot(drift)}")


def render_monitor_html(result: MonitorResult) -> str:
    verdicts = [("input drifted from the training data" if result.drift.drifted else "no input drift"),
                ("the optimized model disagrees with the original more than on test" if result.agreement.disagrees
                 else "the optimized model agrees with the original as on test")]
    metric = ("" if result.metric is None else "<h2>On the new data's targets</h2>" + html_table(
        ["model", result.metric.name], [["original", fixed(result.metric.original)],
                                        ["optimized", fixed(result.metric.optimized)]], {1}, "metric"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tradeoff monitor: {escape(result.run_dir.name)}</title>
<style>{STYLE}</style></head><body>
<h1>tradeoff monitor: {escape(result.run_dir.name)}</h1>
<p class="sub">new data <code>{escape(str(result.data))}</code>, {result.drift.rows} rows · checked at
{escape(result.folder.name)}</p>
<div class="card{' warn' if result.alarm else ''}" id="verdict"><b>{'ALARM' if result.alarm else 'fine'}</b>:
{escape('; '.join(verdicts))}.</div>
{_agreement(result.agreement)}
{metric}
{_drift(result.drift)}
</body></html>
"""
