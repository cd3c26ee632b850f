"""The report of `tradeoff tune` and `tradeoff nas`: how the search went (each trial's validation metric and the best
so far), which parameters mattered (Optuna's fANOVA importances), where the good trials lie (parallel
coordinates), the metric against the cost (several objectives, or an architecture search), and for an architecture
search its Pareto front and the reference model. Self-contained like report.html: plotly.js inlined once."""

from __future__ import annotations

import warnings
from html import escape
from typing import Any

import optuna
import plotly.graph_objects as go

from tradeoff.nas.space import Architecture
from tradeoff.objectives import objective_key
from tradeoff.report.html import STYLE, fixed, html_table
from tradeoff.search.record import TrialRecord

STATE_COLOURS = {"complete": "#1f77b4", "pruned": "#bbbbbb", "failed": "#d62728"}


def _figure_html(figure: go.Figure, div_id: str, first: bool) -> str:
    figure.update_layout(height=380, margin={"t": 40, "b": 40})
    return figure.to_html(full_html=False, include_plotlyjs=first, div_id=div_id)  # fixed ids: a pure function


def _history(trials: list[TrialRecord], metric: dict[str, Any]) -> go.Figure:
    figure = go.Figure()
    for state, colour in STATE_COLOURS.items():
        shown = [r for r in trials if r.state == state and r.values.get("metric") is not None]
        figure.add_trace(go.Scatter(x=[r.number for r in shown], y=[r.values["metric"] for r in shown], mode="markers",
                                    name=state, marker={"color": colour}))
    best, xs, ys = None, [], []
    for r in sorted(trials, key=lambda r: r.number):
        value = r.values.get("metric")
        if r.state == "complete" and value is not None and (
                best is None or (value > best if metric["higher_is_better"] else value < best)):
            best = value
        if best is not None:
            xs.append(r.number)
            ys.append(best)
    figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="best so far", line={"shape": "hv"}))
    figure.update_layout(title=f"{metric['name']} on validation, by trial (pruned: at the epoch it was stopped)",
                         xaxis_title="trial", yaxis_title=metric["name"])
    return figure


def _importances(study: optuna.Study) -> go.Figure | None:
    """fANOVA importances of the parameters for the validation metric; None with too few finished trials."""
    def target(trial: optuna.trial.FrozenTrial) -> float:
        return float(TrialRecord.read(trial).values.get("metric") or 0.0)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study, target=target)
    except (RuntimeError, ValueError):
        return None
    names = list(found)[::-1]
    figure = go.Figure(go.Bar(x=[found[n] for n in names], y=names, orientation="h"))
    figure.update_layout(title="parameter importance for the validation metric (fANOVA)", xaxis_title="importance")
    return figure


def _parallel(study: optuna.Study, metric: str) -> go.Figure | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.visualization.plot_parallel_coordinate(
                study, target=lambda t: float(TrialRecord.read(t).values.get("metric") or 0.0), target_name=metric)
    except (RuntimeError, ValueError):
        return None


def _taught(summary: dict[str, Any]) -> str:
    """What the subtitle says of `distill`: every candidate learned from the task's own model too."""
    distill = summary.get("distill")
    if not distill:
        return ""
    return (f" · every candidate taught by the task's model (temperature {distill['temperature']:g}, "
            f"weight {distill['weight']:g})")


def _tradeoff(trials: list[TrialRecord], objectives: list[str], metric: str, first_batch: int,
              architectures: bool) -> go.Figure | None:
    cost = next((o for o in objectives if o != "metric"), "latency" if architectures else None)
    if cost is None:
        return None
    key = objective_key(cost, first_batch)
    shown = [r for r in trials if r.state == "complete" and r.values.get(key) is not None]
    figure = go.Figure(go.Scatter(x=[r.values[key] for r in shown], y=[r.values["metric"] for r in shown],
                                  mode="markers", text=[f"trial {r.number}" for r in shown]))
    figure.update_layout(title=f"{metric} against {cost}", xaxis_title=key, yaxis_title=metric)
    return figure


