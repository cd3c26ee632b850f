"""sensitivity.html, what `tradeoff sensitivity` writes: report.html's sensitivity section as a page of its own."""

from __future__ import annotations

from html import escape
from typing import Any

from tradeoff.report.html import STYLE, sensitivity_section


def render_sensitivity_html(name: str, sensitivity: dict[str, Any]) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tradeoff sensitivity: {escape(name)}</title>
<style>{STYLE}</style></head><body>
<h1>tradeoff sensitivity: {escape(name)}</h1>
{sensitivity_section(sensitivity, include_plotlyjs=True)}
</body></html>
"""
