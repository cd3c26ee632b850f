"""explain.html: the surrogate rules and attributions of explain.json on one self-contained page (plotly inlined)."""

from __future__ import annotations

from html import escape

import numpy as np
import plotly.graph_objects as go

from tradeoff.insight.explain import Explanation
from tradeoff.report.html import STYLE, html_table

SHOWN_FEATURES = 15  # bars in the importance chart: the most important features of either model


def _importance_chart(e: Explanation) -> str:
    """Each model's share of its total |attribution| per feature, side by side: shares, because the two models'
    raw scores need not be on one scale."""
    shares = {name: np.asarray(values) / max(float(np.sum(values)), 1e-12)
              for name, values in e.attributions.importance.items()}
    order = np.argsort(-np.max(np.stack(list(shares.values())), axis=0), kind="stable")[:SHOWN_FEATURES]
    figure = go.Figure([go.Bar(name=name, x=[e.features[i] for i in order], y=values[order])
                        for name, values in shares.items()])
    figure.update_layout(barmode="group", height=420, yaxis_title="share of mean |attribution|",
                         margin={"l": 60, "r": 10, "t": 30, "b": 120}, legend={"orientation": "h", "y": 1.1})
    return figure.to_html(full_html=False, include_plotlyjs=True, div_id="plot-importance")


def render_explanation(e: Explanation) -> str:
    """The whole page as one string, a pure function of explain.json."""
    summary = [[m.model, m.format, s.kind, str(len(s.rules)), f"{100 * s.fidelity:.1f}%",
                f"{100 * s.validation_fidelity:.1f}%"] for m in e.models for s in m.surrogates]
    a = e.attributions
    spearman = "–" if a.spearman is None else f"{a.spearman:.3f}"
    top = [[name, ", ".join(features)] for name, features in a.top.items()]
    k = len(next(iter(a.top.values())))
    rules = "".join(f"<h3>{escape(m.model)}: {escape(s.kind)} ({len(s.rules)} rules, fidelity "
                    f"{100 * s.fidelity:.1f}%)</h3><ol>" + "".join(f"<li>{escape(r.text)}</li>" for r in s.rules)
                    + "</ol>" for m in e.models for s in m.surrogates)
    notes = "".join(f"<li>{escape(n)}</li>" for n in e.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tradeoff explain: {escape(e.name)}</title>
<style>{STYLE}</style></head><body>
<h1>tradeoff explain: {escape(e.name)}</h1>
<p class="sub">{e.classes} classes, {len(e.features)} features; fidelity is the surrogate's agreement with its model's
predicted class on the {e.test_samples} test samples.</p>
{f'<div class="card warn" id="notes"><b>Read with care</b><ul>{notes}</ul></div>' if notes else ''}
<h2>Surrogate rules</h2>
{html_table(['model', 'format', 'surrogate', 'rules', 'fidelity (test)', 'fidelity (validation)'], summary,
            {3, 4, 5}, 'surrogates')}
<h2>Attributions</h2>
<p class="sub">{escape(a.method)} on {a.samples} test samples, for the class the original predicts. Spearman rank
correlation of the two models' feature importances: <b id="spearman">{spearman}</b>; top-{k}
overlap {100 * a.top_k_overlap:.0f}%.</p>
{html_table(['model', 'top features'], top, html_id='top-features')}
{_importance_chart(e)}
<h2>Rules</h2>
<p class="sub">Thresholds in the data's own units; a rule list is read in order, the first rule that holds
decides.</p>
{rules}
</body></html>
"""
