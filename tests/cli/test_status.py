"""`alloop status` tells running from interrupted, and gives the hint that resumes what was cut off (issue 19)."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from typer.testing import CliRunner

from alloop.cli import app
from alloop.project import Project, ProjectConfig


def _project(root: Path, *, iterations: dict[int, str]) -> Path:
    """A project whose iterations have these statuses ("done" or "running" = not finished)."""
    with Project.create(root, ProjectConfig(image_root="imgs")) as p:
        for n, status in iterations.items():
            p.store.start_iteration(n, method="random", score_spec=None, config={"n": 7})
            if status == "done":
                p.store.update_iteration(n, status="done")
    return root


def _status(root: Path) -> str:
    result = CliRunner().invoke(app, ["status", str(root)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _hold(root, started, release):
    p = Project.open(root)
    started.set()
    release.wait(20)
    p.close()


def _with_lock_held(root: Path, fn):
    ctx = mp.get_context("fork")
    started, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(root, started, release))
    proc.start()
    try:
        assert started.wait(20)
        return fn(), proc.pid
    finally:
        release.set()
        proc.join(20)


def test_a_step_holding_the_lock_is_running_not_interrupted(tmp_path):
    root = _project(tmp_path / "p", iterations={0: "done", 1: "running"})
    out, pid = _with_lock_held(root, lambda: _status(root))
    assert f"* iteration 1 is running (pid {pid} on " in out and "wait for it to finish" in out
    assert "interrupted" not in out and "rerun" not in out
    # Once the holder is gone, the same iteration is interrupted and the hint resumes it.
    out = _status(root)
    assert f"* iteration 1 was interrupted; rerun `alloop step {root}` to resume it" in out.replace("\n", "")


def test_an_interrupted_init_gets_the_init_hint(tmp_path):
    root = _project(tmp_path / "p", iterations={0: "running"})
    out = _status(root).replace("\n", "")
    assert f"* init was interrupted; rerun `alloop init {root} --n 7` to resume it" in out
    assert "alloop step" not in out


def test_an_init_that_is_still_running(tmp_path):
    root = _project(tmp_path / "p", iterations={0: "running"})
    out, pid = _with_lock_held(root, lambda: _status(root))
    assert f"* init is running (pid {pid} on " in out and "alloop init" not in out


def test_init_cut_off_before_its_first_stage(tmp_path):
    root = _project(tmp_path / "p", iterations={})
    assert f"* init was interrupted; rerun `alloop init {root}` to resume it" in _status(root).replace("\n", "")


def test_a_finished_project_has_no_hint_and_a_busy_one_says_so(tmp_path):
    root = _project(tmp_path / "p", iterations={0: "done", 1: "done"})
    assert "* " not in _status(root)
    out, pid = _with_lock_held(root, lambda: _status(root))
    assert f"project is busy: locked by pid {pid} on " in out


def test_json_carries_the_lock_holder_and_the_hint(tmp_path):
    root = _project(tmp_path / "p", iterations={0: "done", 1: "running"})
    info = json.loads(CliRunner().invoke(app, ["status", str(root), "--json"]).output)
    assert info["locked_by"] is None and info["next"].startswith("iteration 1 was interrupted")
    out, pid = _with_lock_held(root, lambda: CliRunner().invoke(app, ["status", str(root), "--json"]).output)
    info = json.loads(out)
    assert info["locked_by"].startswith(f"pid {pid} on ") and info["next"].startswith("iteration 1 is running")
