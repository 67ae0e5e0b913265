"""Pool changes between rounds: added, deleted and changed images are found, labels are never dropped."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from PIL import Image
from typer.testing import CliRunner

from alloop.boxes import Box, ImageAnnotation
from alloop.cli import app
from alloop.errors import ImageError
from alloop.pool import check, register
from alloop.project import Project, ProjectConfig


@pytest.fixture()
def project(tmp_path):
    root = tmp_path / "imgs"
    for i in range(4):
        (root / "a").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (i * 50, 100, 20)).save(root / "a" / f"{i}.png")
    p = Project.create(tmp_path / "proj", ProjectConfig(image_root=str(root)))
    register(p, progress=False)
    p.store.add_classes(["apple"])
    yield p
    p.close()


def test_register_is_incremental(project):
    Image.new("RGB", (40, 30)).save(project.image_root / "a" / "new.png")
    (project.image_root / "a" / "bad.png").write_bytes(b"nope")
    r = register(project, progress=False)
    assert (r.added, r.known) == (1, 4)
    assert r.bad == (("a/bad.png", r.bad[0][1]),)
    assert len(project.store.images()) == 5


def test_register_refuses_a_folder_outside_the_root(project, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "elsewhere" / "x.png")
    with pytest.raises(ImageError, match="outside the image root"):
        register(project, root=tmp_path / "elsewhere", progress=False)


def test_clean_project_is_ok(project):
    r = check(project)
    assert r.ok and r.checked_images == 4


def test_missing_labeled_image_keeps_its_labels(project):
    row = project.store.image_by_path()["a/0.png"]
    ann = ImageAnnotation("a/0.png", 40, 30, (Box(1, 1, 10, 10, "apple"),))
    project.store.write_labels([(row.id, ann, "train")], iteration=1, source="x")
    moved = project.image_root / "a" / "0.png"
    shutil.move(moved, project.root / "aside.png")
    r = check(project, repair=True)
    assert [(f.kind, f.subject) for f in r.findings] == [("missing", "a/0.png")]
    assert "labels are kept" in r.findings[0].fix
    assert project.store.image_by_path()["a/0.png"].state == "missing"
    assert project.store.labeled_ids() == {row.id}
    shutil.move(project.root / "aside.png", moved)  # it comes back
    r = check(project, repair=True)
    assert r.ok and project.store.image_by_path()["a/0.png"].state == "ok"


def test_changed_images_are_reported(project):
    labeled = project.store.image_by_path()["a/1.png"]
    project.store.write_labels([(labeled.id, ImageAnnotation("a/1.png", 40, 30, ()), "train")], iteration=1, source="x")
    Image.new("RGB", (40, 30), (1, 2, 3)).save(project.image_root / "a" / "1.png")
    Image.new("RGB", (40, 30), (9, 9, 9)).save(project.image_root / "a" / "2.png")
    r = check(project, repair=True)
    kinds = {f.subject: f.detail for f in r.findings}
    assert "labeled image's content changed" in kinds["a/1.png"]
    assert kinds["a/2.png"] == "image content changed"
    rows = project.store.image_by_path()
    assert rows["a/1.png"].state == "changed" and rows["a/2.png"].state == "ok"
    assert project.store.labeled_ids() == {labeled.id}


def test_moved_image_root_is_named(project):
    shutil.move(project.image_root, project.root.parent / "moved")
    r = check(project)
    assert r.findings[0].kind == "image_root" and "alloop.toml" in r.findings[0].fix


def test_orphaned_artifacts_are_listed(project):
    (project.checkpoint_dir(7)).mkdir(parents=True)
    d = project.embeddings_dir("k")
    d.mkdir(parents=True)
    (d / "shard-00003.npy").write_bytes(b"")
    subjects = {f.subject for f in check(project).findings if f.kind == "orphan"}
    assert subjects == {"artifacts/checkpoints/iteration-7", "artifacts/embeddings/k/shard-00003.npy"}


def test_temporary_files_left_by_interrupted_writes_are_listed_and_repaired(project, tmp_path):
    # Issue 19: a full disk left a 63 MB best.pt.tmp and `doctor` said all was well.
    old = time.time() - 3600
    ckpt = project.checkpoint_dir(0)
    ckpt.mkdir(parents=True)
    left = {
        ckpt / "best.pt.tmp": b"\0" * 63_000,
        ckpt / ".last.pt.k3j9x0qa.tmp": b"\0" * 10,
        project.backups_dir() / "alloop-2026.db.tmp": b"",
        project.root / ".alloop.toml.abcdefgh.tmp": b"x",
    }
    for path, data in left.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    staging = project.export_dir("init") / ".staging-0123abcd"
    (staging / "images").mkdir(parents=True)
    for path in (*left, staging):
        os.utime(path, (old, old))
    fresh = ckpt / ".best.pt.zz9x8w7v.tmp"  # a write in progress: listed, never deleted
    fresh.write_bytes(b"")
    project.store.start_iteration(0, method="random", score_spec=None, config={})
    found = {f.subject: f for f in check(project).findings if f.kind == "temporary"}
    assert set(found) == {project.relpath(p) for p in (*left, staging, fresh)}
    assert found["artifacts/checkpoints/iteration-0/best.pt.tmp"].detail == \
        "temporary file (0.1 MB) left by an interrupted write"
    assert found["artifacts/checkpoints/iteration-0/best.pt.tmp"].fix == "`alloop doctor --repair` deletes it"
    assert found[project.relpath(fresh)].detail.startswith("temporary file (0.0 MB) written ")
    assert found[project.relpath(staging)].detail == "staging folder left by an interrupted write"
    project.close()
    result = CliRunner().invoke(app, ["doctor", str(project.root), "--repair"])
    assert result.exit_code == 0, result.output
    out = _flat(result)
    assert "temporary artifacts/checkpoints/iteration-0/best.pt.tmp: temporary file (0.1 MB) left by an " \
           "interrupted write → `alloop doctor --repair` deletes it" in out
    assert "repaired deleted artifacts/checkpoints/iteration-0/best.pt.tmp" in out
    assert not any(path.exists() for path in (*left, staging)) and fresh.exists()
    os.utime(fresh, (old, old))
    assert CliRunner().invoke(app, ["doctor", str(project.root), "--repair"]).exit_code == 0
    assert not fresh.exists()
    assert "store and files agree" in CliRunner().invoke(app, ["doctor", str(project.root)]).output


# --- issue 19: bad links and duplicates never stop registration ------------------------------------


def test_identical_images_under_two_names_get_a_notice(project, caplog):
    root = project.image_root
    shutil.copy(root / "a" / "1.png", root / "a" / "copy_of_1.png")
    shutil.copy(root / "a" / "2.png", root / "b.png")
    shutil.copy(root / "a" / "2.png", root / "c.png")
    with caplog.at_level("WARNING", logger="alloop"):
        reg = register(project, progress=False)
    assert reg.added == 3  # both names stay registered: the notice is for the user to decide
    assert reg.duplicates == (("a/copy_of_1.png", "a/1.png"), ("b.png", "a/2.png"), ("c.png", "a/2.png"))
    notices = [r.getMessage() for r in caplog.records]
    assert "a/copy_of_1.png has the same content as a/1.png; both are registered (delete one if it is a copy)" in notices
    assert len(notices) == 3
    for i in range(12):
        shutil.copy(root / "a" / "3.png", root / f"d{i:02d}.png")
    caplog.clear()
    with caplog.at_level("WARNING", logger="alloop"):
        assert len(register(project, progress=False).duplicates) == 12
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 11 and notices[-1] == "and 2 more new images have the same content as another image"


def _flat(result) -> str:
    """The command's output with Rich's wrapping at the terminal width undone."""
    return " ".join(result.output.split())


def test_add_lists_a_link_out_of_the_root_and_registers_the_rest(project, tmp_path):
    # Issue 19: a symlink pointing outside the image root stopped `alloop add` with nothing registered.
    root = project.image_root
    Image.new("RGB", (40, 30), (1, 2, 3)).save(tmp_path / "elsewhere.png")
    (root / "a" / "out.png").symlink_to(tmp_path / "elsewhere.png")
    (root / "a" / "gone.png").symlink_to(tmp_path / "deleted.png")
    Image.new("RGB", (40, 30), (9, 9, 9)).save(root / "a" / "new.png")
    project.close()
    result = CliRunner().invoke(app, ["add", str(tmp_path / "proj"), "--quiet"])
    assert result.exit_code == 0, result.output
    out = _flat(result)
    assert "✓ 1 new images registered (4 already known)" in out
    assert f"skipped a/out.png: a link to {tmp_path / 'elsewhere.png'}, outside the image root {root}; " \
           "move or copy the file under the image root" in out
    assert f"skipped a/gone.png: broken link (to {tmp_path / 'deleted.png'}); restore its target or remove the link" \
           in out
    with Project.open(tmp_path / "proj") as p:
        assert sorted(r.path for r in p.store.images()) == ["a/0.png", "a/1.png", "a/2.png", "a/3.png", "a/new.png"]
        assert [path for path, _ in p.store.bad_images()] == ["a/gone.png", "a/out.png"]


def test_init_lists_a_link_out_of_the_root_and_registers_the_rest(tmp_path):
    # Issue 19: the same link stopped `alloop init`; now it is listed with the other unreadable images.
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(6):
        Image.new("RGB", (48, 32), (i * 40, 90, 200 - i * 30)).save(root / f"{i}.png")
    Image.new("RGB", (48, 32)).save(tmp_path / "outside.png")
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    Image.new("RGB", (48, 32)).save(root / "anim.gif")
    result = CliRunner().invoke(app, [
        "init", str(tmp_path / "p"), "--images", str(root), "--n", "2", "--device", "cpu",
        "--embedder", "backbone", "-E", "arch=mobilenet_v3_small", "-E", "weights=none", "-E", "image_size=32",
    ])
    assert result.exit_code == 0, result.output
    assert "✓ registered 6 images (2 unreadable skipped, see `alloop status`)" in _flat(result)
    status = _flat(CliRunner().invoke(app, ["status", str(tmp_path / "p")]))
    assert "link.png: a link to" in status and "anim.gif: GIF (.gif) is not a format" in status


def test_init_on_a_folder_with_no_image_alloop_takes_changes_nothing(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("RGB", (48, 32)).save(root / "anim.gif")
    result = CliRunner().invoke(app, ["init", str(tmp_path / "p"), "--images", str(root)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {root}: no images found")
    assert "skipped 1 (first: anim.gif: GIF (.gif) is not a format alloop takes" in lines[0]
    assert not (tmp_path / "p").exists()


def test_a_skipped_file_fixed_or_removed_leaves_the_list(project, tmp_path):
    root = project.image_root
    Image.new("RGB", (40, 30)).save(root / "a" / "anim.gif")
    (root / "a" / "late.png").symlink_to(tmp_path / "not_yet.png")
    Image.new("RGB", (40, 30)).save(root / "b.gif")
    register(project, progress=False)
    assert [p for p, _ in project.store.bad_images()] == ["a/anim.gif", "a/late.png", "b.gif"]
    (root / "a" / "anim.gif").unlink()
    Image.new("RGB", (40, 30), (5, 6, 7)).save(tmp_path / "not_yet.png")
    (root / "b.gif").unlink()
    reg = register(project, root=root / "a", progress=False)  # only a/ is scanned: b.gif stays listed
    assert reg.added == 0 and [p for p, _ in project.store.bad_images()] == ["a/late.png", "b.gif"]
    (root / "a" / "late.png").unlink()
    (tmp_path / "not_yet.png").rename(root / "a" / "late.png")
    assert register(project, progress=False).added == 1
    assert project.store.bad_images() == []
