"""Never lose a label: SIGKILL a real `alloop step` mid-stage, rerun, get what an uninterrupted run gets."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alloop import loop
from alloop.project import Project

pytestmark = pytest.mark.slow

CRASH_TRAINER = {"epochs": 3, "max_steps": None, "early_stopping_patience": None}


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    code = "import torch; torch.set_num_threads(1); from alloop.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _state(project_dir: Path) -> dict:
    """Labels and tags as the user sees them: what must survive any crash."""
    with Project.open(project_dir, lock=False) as p:
        s = p.store
        labels = {row.path: (split, sorted((b.label, round(b.x0, 2), round(b.y0, 2), round(b.x1, 2), round(b.y1, 2))
                                           for b in ann.boxes)) for row, ann, split in s.annotations()}
        tags = {t.name: [m.path for m in s.tag_members(t.name)] for t in s.tags()}
        return {"labels": labels, "tags": tags, "iterations": [(i.n, i.status) for i in s.iterations()]}


@pytest.fixture()
def initialised(tmp_path, orchard, tiny_config, make_labels):
    cfg = tiny_config.with_changes(trainer_options={**tiny_config.trainer_options, **CRASH_TRAINER})
    loop.init(tmp_path / "base", orchard / "images", n=6, config=cfg, progress=False)
    with Project.open(tmp_path / "base", lock=False) as p:
        queued = sorted(r.path for r in p.store.images() if r.id in p.store.queued_ids())
    labels = make_labels(orchard / "annotations.json", queued, tmp_path / "labels.json")
    reference = tmp_path / "reference"
    shutil.copytree(tmp_path / "base", reference)
    loop.step(reference, labels=labels, n=4, progress=False)
    return tmp_path / "base", labels, _state(reference)


def test_sigkill_during_training_then_rerun(initialised, tmp_path):
    base, labels, expected = initialised
    proj = tmp_path / "crash-train"
    shutil.copytree(base, proj)
    proc = _cli("step", str(proj), "--labels", str(labels), "--n", "4", "--quiet")
    last = proj / "artifacts" / "checkpoints" / "iteration-1" / "last.pt"
    deadline = time.time() + 240
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"step ended before it could be killed:\n{proc.stdout.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    mid = _state(proj)
    assert mid["labels"] == expected["labels"], "labels imported before the crash must be intact"
    assert mid["iterations"][-1] == (1, "running")
    rerun = _cli("step", str(proj), "--labels", str(labels), "--n", "4", "--quiet")
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert _state(proj) == expected


def test_sigkill_during_selection_then_rerun(initialised, tmp_path):
    base, labels, expected = initialised
    proj = tmp_path / "crash-select"
    shutil.copytree(base, proj)
    proc = _cli("step", str(proj), "--labels", str(labels), "--n", "4", "--quiet",
                env={loop.FAULT_ENV: "kill:select"})
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    with Project.open(proj, lock=False) as p:
        assert "score" in p.store.stages(1) and "select" not in p.store.stages(1)
        assert p.store.tag("iteration-1") is None, "a half-written selection must not survive"
    rerun = _cli("step", str(proj), "--labels", str(labels), "--n", "4", "--quiet")
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert _state(proj) == expected


def test_sigkill_during_import_leaves_nothing_half_written(initialised, tmp_path):
    base, labels, expected = initialised
    proj = tmp_path / "crash-import"
    shutil.copytree(base, proj)
    before = _state(proj)
    proc = _cli("step", str(proj), "--labels", str(labels), "--n", "4", "--quiet",
                env={loop.FAULT_ENV: "kill:import"})
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert _state(proj) == before
    rerun = _cli("step", str(proj), "--labels", str(labels), "--n", "4", "--quiet")
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert _state(proj) == expected


def test_concurrent_step_is_refused(initialised, tmp_path):
    base, labels, _ = initialised
    proj = tmp_path / "busy"
    shutil.copytree(base, proj)
    first = _cli("step", str(proj), "--labels", str(labels), "--n", "4", "--quiet")
    lock = proj / ".alloop.lock"
    deadline = time.time() + 60
    while time.time() < deadline and not (lock.exists() and lock.read_text().startswith("pid")):
        time.sleep(0.05)
    second = _cli("step", str(proj), "--labels", str(labels), "--n", "4", "--quiet")
    out, _ = second.communicate(timeout=120)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert second.returncode == 1
    assert f"locked by pid {first.pid}" in out
