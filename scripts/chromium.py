"""Dev tool: headless Chromium for the report: find it, drive it over the DevTools pipe, take screenshots.

The DevTools protocol runs over ``--remote-debugging-pipe`` (JSON messages ending in a NUL byte;
Chromium reads file descriptor 3 and writes 4), so no driver package is needed. The browser test
(tests/report/test_browser.py) uses :class:`DevTools` to load a report and read its console; the
docs' screenshots come from

    python scripts/chromium.py artifacts/reports/iteration-3/index.html docs/report-summary.png --height 1250
    python scripts/chromium.py artifacts/reports/iteration-3/index.html docs/report-batch.png --section batch

It is not part of the installed package: alloop itself never starts a browser.

Chromium is optional: :func:`find_chromium` returns None when it is not installed
(``scripts/install_chromium.sh`` installs Debian's package).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alloop import atomic

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Offline and quiet: no sandbox (containers run as root), no GPU, no network chatter.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
TIMEOUT_S = 90.0


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: $ALLOOP_CHROMIUM, else the first one on PATH, else None."""
    env = os.environ.get("ALLOOP_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, profile: Path, *, timeout: float = TIMEOUT_S) -> None:
        self.timeout = timeout
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Lift the child's ends above 10 so that the dup2 onto 3 and 4 cannot clobber one of them.
        child_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def wire() -> None:  # in the child, before exec
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4, child_r, child_w), preexec_fn=wire,  # noqa: PLW1509 - fd wiring only
        )
        os.close(child_r)
        os.close(child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its result (events that arrive meanwhile are kept in ``events``)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"chromium: {method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event called ``method`` (already received, or the next to arrive)."""
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read()
            self.events.append(event)
            if event.get("method") == method:
                return event

    def open(self, page: Path, *, width: int = 1280, height: int = 900, before_load: str | None = None) -> str:
        """Load ``page`` in a new tab of ``width``×``height`` and wait for its load event; return the session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        if before_load:
            self.send("Page.addScriptToEvaluateOnNewDocument", {"source": before_load}, session=session)
        self.send("Page.navigate", {"url": Path(page).resolve().as_uri()}, session=session)
        self.wait_for("Page.loadEventFired")
        return session

    def evaluate(self, expression: str, session: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        return result["result"].get("value")

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_chrome], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError(f"chromium did not answer within {self.timeout:.0f} s")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe (did it crash? try running it by hand)")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        """Close the browser and the pipes."""
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - it may be gone already
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@contextmanager
def chromium(timeout: float = TIMEOUT_S) -> Iterator[DevTools]:
    """A headless Chromium with a throwaway profile, closed on exit."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium found; run scripts/install_chromium.sh or set ALLOOP_CHROMIUM")
    with tempfile.TemporaryDirectory(prefix="alloop-chromium-") as profile:
        tools = DevTools(binary, Path(profile), timeout=timeout)
        try:
            yield tools
        finally:
            tools.close()


def screenshot(
    page: Path, out: Path, *, width: int = 1280, height: int = 2400, section: str | None = None,
    colors: int | None = 256,
) -> Path:
    """PNG of the top ``width``×``height`` of ``page``, or of the element ``#section`` only.

    ``colors`` quantizes the PNG to a palette (about 3× smaller, fine for docs); None keeps full colour.
    """
    with chromium() as tools:
        session = tools.open(page, width=width, height=900)
        if section:
            box = tools.evaluate(
                f"(() => {{ const r = document.getElementById({json.dumps(section)}).getBoundingClientRect();"
                " return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; })()",
                session,
            )
            pad = 12
            clip = {"x": max(box["x"] - pad, 0), "y": max(box["y"] - pad, 0),
                    "width": box["w"] + 2 * pad, "height": box["h"] + 2 * pad, "scale": 1}
        else:
            clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        shot = tools.send("Page.captureScreenshot",
                          {"format": "png", "clip": clip, "captureBeyondViewport": True}, session=session)
    png = base64.b64decode(shot["data"])
    if colors:
        from PIL import Image

        img = Image.open(io.BytesIO(png)).convert("RGB")
        buf = io.BytesIO()
        img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, format="PNG", optimize=True
        )
        png = buf.getvalue()
    atomic.write_bytes(Path(out), png)
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    """Command line: PAGE OUT [--width W] [--height H] [--section ID]."""
    parser = argparse.ArgumentParser(description="Screenshot an alloop report page with headless Chromium.")
    parser.add_argument("page", type=Path, help="the report's index.html")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400, help="height of the page top to capture")
    parser.add_argument("--section", help="capture only this section, e.g. summary, learning-curve, batch")
    parser.add_argument("--full-colour", action="store_true", help="keep full colour (default: 256-colour palette)")
    args = parser.parse_args(argv)
    print(screenshot(args.page, args.out, width=args.width, height=args.height, section=args.section,
                     colors=None if args.full_colour else 256))


if __name__ == "__main__":
    main()
