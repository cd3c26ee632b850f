"""The report of `tradeoff train`: the loss and metric curves per epoch, so the train/monitored gap (overfitting)
and where early stopping cut are seen at a glance. Self-contained like report.html: plotly.js inlined."""

from __future__ import annotations

from html import escape
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tradeoff.report.html import STYLE, fixed, html_table


def _curves(history: list[dict[str, Any]], best_epoch: int) -> str:
    epochs = [r["epoch"] for r in history]
    scored = any(r["monitor_metric"] is not None for r in history)
    figure = make_subplots(rows=1, cols=2 if scored else 1, subplot_titles=["loss", "metric (monitored split)"])
    figure.add_trace(go.Scatter(x=epochs, y=[r["train_loss"] for r in history], name="train loss"), row=1, col=1)
    figure.add_trace(go.Scatter(x=epochs, y=[r["monitor_loss"] for r in history], name="monitored loss"), row=1, col=1)
    if scored:
        figure.add_trace(go.Scatter(x=epochs, y=[r["monitor_metric"] for r in history], name="metric"), row=1, col=2)
    if best_epoch:
        figure.add_vline(x=best_epoch, line_dash="dot", annotation_text="best")
    figure.update_layout(height=380, margin={"t": 40, "b": 40}, xaxis_title="epoch")
    # A fixed div id keeps the page a pure function of its data.
    return figure.to_html(full_html=False, include_plotlyjs=True, div_id="curves")


def render_training_html(name: str, summary: dict[str, Any], history: list[dict[str, Any]]) -> str:
    metric = summary["metric"]
    stopped = (f"stopped early after epoch {summary['epochs_run']}" if summary["stopped_early"]
               else f"ran {summary['epochs_run']} epochs")
    rows = [[str(r["epoch"]), fixed(r["train_loss"]), fixed(r["monitor_loss"]), fixed(r["monitor_metric"]),
             f"{r['lr']:.3g}", f"{r['clipped']:.0%}", f"{r['samples_per_s']:.0f}"] for r in history]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tradeoff train: {escape(name)}</title>
<style>{STYLE}</style></head><body>
<h1>tradeoff train: {escape(name)}</h1>
<p class="sub">{stopped}; best epoch {summary['best_epoch']} (its weights kept) ·
{escape(metric['name'])}: validation <b>{fixed(metric['val'])}</b>, test <b>{fixed(metric['test'])}</b>
(test scored once, after training)</p>
{_curves(history, summary['best_epoch']) if history else ''}
<h2>Epochs</h2>
{html_table(['epoch', 'train loss', 'monitored loss', 'metric', 'lr', 'clipped steps', 'samples/s'], rows,
        range(1, 7), 'epochs')}
</body></html>
"""