def _architecture_sections(summary: dict[str, Any], first_batch: int) -> str:
    """The Pareto front and the reference model of an architecture search."""
    latency = f"latency_ms.p50@b{first_batch}"
    by_number = {t["number"]: t for t in summary["trials"]}
    rows = [[str(n), fixed(by_number[n]["values"].get("metric")), fixed(by_number[n]["values"].get(latency)),
             f"{int(by_number[n]['values'].get('params') or 0):,}", _architecture(by_number[n]["params"])]
            for n in summary["front"]]
    front = html_table(["trial", summary["metric"]["name"], f"p50 ms (batch {first_batch})", "parameters",
                        "architecture"], rows, (0, 1, 2, 3), "front")
    reference = summary.get("reference")
    said = ""
    if reference:
        values = reference["values"]
        beaten = ", ".join(str(n) for n in reference["dominated_by"]) or "no trial"
        said = (f"<p>Reference, the task's own model trained alike: {escape(_architecture(reference))}, "
                f"{escape(summary['metric']['name'])} {fixed(values.get('metric'))} on validation, "
                f"{fixed(values.get(latency))} ms, {int(values.get('params') or 0):,} parameters; test "
                f"{fixed(reference['test_metric'])}. At least as good on all three (on validation), better on one: "
                f"{escape(beaten)}.</p>")
    rerank = ""
    if summary.get("reranked"):
        name, folds = summary["metric"]["name"], "folds" in summary["reranked"][0]
        judged = (f"the mean of {len(summary['reranked'][0]['folds'])} cross-validation folds of train+val" if folds
                  else "validation")
        rows = [[str(r["trial"]), fixed(r["search_metric"]), fixed(r["metric"]),
                 *([_span(r["folds"])] if folds else []), str(r["epochs"]),
                 _architecture(by_number[r["trial"]]["params"])] for r in summary["reranked"]]
        warning = ""
        if reference:
            rows.append(["reference", "–", fixed(reference["rerank_metric"]),
                         *([_span(reference["rerank_folds"])] if folds else []), "–", _architecture(reference)])
            if reference["rerank_beats_all"]:
                warning = ("<p><b>By this judge the task's own model is better than every trial reranked: the "
                           "search found no architecture better than it, and the chosen one ships only as the best "
                           "it found.</b></p>\n")
        rerank = (f"<h2>Rerank: the best trials trained again by the longer options</h2>\n<p>The chosen trial is the "
                  f"best of these by {escape(name)} on {judged} after the longer training.</p>\n{warning}"
                  + html_table(["trial", f"{name} (search)", f"{name} (rerank)", *(["folds"] if folds else []),
                                "epochs kept", "architecture"], rows, (0, 1, 2, 3, *((4,) if folds else ())), "rerank"))
    return f"<h2>Pareto front (validation metric, latency, parameters)</h2>\n{said}\n{front}\n{rerank}"


def _retimed_section(summary: dict[str, Any], first_batch: int) -> str:
    """The finalists' latency timed again before the choice, and which gave their place for breaking a ceiling."""
    retimed = summary.get("retimed")
    if not retimed:
        return ""
    ratio, latency = f"latency_ratio.p50@b{first_batch}", f"latency_ms.p50@b{first_batch}"
    rows = [[str(r["trial"]), fixed(r["values"].get(latency)), fixed(r["values"].get(ratio)),
             ", ".join(r["over"]) or "within"] for r in retimed]
    dropped = sum(bool(r["over"]) for r in retimed)
    return (f"<h2>The best trials timed again</h2>\n<p>Before the choice, the best trials' latency was timed again "
            f"beside the task's own model, in more rounds than admitted them; {dropped} of {len(retimed)} broke a "
            f"latency ceiling so and gave their place to the next best.</p>\n"
            + html_table(["trial", f"p50 ms (batch {first_batch})", "ratio to the task's model", "ceilings"], rows,
                         (0, 1, 2), "retimed"))


def _span(folds: list[float]) -> str:
    """The range of a rerank's per-fold figures."""
    return f"{min(folds):.4f} to {max(folds):.4f}"


def _architecture(params: dict[str, Any] | None) -> str:
    model = (params or {}).get("model")
    return str(Architecture(model["factory"], model["options"])) if model else ""


def render_tuning_html(name: str, kind: str, summary: dict[str, Any], study: optuna.Study,
                       trials: list[TrialRecord], first_batch: int) -> str:
    metric, best, final = summary["metric"], summary["best"], summary["final"]
    architectures = "front" in summary
    figures = [f for f in (_history(trials, metric), _importances(study), _parallel(study, metric["name"]),
                           _tradeoff(trials, summary["objectives"], metric["name"], first_batch, architectures))
               if f is not None]
    plots = "\n".join(_figure_html(f, f"figure{i}", i == 0) for i, f in enumerate(figures))
    defaults = summary.get("defaults")
    compared = (f" · the task's own settings (trial {defaults['trial']}): {fixed(defaults['values'].get('metric'))}"
                if defaults else "")
    params = [[k, _architecture(best["params"]) if k == "model" else str(v)]  # html_table escapes every cell
              for k, v in (best["params"] or {}).items()]
    rows = [[str(t["number"]), t["state"], ", ".join(f"{k}={v}" for k, v in (t["params"] or {}).items()),
             fixed(t["values"].get("metric")), str(int(t["values"].get("epochs") or 0)), t["note"] or ""]
            for t in summary["trials"]]
    compute = summary["compute"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tradeoff {kind}: {escape(name)}</title>
<style>{STYLE}</style></head><body>
<h1>tradeoff {kind}: {escape(name)}</h1>
<p class="sub">best: trial {best['trial']}, {escape(metric['name'])} on validation
<b>{fixed(best['values'].get('metric'))}</b>{compared} · retrained on train+val for {final['epochs']} epochs:
test <b>{fixed(final['test_metric'])}</b> (scored once; it decided nothing) · sampler {escape(summary['sampler'])},
pruner {escape(summary['pruner'])}{_taught(summary)} · {compute['complete']} complete, {compute['pruned']} pruned,
{compute['failed']} failed, {compute['epochs_trained']} epochs trained in all</p>
<h2>Best parameters</h2>
{html_table(['parameter', 'value'], params, (), 'params')}
{_retimed_section(summary, first_batch)}
{_architecture_sections(summary, first_batch) if architectures else ''}
{plots}
<h2>Trials</h2>
{html_table(['trial', 'state', 'parameters', metric['name'], 'epochs', 'note'], rows, (0, 3, 4), 'trials')}
</body></html>
"""
