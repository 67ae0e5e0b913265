"""A real Label Studio server for the tests of this folder: started once per session, stopped after.

The server runs from its own venv (``scripts/labelstudio_server.sh``, label-studio 1.23) on a free
127.0.0.1 port with its own data dir; its user and API token are made up here and created at
startup. Its local-files document root is pytest's base temp dir, so every test's images can be
served. Without the venv the tests skip and say how to install it; on CI (CI=true) they install
it and must run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from alloop import loop
from alloop.project import ProjectConfig

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "labelstudio_server.sh"
VENV = REPO / ".venv-labelstudio"
START_TIMEOUT_S = 600  # the first start migrates a fresh database: minutes on 2 busy cores


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    document_root: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _installed() -> bool:
    return (VENV / ".installed").exists() and (VENV / "bin" / "label-studio").exists()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Label Studio is required on CI: {reason}")
    pytest.skip(reason)


def _parent_death_signal():
    """Linux's prctl(PR_SET_PDEATHSIG, SIGTERM), looked up before any fork; None elsewhere."""
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> Server:
    """A running Label Studio 1.23 (URL, API token, document root)."""
    if not _installed():
        if os.environ.get("CI") == "true" or os.environ.get("ALLOOP_INSTALL_LABELSTUDIO") == "1":
            done = subprocess.run(["bash", str(SCRIPT), "install"], check=False, capture_output=True, text=True)
            if done.returncode != 0:
                _unavailable(f"`bash scripts/labelstudio_server.sh install` failed: {done.stderr.strip()[-500:]}")
        else:
            _unavailable("Label Studio is not installed: run `bash scripts/labelstudio_server.sh install` "
                         "(or set ALLOOP_INSTALL_LABELSTUDIO=1)")
    root = tmp_path_factory.getbasetemp()
    data = tmp_path_factory.mktemp("label-studio-data")
    log = data / "server.log"
    token = secrets.token_hex(20)
    port = _free_port()
    env = {**os.environ, "LABEL_STUDIO_USERNAME": "alloop-tests@example.com",
           "LABEL_STUDIO_PASSWORD": secrets.token_urlsafe(16), "LABEL_STUDIO_USER_TOKEN": token}
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", str(SCRIPT), "start", str(data), str(port), str(root)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True,
                                # the server dies with the test process, even a killed one; the hook only
                                # calls a C function resolved before the fork, so threads cannot deadlock it
                                preexec_fn=_parent_death_signal())  # noqa: PLW1509
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _up(url):
            if proc.poll() is not None:
                _unavailable(f"Label Studio exited with {proc.returncode}: {log.read_text(errors='replace')[-800:]}")
            if time.monotonic() > deadline:
                _unavailable(f"Label Studio did not answer on {url} within {START_TIMEOUT_S} s; see {log}")
            time.sleep(1)
        yield Server(url, token, root, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def api(server: Server, method: str, path: str, body=None):
    """A raw API call, as a labeler's browser would make it (for playing the annotator)."""
    request = urllib.request.Request(
        server.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Token {server.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        payload = r.read()
    return json.loads(payload) if payload else None


@pytest.fixture(scope="session")
def stepped(tmp_path_factory, orchard_master) -> Path:
    """A project after one step (so there is a model to serve), its next batch waiting.

    Session-scoped: one step (tens of seconds) shared by the tests that only read the project.
    """
    from alloop.oracle import GroundTruthOracle

    base = tmp_path_factory.mktemp("stepped")
    shutil.copytree(orchard_master, base / "orchard")
    images = base / "orchard" / "images"
    config = ProjectConfig(
        image_root=str(images), device="cpu", embedder="backbone",
        embedder_options={"arch": "mobilenet_v3_small", "weights": "none", "image_size": 32},
        trainer="torchvision",
        trainer_options={"model": "fasterrcnn_mobilenet_v3_large_320_fpn", "weights": "none", "epochs": 1,
                         "max_steps": 2, "batch_size": 2, "min_size": 96, "max_size": 128},
    )
    project = base / "p"
    first = loop.init(project, images, n=6, classes=["apple"], config=config, progress=False)
    names = [i["file_name"] for i in json.loads(first.exports[0].read_text())["images"]]
    labels = GroundTruthOracle(base / "orchard" / "annotations.json").label(names, base / "labels.json")
    loop.step(project, labels=labels, n=4, progress=False)
    return project
