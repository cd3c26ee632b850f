"""report.html: one self-contained page (plotly.js inlined once, no CDN) that renders with no network."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from html import escape
from typing import Any

import plotly.graph_objects as go

from tradeoff.objectives import times
from tradeoff.report.schema import Binding, Energy, Measured, Report, Spend, Trial, Violation

# Metrics in [0, 1] whose drops read better as points (0.012 -> 1.2 points).
ACCURACY_LIKE = frozenset({"accuracy", "f1_macro"})

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1150px;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .sub{color:#555;margin-top:0} code{font-size:.9em}
table{border-collapse:collapse;margin:.8rem 0;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top} th{background:#f5f5f5}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.card{border:1px solid #ccc;border-radius:8px;padding:1rem;margin:1rem 0}
.warn{background:#fff6e0;border-color:#e0b040} .plots{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
"""
COLOURS = {"infeasible": "#f28e2b", "feasible": "#4e79a7", "Pareto front": "#d62728", "baseline": "#2ca02c"}


def _bytes(n: int | None) -> str:
    """Binary units, so a 4x smaller model reads as a 4x smaller number."""
    if n is None:
        return "–"
    if n < 1024:
        return f"{n} B"
    size, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.2f} {unit}"


def fixed(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _drop(report: Report, drop: float | None) -> str:
    """Metric drop as the user thinks of it: points for accuracy-like metrics, raw units otherwise."""
    if drop is None:
        return "–"
    if report.metric["name"] in ACCURACY_LIKE:
        return f"{100 * drop:+.2f} pts"
    return f"{drop:+.4g}"


def _violations(violations: Iterable[Violation]) -> str:
    return "; ".join(f"{v.constraint}: {v.value:.4g} > {v.limit:.4g} (missed by {v.missed_by:.4g})"
                     for v in violations)


def html_table(headers: list[str], rows: Iterable[list[str]], numeric: Iterable[int] = (), html_id: str = "") -> str:
    """Every cell is escaped here, so callers pass plain strings straight from the report."""
    num = set(numeric)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td{' class=num' if i in num else ''}>{escape(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>\n" for row in rows)
    id_attr = f' id="{escape(html_id)}"' if html_id else ""
    return f"<table{id_attr}><tr>{head}</tr>\n{body}</table>"


def _binding(binding: Binding | None) -> str:
    if binding is None:
        return ""
    if binding.nearest_trial is None:
        return f"<p>Binding: {escape(binding.constraint)}.</p>"
    value = "–" if binding.nearest_value is None else f"{binding.nearest_value:.4g}"
    missed = "–" if binding.missed_by is None else f"{binding.missed_by:.4g}"
    return (f"<p>Binding constraint: <b>{escape(binding.constraint)} ≤ {binding.limit:.4g}</b>. Nearest candidate: "
            f"trial {binding.nearest_trial}, {escape(value)} on the validation split, missed by {escape(missed)}.</p>")


def _verdict(report: Report) -> str:
    """What shipped and why, by the rule the choice followed; a constraint the shipped model breaks on test is
    said plainly (the choice is never made again on test)."""
    best = report.best
    rule = f"<p class=sub>Chosen on validation by {escape(report.choice.rule)}.</p>"
    if best.is_baseline and report.binding is not None:
        return ("<p><b>No candidate met the constraints: the best model is the unmodified baseline.</b></p>"
                + _binding(report.binding))
    if best.is_baseline:
        return "<p><b>No candidate beat the baseline by the rule below: the best model is the baseline.</b></p>" + rule
    passes = " → ".join(str(s.get("pass", "?")) for s in best.recipe.get("steps", [])) or "as given"
    broken = (f'<p id="test-violations"><b>On the test split the chosen model breaks '
              f"{escape(_violations(best.test_violations))}</b>. It was chosen on validation and ships as chosen: "
              "read its test figures with that in mind.</p>" if best.test_violations else "")
    return (f"<p>Best: trial {best.trial}, <code>{escape(passes)}</code>, "
            f"artifact <code>{escape(best.artifact or '–')}</code>.</p>{rule}{broken}")


def _comparison(report: Report) -> str:
    """The card a reader looks at first: what shipped, and what it costs and saves against the baseline."""
    base, best, r = report.baseline, report.best, report.best.ratios
    rows = [
        [report.metric["name"], fixed(base.metric), fixed(best.metric), f"drop {_drop(report, r.metric_drop)}"],
        [f"p50 latency (ms, {base.latency_ms.setting()})", fixed(base.latency_ms.p50, 3),
         fixed(best.latency_ms.p50, 3), times(r.speedup, "faster", "slower")],
        ["p95 latency (ms)", fixed(base.latency_ms.p95, 3), fixed(best.latency_ms.p95, 3), ""],
        ["size", _bytes(base.size_bytes), _bytes(best.size_bytes), times(r.size_reduction, "smaller", "larger")],
        ["size, zstd", _bytes(base.size_zstd_bytes), _bytes(best.size_zstd_bytes),
         times(r.size_zstd_reduction, "smaller", "larger")],
        ["params / non-zero", f"{base.params:,} / {base.nonzero_params:,}",
         f"{best.params:,} / {best.nonzero_params:,}", ""],
        ["runtime / format", f"{base.running} / {base.format}", f"{best.running} / {best.format}", ""],
    ]
    rows += _cost_rows(base, best)
    layers = [[layer.name, "×".join(map(str, layer.shape)), str(layer.bits), f"{100 * layer.sparsity:.1f}%"]
              for layer in best.layers]
    layer_table = f"<h3>Weights of the best model</h3>{html_table(['layer', 'shape', 'bits', 'zeros'], layers, {2, 3})}"
    warn = best.is_baseline or best.test_violations
    return (f'<div class="card{" warn" if warn else ""}" id="best">'
            f"<h2>Baseline vs best (test split, same process)</h2>{_verdict(report)}"
            f"{html_table(['', 'baseline', 'best', 'change'], rows, {1, 2}, 'comparison')}{_energy_method(best)}"
            f"{layer_table if layers else ''}</div>")


def _energy(energy: Energy | None) -> str:
    """Joules with their label: an estimate always reads as one."""
    return "–" if energy is None else f"{energy.joules:.3g} J ({energy.source})"


def _cost_rows(base: Measured, best: Measured) -> list[list[str]]:
    """Cost per million predictions (where the task gives a price) and energy per prediction at each batch size,
    from the measured throughput: the rows of the comparison card."""
    rows = []
    for batch, cost in base.cost_by_batch.items():
        shipped = best.cost_by_batch.get(batch)
        if cost.usd_per_million is not None and shipped is not None and shipped.usd_per_million is not None:
            rows.append([f"USD per million predictions (batch {batch})", f"{cost.usd_per_million:.4g}",
                         f"{shipped.usd_per_million:.4g}",
                         times(cost.usd_per_million / shipped.usd_per_million, "cheaper", "more expensive")])
        before, after = cost.energy_per_prediction, shipped.energy_per_prediction if shipped else None
        if before is not None or after is not None:
            change = (times(before.joules / after.joules, "less energy", "more energy")
                      if before and after and after.joules > 0 and before.source == after.source else "")
            rows.append([f"energy per prediction (batch {batch})", _energy(before), _energy(after), change])
    return rows


def _energy_method(best: Measured) -> str:
    """How the energy per prediction was found, in words, under the table that shows it."""
    energy = next((c.energy_per_prediction for c in best.cost_by_batch.values() if c.energy_per_prediction), None)
    if energy is None:
        return ""
    return (f'<p class=sub id="energy-method">Energy per prediction: the timed calls\' energy over the predictions '
            f"they made, {energy.source} ({escape(energy.method)}).</p>")


def _spend_row(what: str, spend: Spend) -> list[str]:
    return [what, f"{spend.wall_s:.3g}", f"{spend.cpu_s:.3g}", _bytes(spend.peak_memory_bytes), _energy(spend.energy)]


def _run_spend(report: Report) -> str:
    """What optimizing cost: the baseline's measurement, each trial (as its worker measured it), the whole run."""
    if report.spend is None:
        return ""
    rows = [_spend_row("baseline measured", report.spend.baseline)]
    rows += [_spend_row(f"trial {t.number}", t.spend) for t in report.trials if t.spend is not None]
    rows.append(_spend_row("whole run (loading to report)", report.spend.run))
    energy = report.spend.run.energy
    return (f"<h2>What optimizing cost</h2><p class=sub>This process's time, CPU and memory; energy of the whole run "
            f"{energy.source} ({escape(energy.method)}).</p>"
            f"{html_table(['', 'wall s', 'CPU s', 'peak memory', 'energy'], rows, {1, 2, 3, 4}, 'run-spend')}")


def _scatter(report: Report, x_of: Callable[[Trial], float | None], baseline: Measured, x_base: float,
             x_title: str) -> go.Figure:
    """Trials by group, so infeasible points and the Pareto front read apart at a glance."""
    front = set(report.pareto)
    groups: dict[str, Callable[[Trial], bool]] = {
        "infeasible": lambda t: not t.feasible,
        "feasible": lambda t: t.feasible and t.number not in front,
        "Pareto front": lambda t: t.feasible and t.number in front,  # drawn last, so on top
    }
    figure = go.Figure()
    for name, keep in groups.items():
        trials = [t for t in report.trials if t.metric is not None and x_of(t) is not None and keep(t)]
        figure.add_trace(go.Scatter(
            x=[x_of(t) for t in trials], y=[t.metric for t in trials], mode="markers", name=name,
            marker={"color": COLOURS[name], "size": 13 if name == "Pareto front" else 9,
                    "line": {"width": 1, "color": "#333"} if name == "Pareto front" else {"width": 0}},
            # plotly reads hover text as a small HTML subset, so report strings are escaped here too.
            text=[f"trial {t.number}<br>{escape(' → '.join(t.passes) or 'no passes')}" for t in trials],
            hovertemplate="%{text}<br>x=%{x}<br>metric=%{y}<extra></extra>"))
    figure.add_trace(go.Scatter(
        x=[x_base], y=[baseline.metric], mode="markers", name="baseline",
        marker={"symbol": "star", "size": 17, "color": COLOURS["baseline"], "line": {"width": 1, "color": "#333"}},
        hovertemplate="baseline on validation, timed in rounds beside the finalists<br>x=%{x}<br>metric=%{y}"
                      "<extra></extra>"))
    # Log axes: candidates span orders of magnitude (a slow int8 path beside a 4x faster export), and equal ratios
    # should look equally far apart.
    figure.update_layout(xaxis_title=x_title, xaxis_type="log",
                         yaxis_title=escape(f"{report.metric['name']} (trials: validation)"),
                         height=420, margin={"l": 60, "r": 10, "t": 30, "b": 50},
                         legend={"orientation": "h", "y": -0.2})
    return figure


def _plots(report: Report) -> str:
    base = report.baseline_val  # like for like: the trials were measured on validation too
    latency = _scatter(report, lambda t: t.latency_ms.p50 if t.latency_ms else None, base,
                       base.latency_ms.p50, "p50 latency (ms)")
    size = _scatter(report, lambda t: t.size_bytes, base, base.size_bytes, "size (bytes)")
    # Fixed div ids keep the page a pure function of report.json (plotly would draw random ones).
    return (f'<div class="plots"><div>{latency.to_html(full_html=False, include_plotlyjs=True, div_id="plot-latency")}'
            f'</div><div>{size.to_html(full_html=False, include_plotlyjs=False, div_id="plot-size")}</div></div>')


def _trial_row(report: Report, t: Trial) -> list[str]:
    note = "; ".join(s for s in (t.note, _violations(t.violations)) if s)
    feasible = ("yes" if t.feasible else "no") if t.state == "complete" else "–"
    runtime = t.recipe.get("runtime") or "–"
    timings = ", ".join(f"{name} {ms:.3g} ms" for name, ms in sorted(t.runtimes.items(), key=lambda kv: kv[1]))
    return [str(t.number), t.state, " → ".join(t.passes) or "–", fixed(t.metric), _drop(report, t.metric_drop),
            fixed(t.latency_ms.p50 if t.latency_ms else None, 3), _bytes(t.size_bytes),
            f"{runtime} ({timings})" if timings else runtime, feasible, note]


def _objectives(report: Report) -> str:
    if isinstance(report.objectives, dict):
        return "weights " + ", ".join(f"{k} {w:g}" for k, w in report.objectives.items())
    return ", ".join(report.objectives)


def _env_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def sensitivity_section(sensitivity: dict[str, Any], include_plotlyjs: bool) -> str:
    """A heatmap of the metric drop (layers by treatments) and the same as a table."""
    treatments, layers = sensitivity["treatments"], sensitivity["layers"]
    names = [f"{layer['layer']} ({layer['kind']}, {layer['params']:,})" for layer in layers]
    drops = [[layer["drops"].get(t) for t in treatments] for layer in layers]
    figure = go.Figure(go.Heatmap(z=drops, x=list(treatments), y=names, colorscale="Reds", zmin=0,
                                  colorbar={"title": "drop"}, hoverongaps=False))
    figure.update_layout(height=max(260, 40 + 28 * len(layers)), margin={"t": 30, "b": 40},
                         yaxis={"autorange": "reversed"}, title=f"{sensitivity['metric']} drop on validation")
    rows = [[name, *("–" if d is None else fixed(d) for d in row)] for name, row in zip(names, drops, strict=True)]
    notes = "".join(f"<li>{escape(n)}</li>" for n in sensitivity.get("notes", ()))
    return f"""<h2>Layer sensitivity (validation split)</h2>
<p class="sub">The metric drop when one layer alone is quantized or pruned (no fine-tuning), the rest untouched;
baseline {escape(sensitivity['metric'])} {fixed(sensitivity['baseline'])}. – : the treatment does not touch that
layer.</p>
{figure.to_html(full_html=False, include_plotlyjs=include_plotlyjs, div_id="plot-sensitivity")}
{html_table(['layer', *treatments], rows, range(1, len(treatments) + 1), 'sensitivity')}
{f'<ul class="sub">{notes}</ul>' if notes else ''}"""


def render_html(report: Report) -> str:
    """The whole page as one string; a pure function of the report, so `tradeoff report` re-renders it exactly."""
    constraints = ", ".join(f"{k} ≤ {v:g}" for k, v in report.constraints.items() if v is not None) or "none"
    warnings = "".join(f"<li>{escape(w)}</li>" for w in report.warnings)
    finalists = [[str(f.trial), fixed(f.measured.metric), fixed(f.measured.latency_ms.p50, 3),
                  fixed(f.measured.latency_ms.p95, 3), _bytes(f.measured.size_bytes),
                  times(f.ratios.speedup, "faster", "slower"), times(f.ratios.size_reduction, "smaller", "larger"),
                  _drop(report, f.ratios.metric_drop), "yes" if f.meets_constraints else "no",
                  "shipped" if f.trial == report.best.trial else (f.excluded or _violations(f.violations) or "–")]
                 for f in report.finalists]
    trials = [_trial_row(report, t) for t in report.trials]
    env = [[str(k), _env_value(v)] for k, v in report.env.items()]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tradeoff: {escape(report.name)}</title>
<style>{STYLE}</style></head><body>
<h1>tradeoff: {escape(report.name)}</h1>
<p class="sub">metric <b>{escape(str(report.metric.get('name')))}</b>
({'higher' if report.metric.get('higher_is_better', True) else 'lower'} is better)
· objectives {escape(_objectives(report))} · constraints {escape(constraints)}</p>
{f'<div class="card warn" id="warnings"><b>Warnings</b><ul>{warnings}</ul></div>' if warnings else ''}
{_comparison(report)}
<h2>Trade-offs explored</h2>
<p class="sub">Trials and the baseline (star), all measured on the validation split.</p>
{_plots(report)}
{sensitivity_section(report.sensitivity, include_plotlyjs=False) if report.sensitivity else ''}
<h2>Finalists, timed in rounds beside the baseline (validation split)</h2>
<p class="sub">The choice: {escape(report.choice.rule)}.</p>
{html_table(['trial', 'metric', 'p50 ms', 'p95 ms', 'size', 'speed', 'size', 'drop', 'meets constraints',
         'outcome'], finalists, range(1, 8), 'finalists')}
<h2>Trials (validation split)</h2>
<p class="sub" id="search-stats">{escape(report.search_stats.describe())}</p>
{html_table(['trial', 'state', 'passes', 'metric', 'drop', 'p50 ms', 'size', 'runtime (each timed)', 'feasible',
             'note'], trials, {3, 4, 5, 6}, 'trials')}
{_run_spend(report)}
<h2>Environment</h2>
{html_table(['key', 'value'], env, html_id='env')}
</body></html>
"""
