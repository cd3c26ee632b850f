"""report.html: self-contained, escaped, and rendered by a real browser with no JavaScript error."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tradeoff.optimize import OptimizeResult
from tradeoff.replay import rerender
from tradeoff.report.html import render_html

ERROR_CATCHER = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
window.addEventListener('unhandledrejection', e => window.__errors.push(String(e.reason)));
document.addEventListener('DOMContentLoaded', () => setTimeout(() => {
  const out = document.createElement('pre'); out.id = 'js-errors';
  out.textContent = window.__errors.join('\\n'); document.body.appendChild(out);
}, 1500));
</script>"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=8000", "--dump-dom"]


def test_report_embeds_plotly_once_and_loads_nothing_from_the_network(optimized_run) -> None:
    page = optimized_run[0].report.html_path.read_text()
    assert page.count("plotly.js v") >= 1 and page.count('<script type="text/javascript">/**') <= 1
    assert 'src="http' not in page and "cdn.plot.ly" not in page.split("</head>")[0]


def test_report_shows_every_measured_trial_and_the_baseline_vs_best_card(optimized_run) -> None:
    result: OptimizeResult = optimized_run[0]
    page = result.report.html_path.read_text()
    report = result.report.data
    assert 'id="best"' in page and f"{report.best.ratios.speedup:.2f}x faster" in page
    for trial in report.trials:
        if trial.state != "skipped":
            assert f"<td>{trial.number}</td><td>{trial.state}</td>" in page


def test_strings_from_the_report_are_escaped(optimized_run) -> None:
    report = optimized_run[0].report.data.model_copy(update={"name": "<img src=x onerror=alert(1)>"})
    page = render_html(report)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_report_command_rerenders_from_report_json(optimized_run, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(optimized_run[0].run_dir, copy)
    (copy / "report.html").unlink()
    assert rerender(copy).read_text() == optimized_run[0].report.html_path.read_text()


def test_report_renders_in_chromium_without_js_errors(optimized_run, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Chromium is not installed: apt-get install chromium (make test does it)")
    page = optimized_run[0].report.html_path.read_text().replace("<head>", "<head>" + ERROR_CATCHER, 1)
    target = tmp_path / "report.html"
    target.write_text(page)
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", target.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert '<pre id="js-errors"></pre>' in dom, dom[dom.find('id="js-errors"'):][:500]
    assert dom.count('class="main-svg"') >= 4  # two plots, each drawn as plotly's SVG layers
