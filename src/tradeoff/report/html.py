"""report.html: one self-contained page (plotly.js embedded once) that renders with no network."""

from __future__ import annotations

import json
from html import escape
from typing import Any

import plotly.graph_objects as go

from tradeoff.report.schema import Measured, Report, Trial

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left} th{background:#f5f5f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.card{border:1px solid #ccc;border-radius:8px;padding:1rem;margin:1rem 0}
.warn{background:#fff6e0;border-color:#e0b040} .plots{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
"""


def _bytes(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.3f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td{' class=num' if i in numeric else ''}>{escape(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _comparison(report: Report) -> str:
    base, best = report.baseline, report.best
    metric = escape(report.metric["name"])
    rows = [
        [report.metric["name"], _num(base.metric), _num(best.metric), f"drop {best.ratios.metric_drop:+.4f}"],
        [f"p50 latency, batch {base.latency_ms.batch_size} (ms)", _num(base.latency_ms.p50),
         _num(best.latency_ms.p50), f"{best.ratios.speedup:.2f}x faster"],
        ["p95 latency (ms)", _num(base.latency_ms.p95), _num(best.latency_ms.p95), ""],
        ["size", _bytes(base.size_bytes), _bytes(best.size_bytes), f"{best.ratios.size_reduction:.2f}x smaller"],
        ["size, zstd", _bytes(base.size_zstd_bytes), _bytes(best.size_zstd_bytes),
         f"{best.ratios.size_zstd_reduction:.2f}x smaller"],
        ["parameters (non-zero)", f"{base.params:,} ({base.nonzero_params:,})",
         f"{best.params:,} ({best.nonzero_params:,})", ""],
        ["MACs per sample", f"{base.macs:,}" if base.macs else "–", f"{best.macs:,}" if best.macs else "–", ""],
        ["runtime", base.runtime, best.runtime, ""],
    ]
    recipe = " → ".join(s["pass"] for s in best.recipe["steps"]) or "as given"
    verdict = (f"<p><b>No candidate met the constraints; best is the baseline.</b> {_binding(report)}</p>"
               if best.is_baseline else f"<p>Best: trial {best.trial}, <code>{escape(recipe)}</code>, "
                                        f"artifact <code>{escape(best.artifact or '')}</code>.</p>")
    card = "card warn" if best.is_baseline else "card"
    layers = [[layer.name, "×".join(map(str, layer.shape)), str(layer.bits), f"{100 * layer.sparsity:.1f}%"]
              for layer in best.layers]
    return (f'<div class="{card}" id="best"><h2>Baseline vs best ({metric}, test split, same process)</h2>'
            f"{verdict}{_table(['', 'baseline', 'best', 'ratio'], rows, {1, 2})}"
            f"<h3>Weights of the best model</h3>{_table(['layer', 'shape', 'bits', 'zeros'], layers, {2, 3})}</div>")


def _binding(report: Report) -> str:
    b = report.binding
    if b is None:
        return ""
    if b.nearest_trial is None:
        return escape(b.constraint) + "."
    return escape(f"Binding constraint: {b.constraint} <= {b.limit:g}; the nearest candidate, trial "
                  f"{b.nearest_trial}, reached {b.nearest_value:.4g} and missed by {b.missed_by:.4g} on {b.split}.")


def _scatter(report: Report, x_of: Any, baseline_x: float, title: str, x_title: str) -> go.Figure:
    figure = go.Figure()
    groups = {"infeasible": lambda t: not t.feasible,
              "feasible": lambda t: t.feasible and t.number not in report.pareto,
              "Pareto front": lambda t: t.number in report.pareto}  # drawn last, so on top
    for (name, keep), colour in zip(groups.items(), ("#aaaaaa", "#1f77b4", "#d62728"), strict=True):
        trials = [t for t in report.trials if t.metric is not None and x_of(t) is not None and keep(t)]
        figure.add_trace(go.Scatter(
            x=[x_of(t) for t in trials], y=[t.metric for t in trials], mode="markers", name=name,
            marker={"color": colour, "size": 10},
            text=[f"trial {t.number}: {' → '.join(t.passes)}" for t in trials], hoverinfo="text+x+y"))
    figure.add_trace(go.Scatter(x=[baseline_x], y=[report.baseline_val.metric], mode="markers", name="baseline",
                                marker={"symbol": "star", "size": 16, "color": "#2ca02c"}))
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=f"{report.metric['name']} (validation)",
                         height=420, margin={"l": 50, "r": 10, "t": 50, "b": 50})
    return figure


def _plots(report: Report) -> str:
    base = report.baseline_val
    latency = _scatter(report, lambda t: t.latency_ms.p50 if t.latency_ms else None, base.latency_ms.p50,
                       "metric against latency", "p50 latency (ms)")
    size = _scatter(report, lambda t: t.size_bytes, base.size_bytes, "metric against size", "size (bytes)")
    # Fixed div ids keep the page a pure function of report.json (plotly would draw random ones).
    return (f'<div class="plots"><div>{latency.to_html(full_html=False, include_plotlyjs=True, div_id="latency")}'
            f'</div><div>{size.to_html(full_html=False, include_plotlyjs=False, div_id="size")}</div></div>')


def _trial_rows(trials: list[Trial]) -> list[list[str]]:
    return [[str(t.number), t.state, " → ".join(t.passes) or "–", _num(t.metric), _num(t.metric_drop),
             _num(t.latency_ms.p50 if t.latency_ms else None), _bytes(t.size_bytes), _feasible(t),
             t.note or "; ".join(f"{v.constraint} missed by {v.missed_by:.4g}" for v in t.violations)]
            for t in trials if t.state != "skipped"]


def _feasible(trial: Trial) -> str:
    if trial.state in ("complete", "pruned"):
        return "yes" if trial.feasible else "no"
    return "–"


def _measured_row(trial: int, measured: Measured, meets: bool, note: str) -> list[str]:
    return [str(trial), _num(measured.metric), _num(measured.latency_ms.p50), _bytes(measured.size_bytes),
            "yes" if meets else "no", note]


def render_html(report: Report) -> str:
    constraints = ", ".join(f"{k} <= {v:g}" for k, v in report.constraints.items() if v is not None) or "none"
    warnings = "".join(f"<li>{escape(w)}</li>" for w in report.warnings)
    finalists = [_measured_row(f.trial, f.measured, f.meets_constraints,
                               "; ".join(f"{v.constraint} missed by {v.missed_by:.4g}" for v in f.violations))
                 for f in report.finalists]
    env = [[k, v if isinstance(v, str) else json.dumps(v)] for k, v in report.env.items()]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tradeoff: {escape(report.name)}</title>
<style>{STYLE}</style></head><body>
<h1>tradeoff: {escape(report.name)}</h1>
<p class="sub">metric {escape(report.metric['name'])} · objectives {escape(', '.join(report.objectives))}
· constraints {escape(constraints)}</p>
{f'<div class="card warn" id="warnings"><b>Warnings</b><ul>{warnings}</ul></div>' if warnings else ''}
{_comparison(report)}
<h2>Trade-offs explored (validation split)</h2>
{_plots(report)}
<h2>Finalists re-measured on the test split</h2>
{_table(['trial', 'metric', 'p50 ms', 'size', 'meets constraints', 'violations'], finalists, {1, 2})}
<h2>Trials</h2>
{_table(['trial', 'state', 'passes', 'metric', 'drop', 'p50 ms', 'size', 'feasible', 'note'],
        _trial_rows(report.trials), {3, 4, 5})}
<h2>Environment</h2>
{_table(['key', 'value'], env)}
</body></html>
"""
