"""`dvc plots show` renders with no network: deepgal's HTML template carries Vega, Vega-Lite and
Vega-Embed inline, DVC picks it up from `plots.html_template`, and the page it writes loads no
script from anywhere. The slow test renders the page in headless Chromium with every network
request refused, and checks the same check fails for DVC's own CDN page."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepgal.plots.offline import html_template
from tests.pipeline_repo import env_for
from tests.ports import refused_port

DVC_YAML = """plots:
  - history.csv:
      x: epoch
      y: val/accuracy
"""
SCRIPT_SRC = re.compile(r"<script[^>]*\ssrc\s*=", re.IGNORECASE)


@pytest.fixture(scope="module")
def template() -> str:
    return html_template()


def test_template_inlines_the_libraries_and_drops_dvc_cdn_placeholder(template):
    assert "{plot_divs}" in template and "{refresh_tag}" in template
    assert "{scripts}" not in template  # where DVC would put its CDN <script src> tags
    assert not SCRIPT_SRC.search(template)
    assert "window.vegaEmbed=" in template and len(template) > 500_000
    assert re.search(r"Vega-Lite 5\.\d+", template)  # DVC's specs use the v5 schema


def dvc_repo(root: Path, template_text: str | None) -> tuple[Path, dict]:
    """A git + DVC repo with one CSV plot, and deepgal's template configured when given."""
    root.mkdir()
    env = env_for(root)
    (root / "history.csv").write_text("epoch,val/accuracy\n1,0.2\n2,0.4\n3,0.55\n4,0.6\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (
        ["git", "init", "-q"],
        dvc + ["init", "-q"],
        dvc + ["config", "core.analytics", "false"],
    ):
        subprocess.run(cmd, cwd=root, env=env, check=True)
    if template_text is not None:
        (root / "reports").mkdir()
        (root / "reports" / "dvc_plots_template.html").write_text(template_text)
        # Relative to .dvc/, as DVC resolves it: the line the project's .dvc/config holds.
        subprocess.run(
            dvc + ["config", "plots.html_template", "../reports/dvc_plots_template.html"],
            cwd=root,
            env=env,
            check=True,
        )
    out = subprocess.run(
        dvc + ["plots", "show", "-o", "dvc_plots"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return root / "dvc_plots" / "index.html", env


def test_dvc_plots_show_uses_the_template_and_loads_no_script(tmp_path, template):
    page, _ = dvc_repo(tmp_path / "repo", template)
    html = page.read_text()
    assert not SCRIPT_SRC.search(html), "the page loads a script from elsewhere"
    assert "vegaEmbed('#" in html and "window.vegaEmbed=" in html


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    return exe


def rendered_dom(page: Path) -> str:
    """The page's DOM after its scripts ran, with every network request refused."""
    with refused_port() as port:
        out = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--proxy-server=127.0.0.1:{port}",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--virtual-time-budget=10000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
def test_chart_renders_offline_in_chromium_and_dvc_default_page_does_not(tmp_path, template):
    page, _ = dvc_repo(tmp_path / "ours", template)
    dom = rendered_dom(page)
    # vega-embed drew the chart: its container and Vega's marks (svg or canvas) exist.
    assert 'class="vega-embed' in dom and 'class="marks"' in dom
    default_page, _ = dvc_repo(tmp_path / "dvc_default", None)
    assert SCRIPT_SRC.search(default_page.read_text())  # DVC's own page: scripts from a CDN
    assert 'class="marks"' not in rendered_dom(default_page)
