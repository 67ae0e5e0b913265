"""The report in a real browser: headless Chromium loads it offline, every section and image shows,
the console stays clean, and a hostile file or class name stays text.

Chromium is driven through the DevTools protocol over a pipe (``DevTools`` in the dev tool ``scripts/chromium.py``),
so the test needs no driver package. It is skipped only when no Chromium is installed
(``scripts/install_chromium.sh`` installs Debian's).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from alloop.report import write_report


def _load_dev_tool():
    """scripts/chromium.py: a dev tool, not part of the package, loaded by path."""
    path = Path(__file__).resolve().parents[2] / "scripts" / "chromium.py"
    spec = importlib.util.spec_from_file_location("alloop_dev_chromium", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_chromium = _load_dev_tool()
DevTools, find_chromium = _chromium.DevTools, _chromium.find_chromium

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (run scripts/install_chromium.sh or set ALLOOP_CHROMIUM)"
)
SECTIONS = ("summary", "learning-curve", "batch", "embedding-map", "scores", "classes", "per-class-ap",
            "timings", "config")
XSS = "<script>alert(1)</script>"

# Runs in the page once it has loaded; returns what the test checks.
PROBE = """JSON.stringify({
  ids: Array.from(document.querySelectorAll('section[id]')).map(s => s.id),
  images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,
                                                  src: i.src.slice(0, 16)})),
  scripts: document.scripts.length,
  alerted: window.__alerted || false,
  text: document.body.innerText,
})"""


def open_in_chromium(page: Path, profile: Path) -> tuple[dict[str, Any], list[str]]:
    """Load ``page``; return the probe's result and every console error, exception, log error or dialog."""
    tools = DevTools(CHROMIUM, profile)
    try:
        session = tools.open(page, before_load="window.alert = () => { window.__alerted = true; };")
        probe = json.loads(tools.evaluate(PROBE, session))
        problems = []
        for e in tools.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                problems.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                problems.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
                problems.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Page.javascriptDialogOpening":
                problems.append(f"dialog: {params.get('message')}")
        return probe, problems
    finally:
        tools.close()


def test_report_renders_in_chromium(report_project, tmp_path):
    project = report_project(steps=2, baseline=True, names=[f"{XSS}.png"] + [f"img_{k:02d}.png" for k in range(1, 16)],
                             classes=(XSS, "pear"))
    page = write_report(project, 2)
    probe, problems = open_in_chromium(page, tmp_path / "profile")
    assert problems == []
    assert list(probe["ids"]) == list(SECTIONS)
    assert len(probe["images"]) == 9
    broken = [img for img in probe["images"] if not (img["complete"] and img["width"] > 0)]
    assert broken == []
    assert all(img["src"].startswith("data:image/") for img in probe["images"])
    # The hostile class name is shown as text (class tables), never run.
    assert probe["scripts"] == 0 and not probe["alerted"]
    assert XSS in probe["text"]


def test_iteration_zero_report_renders_in_chromium(report_project, tmp_path):
    project = report_project(steps=0, names=[f"img_{k:02d}.png" for k in range(15)] + [f"{XSS}.png"])
    store = project.store
    hostile = next(r for r in store.images() if r.path == f"{XSS}.png")
    members = [(m.image_id, m.distance, None) for m in store.tag_members("initial-selection")]
    store.delete_tag("initial-selection")
    store.create_tag("initial-selection", iteration=0, method="coreset", members=[(hostile.id, None, None), *members])
    probe, problems = open_in_chromium(write_report(project, 0), tmp_path / "profile")
    assert problems == []
    assert list(probe["ids"]) == list(SECTIONS)
    assert len(probe["images"]) == 5 + 1
    assert all(img["complete"] and img["width"] > 0 for img in probe["images"])
    assert f"{XSS}.png" in probe["text"] and not probe["alerted"]


def test_screenshot_of_a_section(report_project, tmp_path):
    from PIL import Image

    screenshot = _chromium.screenshot
    page = write_report(report_project(steps=1), 1)
    whole = screenshot(page, tmp_path / "top.png", width=1000, height=700)
    batch = screenshot(page, tmp_path / "batch.png", width=1000, section="batch")
    assert Image.open(whole).size == (1000, 700)
    w, h = Image.open(batch).size
    assert 900 < w <= 1000 and 150 < h < 700
