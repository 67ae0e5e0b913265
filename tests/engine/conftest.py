"""A real Ray cluster on 127.0.0.1 for the engine tests: started once per session, stopped after.

`ray start --head --block` runs in its own session (process group); teardown sends that group
SIGTERM and then kills, by pid, any process of that session still alive, so no Ray process
outlives the tests. The workers find the test plugins (meanbox, dying) through PYTHONPATH.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = (TESTS / "data" / "plugin_pkg", TESTS / "engine" / "data" / "plugin_pkg")


@dataclass(frozen=True)
class RayCluster:
    """A running head node: its address and the folder of its logs."""

    address: str
    temp_dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                zombie = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # dead, not reaped
                if not zombie and os.getsid(int(entry.name)) == sid and int(entry.name) != os.getpid():
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError, FileNotFoundError):
                continue
    return pids


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A Ray head with 2 CPUs (two model workers) on 127.0.0.1; skipped only where Ray is not installed."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'alloop[ray]' (CI installs it)")
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="alloop-ray-"))  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([*map(str, PLUGIN_DIRS), os.environ.get("PYTHONPATH", "")])}
    log = open(temp_dir / "ray-start.log", "wb")  # noqa: SIM115 - closed in teardown
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--num-gpus=0", "--object-store-memory=200000000", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        _wait_for_head(head, address, env)
        yield RayCluster(address, temp_dir)
    finally:
        import ray

        if ray.is_initialized():  # a driver still connected when the head stops is killed with it
            ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)  # the process group this fixture started, nothing else
        deadline = time.monotonic() + 10
        while _session_pids(head.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in _session_pids(head.pid):  # only processes of the session this fixture started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if head.poll() is None:
            head.kill()
        head.wait(timeout=10)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_head(head: subprocess.Popen, address: str, env: dict[str, str]) -> None:
    ray_bin = Path(sys.executable).with_name("ray")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if head.poll() is not None:
            text = (Path(head.args[-1].split("=", 1)[1]) / "ray-start.log").read_text(errors="replace")
            raise RuntimeError(f"ray start exited with {head.returncode}: {text[-2000:]}")
        ok = subprocess.run([str(ray_bin), "status", f"--address={address}"], env=env, capture_output=True,
                            check=False, timeout=60)
        if ok.returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"the Ray head at {address} did not come up in 120 s")


@pytest.fixture()
def plugins_on_path(monkeypatch) -> None:
    """The test plugins importable in this process too (the workers get them from PYTHONPATH)."""
    for d in PLUGIN_DIRS:
        monkeypatch.syspath_prepend(str(d))
