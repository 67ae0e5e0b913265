"""Pool changes between rounds: added, deleted and changed images are found, labels are never dropped."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from alloop.boxes import Box, ImageAnnotation
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
