"""A project made by an older alloop opens, reports its status and resumes with today's code.

tests/data/projects/abe5c67/ was made by alloop at commit abe5c67 (scripts/make_compat_project.py):
12 images, init + one finished step, and a second step killed after importing its labels. Each test
works on a copy: opening a store applies the pending migrations, which writes to it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alloop import loop
from alloop.cli import app
from alloop.project import Project
from alloop.store import MIGRATIONS, Store
from alloop.summary import project_status

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "projects" / "abe5c67"
NEW_INDEXES = {"images_state", "labels_split", "tag_members_image", "tag_members_order"}  # 0002_loop_indexes


@pytest.fixture()
def old_project(tmp_path) -> Path:
    """A private copy of the old project; returns its project directory."""
    shutil.copytree(FIXTURE, tmp_path / "abe5c67")
    return tmp_path / "abe5c67" / "project"


def _truth() -> dict[str, list[tuple]]:
    """Ground-truth boxes per file name, as the stored labels must still hold them."""
    coco = json.loads((FIXTURE / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {img["id"]: img["file_name"] for img in coco["images"]}
    out: dict[str, list[tuple]] = {f: [] for f in files.values()}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        out[files[a["image_id"]]].append((names[a["category_id"]], round(x, 2), round(y, 2), round(x + w, 2),
                                          round(y + h, 2)))
    return {f: sorted(boxes) for f, boxes in out.items()}


def _state(project_dir: Path) -> dict:
    """Labels and tags as the user sees them."""
    with Project.open(project_dir, lock=False) as p:
        s = p.store
        labels = {row.path: (split, sorted((b.label, round(b.x0, 2), round(b.y0, 2), round(b.x1, 2), round(b.y1, 2))
                                           for b in ann.boxes)) for row, ann, split in s.annotations()}
        tags = {t.name: [m.path for m in s.tag_members(t.name)] for t in s.tags()}
        return {"labels": labels, "tags": tags}


def _old_rows(table: str) -> list[tuple]:
    """Rows of a table in the committed (unmigrated) fixture, read without alloop."""
    con = sqlite3.connect(f"file:{FIXTURE / 'project' / 'alloop.db'}?mode=ro", uri=True)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
    finally:
        con.close()


def test_old_project_opens_migrated_with_labels_and_tags_intact(old_project):
    state = _state(old_project)
    truth = _truth()
    assert len(state["labels"]) == 7
    for path, (split, boxes) in state["labels"].items():
        assert split in ("train", "val") and boxes == truth[path], f"labels of {path} changed"
    assert {name: len(paths) for name, paths in state["tags"].items()} == {"initial-selection": 4, "iteration-1": 3}
    con = sqlite3.connect(old_project / "alloop.db")
    try:
        applied = [r[0] for r in con.execute("SELECT name FROM schema_migrations ORDER BY name")]
        indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        for table in ("labels", "boxes", "tag_members", "stages", "embedding_index"):
            assert con.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() == _old_rows(table), table
    finally:
        con.close()
    assert applied == [m.name for m in MIGRATIONS]
    assert NEW_INDEXES <= indexes


def test_status_of_an_old_project(old_project):
    info = project_status(old_project)
    assert info["counts"]["images"] == 12 and info["counts"]["labeled"] == 7
    assert info["counts"]["queued"] == 0 and info["classes"] == ["apple"]
    assert [(it["n"], it["status"]) for it in info["iterations"]] == [(0, "done"), (1, "done"), (2, "running")]
    assert info["iterations"][2]["stages_done"] == ["import"]
    assert [(t["name"], t["size"]) for t in info["tags"]] == [("initial-selection", 4), ("iteration-1", 3)]
    result = CliRunner().invoke(app, ["status", str(old_project)])
    assert result.exit_code == 0, result.output
    assert "iteration-1" in result.output


def test_old_project_resumes_its_interrupted_step(old_project):
    before = _state(old_project)
    res = loop.step(old_project, labels=None, n=3, progress=False)
    assert res.iteration == 2 and res.resumed_stages == ("import",)
    assert res.n_selected == 3 and res.map50 is not None
    after = _state(old_project)
    assert after["labels"] == before["labels"]
    assert {k: v for k, v in after["tags"].items() if k != "iteration-2"} == before["tags"]
    picked = set(after["tags"]["iteration-2"])
    assert len(picked) == 3 and not picked & set(after["labels"])
    with Project.open(old_project, lock=False) as p:
        assert [(it.n, it.status) for it in p.store.iterations()] == [(0, "done"), (1, "done"), (2, "done")]
        assert set(p.store.stages(2)) == set(loop.STEP_STAGES)


def test_a_new_store_has_the_old_schema_plus_the_new_indexes(tmp_path):
    def schema(path: Path) -> dict[str, str]:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return {r[0]: " ".join(r[1].split()) for r in con.execute(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'schema_migrations'")}
        finally:
            con.close()

    Store(tmp_path / "new.db", create=True).close()
    old, new = schema(FIXTURE / "project" / "alloop.db"), schema(tmp_path / "new.db")
    assert {k: new.get(k) for k in old} == old
    assert set(new) - set(old) == NEW_INDEXES | {"score_arrays"}  # 0003_score_arrays
