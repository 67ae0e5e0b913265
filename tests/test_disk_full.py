"""A full disk (issue 19 item 5): one line naming the file, the disk and the space; no temporary left;
the store consistent; the same command resumes once there is room. On a real tmpfs (CI runs as root)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from alloop.cli import app
from alloop.errors import DiskFullError
from alloop.formats.staging import StagedDir, put
from alloop.project import Project
from alloop.store import Store


def _embedder(name: str, options: dict) -> list[str]:
    return ["--embedder", name, *(a for k, v in options.items() for a in ("-E", f"{k}={v}"))]


@pytest.fixture()
def tiny(tiny_config) -> list[str]:
    """The tiny config's device, embedder and trainer as `alloop init` options."""
    return ["--device", "cpu", *_embedder(tiny_config.embedder, tiny_config.embedder_options),
            *(a for k, v in tiny_config.trainer_options.items() for a in ("-T", f"{k}={v}"))]


@pytest.fixture()
def tiny_ssl(tiny_config) -> list[str]:
    """The same with the ssl embedder (it trains and torch.saves a checkpoint), as small as it goes."""
    return ["--device", "cpu", *_embedder("ssl", {"epochs": 1, "image_size": 32}),
            *(a for k, v in tiny_config.trainer_options.items() for a in ("-T", f"{k}={v}"))]


def _error_line(result) -> str:
    """The command's one error line (Rich may print warnings before it); no traceback anywhere."""
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def _leftovers(root) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".staging-"))


def _doctor_ok(project_dir) -> None:
    result = CliRunner().invoke(app, ["doctor", str(project_dir)])
    assert result.exit_code == 0 and "store and files agree" in result.output, result.output


@pytest.mark.parametrize(("size", "embedder", "fills"), [
    ("160k", "tiny", "alloop.db"),  # creating the store: alloop.toml is not written yet
    ("240k", "tiny", "alloop.db"),  # the store's transaction (registering the images)
    ("400k", "tiny", "artifacts/reports/iteration-0/index.html"),  # a write of known size, refused up front
    ("800k", "tiny_ssl", "artifacts/embedders/ssl/"),  # torch.save's bare RuntimeError, as in the issue
])
def test_init_on_a_full_disk_stops_in_one_line_and_resumes_when_there_is_room(small_disk, orchard, request, size,
                                                                               embedder, fills):
    # Issue 19: `init` died in embed with "RuntimeError: [enforce fail at inline_container.cc:672]".
    disk = small_disk(size)
    project = disk.path / "p"
    options = request.getfixturevalue(embedder)
    command = ["init", str(project), "--images", str(orchard / "images"), "--n", "6", "--quiet", *options]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    line = _error_line(result)
    assert line.startswith(f"error: disk full: cannot write {project / fills}"), line
    assert f" on {disk.path} (" in line and " free" in line
    assert line.endswith(f"free space on {disk.path} and rerun the same command (finished work is kept)")
    assert _leftovers(disk.path) == []
    if (project / "alloop.toml").exists():
        with Project.open(project) as p:
            assert p.store.integrity_check() == "ok"
            assert [(i.n, i.status) for i in p.store.iterations()] == [(0, "running")]
            assert len(p.store.images()) in (0, 24)  # registered in one transaction, or not at all
        _doctor_ok(project)
    else:  # the store was being created: not a project yet, and the rerun below finishes creating it
        assert fills == "alloop.db"

    disk.resize("128m")  # the ssl checkpoint alone is ~45 MB
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "registered 24 images" in result.output
    with Project.open(project) as p:
        assert [(i.n, i.status) for i in p.store.iterations()] == [(0, "done")]
        assert len(p.store.queued_ids()) == 6
    assert _leftovers(disk.path) == []


@pytest.mark.slow
def test_step_on_a_full_disk_stops_in_one_line_and_resumes_when_there_is_room(small_disk, orchard, tiny,
                                                                               make_labels, tmp_path):
    # Issue 19: `step` died in training with OSError [Errno 28] + the same RuntimeError and left a
    # 63 MB best.pt.tmp, which `doctor` did not mention.
    disk = small_disk("16m")
    project = disk.path / "p"
    init = CliRunner().invoke(app, ["init", str(project), "--images", str(orchard / "images"), "--n", "6",
                                    "--quiet", *tiny])
    assert init.exit_code == 0, init.output
    with Project.open(project) as p:
        queued = sorted(r.path for r in p.store.images() if r.id in p.store.queued_ids())
    labels = make_labels(orchard / "annotations.json", queued, tmp_path / "labels.json")
    command = ["step", str(project), "--labels", str(labels), "--n", "4", "--quiet"]

    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    line = _error_line(result)
    best = project / "artifacts" / "checkpoints" / "iteration-1" / "best.pt"
    assert line.startswith(f"error: disk full: cannot write {best} on {disk.path} (")
    assert " MB free, needs " in line and "rerun the same command (finished work is kept)" in line
    assert _leftovers(disk.path) == []
    with Project.open(project) as p:
        assert p.store.integrity_check() == "ok"
        assert [(i.n, i.status) for i in p.store.iterations()] == [(0, "done"), (1, "running")]
        imported = {row.path: len(ann.boxes) for row, ann, _ in p.store.annotations()}
    assert sorted(imported) == queued  # the labels are in, once
    _doctor_ok(project)

    disk.resize("400m")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    with Project.open(project) as p:
        assert [(i.n, i.status) for i in p.store.iterations()] == [(0, "done"), (1, "done")]
        assert {row.path: len(ann.boxes) for row, ann, _ in p.store.annotations()} == imported
        assert len(p.store.queued_ids()) == 4
    assert best.is_file() and _leftovers(disk.path) == []


def test_an_export_that_fills_the_disk_leaves_no_staging_folder(small_disk):
    disk = small_disk("1m")
    out = disk.path / "exports" / "iteration-1"
    (out / "coco").mkdir(parents=True)
    put(out / "coco" / "batch.json", "{}")
    with pytest.raises(DiskFullError, match=rf"^disk full: cannot write {out} on {disk.path} \("), \
            StagedDir(out) as tmp:
        put(tmp / "coco" / "batch.json", "{}")
        put(tmp / "images" / "big.bin", b"\0" * 2_000_000)
    assert sorted(p.name for p in out.iterdir()) == ["coco"]  # the previous export, untouched
    assert (out / "coco" / "batch.json").read_text() == "{}"


def test_a_store_created_on_a_full_disk_is_not_called_damaged(small_disk, tmp_path):
    disk = small_disk("64k")
    (disk.path / "filler").write_bytes(b"\0" * (64 * 1024 - 4096))
    with pytest.raises(DiskFullError, match=rf"^disk full: cannot write {disk.path / 'alloop.db'} on {disk.path} "):
        Store(disk.path / "alloop.db", create=True)
