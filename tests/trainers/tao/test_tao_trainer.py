"""The TAO trainer without a container: train and predict through a fake launcher
(tests/data/tao/fake_tao.py) that checks what the real tools would reject, and a whole alloop loop."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import TrainerError
from alloop.trainers.base import Example
from alloop.trainers.tao import (
    TaoConfig,
    TaoTrainer,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "tao"
FAKE = DATA / "fake_tao.py"
CLASSES = ("Apple", "Pear")
W, H = 96, 64
RED_BOX = (10, 12, 30, 40)  # x0 y0 x1 y1 of the red square (pixel edges)
GREEN_BOX = (50, 5, 80, 25)


def _cfg(**kw) -> TaoConfig:
    base = {"launcher": [sys.executable, str(FAKE)], "epochs": 3, "checkpoint_interval": 2, "output_width": 96,
                "output_height": 64}
    base.update(kw)
    return TaoConfig(**base)


def _draw(path: Path, *boxes: tuple[tuple[int, int, int, int], tuple[int, int, int]]) -> None:
    img = np.zeros((H, W, 3), np.uint8)
    for (x0, y0, x1, y1), colour in boxes:
        img[y0:y1, x0:x1] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


@pytest.fixture()
def colour_set(tmp_path):
    """Three images: black (0 objects), a red square (1), red + green squares (2), with their labels."""
    root = tmp_path / "images"
    specs = {
        "row_1/black.png": [],
        "row_1/red.png": [(RED_BOX, (255, 0, 0), "Apple")],
        "row_2/both.png": [(RED_BOX, (255, 0, 0), "Apple"), (GREEN_BOX, (0, 255, 0), "Pear")],
    }
    examples = []
    for name, objs in specs.items():
        _draw(root / name, *[(b, c) for b, c, _ in objs])
        boxes = tuple(Box(*map(float, b), label) for b, _, label in objs)
        examples.append(Example(root / name, ImageAnnotation(name, W, H, boxes)))
    return root, examples


def _fake_docker(tmp_path: Path) -> Path:
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir(exist_ok=True)
    docker.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    return docker


def _record(tmp_path, monkeypatch) -> Path:
    rec = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_TAO_RECORD", str(rec))
    return rec


def _calls(rec: Path) -> list[dict]:
    return [json.loads(line) for line in rec.read_text().splitlines()] if rec.exists() else []


# -- train and predict through the fake launcher ---------------------------------------------------

def test_train_and_predict_through_the_fake_launcher(tmp_path, colour_set, monkeypatch):
    _root, examples = colour_set
    rec = _record(tmp_path, monkeypatch)
    trainer = TaoTrainer(_cfg(), CLASSES)
    out = tmp_path / "ckpt" / "iteration-1"
    result = trainer.train(examples[1:], examples[:1], out, seed=3, progress=False)

    assert result.checkpoint == out / "results" / "weights" / "yolov4_resnet18_epoch_003.hdf5"
    assert result.epochs == 3 and result.steps == 3  # 2 images, batch 8 -> 1 step an epoch
    assert [int(r["epoch"]) for r in result.history] == [1, 2, 3]
    sidecar = json.loads(Path(str(result.checkpoint) + ".alloop.json").read_text())
    assert sidecar["classes"] == list(CLASSES) and sidecar["kitti_names"] == ["apple", "pear"]
    labels = sorted(p.name for p in (out / "data" / "train" / "labels").iterdir())
    assert labels == ["row_1__red.txt", "row_2__both.txt"]  # sub-folders flattened, TAO reads flat folders
    assert (out / "data" / "val" / "labels" / "row_1__black.txt").read_text() == ""
    spec = (out / "specs" / "train.txt").read_text()
    assert "random_seed: 3" in spec and "num_epochs: 3" in spec and "checkpoint_interval: 2" in spec
    (call,) = _calls(rec)
    assert call["argv"][:5] == ["model", "yolo_v4", "train", "-e", str(out / "specs" / "train.txt")]
    assert call["mounts"] == [str(out)]
    mounts = json.loads((out / "tao_mounts.json").read_text())
    assert mounts["Mounts"] == [{"source": str(out), "destination": str(out)}]
    assert (out / "logs" / "train.log").read_text().count("Epoch 3/3") == 1

    images = [e.path for e in examples]
    dets = trainer.predict(result.checkpoint, images, progress=False)
    assert [len(d) for d in dets] == [0, 1, 2]
    assert all(d.probs.shape == (len(d), 3) for d in dets)
    assert np.allclose(dets[1].boxes, [RED_BOX]) and dets[1].labels.tolist() == [0]
    assert np.allclose(dets[2].boxes, [RED_BOX, GREEN_BOX]) and dets[2].labels.tolist() == [0, 1]
    # TAO's per-class lines of one box (red: apple 0.9 + pear 0.08) are one box with both classes.
    assert np.allclose(dets[1].probs, [[0.02, 0.9, 0.08]]) and np.allclose(dets[1].objectness, [0.98])
    assert np.allclose(dets[2].scores, [0.9, 0.6]) and np.allclose(dets[2].probs[1], [0.25, 0.15, 0.6])
    infer = _calls(rec)[-1]["argv"]
    assert infer[:3] == ["model", "yolo_v4", "inference"]
    assert infer[infer.index("-t") + 1] == "0.05" and infer[infer.index("-m") + 1] == str(result.checkpoint)

    flipped = trainer.predict(result.checkpoint, images, hflip=True, progress=False)
    assert [len(d) for d in flipped] == [0, 1, 2]
    assert np.allclose(flipped[2].boxes, dets[2].boxes)  # mirrored image, boxes mapped back

    # A score threshold above a detection's confidence drops it (TAO's -t and alloop's filter).
    strict = trainer.predict(result.checkpoint, images, score_threshold=0.7, progress=False)
    assert [len(d) for d in strict] == [0, 1, 1]


def test_resume_continues_the_epoch_count(tmp_path, colour_set, monkeypatch):
    _, examples = colour_set
    rec = _record(tmp_path, monkeypatch)
    first = TaoTrainer(_cfg(), CLASSES).train(examples, [], tmp_path / "it1", progress=False)
    second = TaoTrainer(_cfg(), CLASSES).train(examples, [], tmp_path / "it2", resume_from=first.checkpoint,
                                               progress=False)
    assert second.checkpoint.name == "yolov4_resnet18_epoch_006.hdf5"
    assert second.epochs == 3 and second.extra["start_epoch"] == 3
    spec = (tmp_path / "it2" / "specs" / "train.txt").read_text()
    assert f'resume_model_path: "{first.checkpoint}"' in spec and "pretrain_model_path" not in spec
    assert "num_epochs: 6" in spec
    mounted = sorted([str(tmp_path / "it1" / "results" / "weights"), str(tmp_path / "it2")])
    assert _calls(rec)[-1]["mounts"] == mounted


def test_pretrain_mode_and_changed_classes_start_from_weights(tmp_path, colour_set, monkeypatch):
    _, examples = colour_set
    pretrained = tmp_path / "ngc" / "resnet_18.hdf5"
    pretrained.parent.mkdir()
    pretrained.write_text("weights")
    first = TaoTrainer(_cfg(pretrained_model=str(pretrained)), CLASSES).train(examples, [], tmp_path / "it1",
                                                                             progress=False)
    assert f'pretrain_model_path: "{pretrained}"' in (tmp_path / "it1" / "specs" / "train.txt").read_text()

    TaoTrainer(_cfg(resume_mode="pretrain"), CLASSES).train(
        examples, [], tmp_path / "it2", resume_from=first.checkpoint, progress=False)
    spec = (tmp_path / "it2" / "specs" / "train.txt").read_text()
    assert f'pretrain_model_path: "{first.checkpoint}"' in spec and "num_epochs: 3" in spec

    more = (*CLASSES, "Plum")  # a new class: the old head does not fit, start from the pretrained file
    TaoTrainer(_cfg(pretrained_model=str(pretrained)), more).train(
        examples, [], tmp_path / "it3", resume_from=first.checkpoint, progress=False)
    spec = (tmp_path / "it3" / "specs" / "train.txt").read_text()
    assert f'pretrain_model_path: "{pretrained}"' in spec and "resume_model_path" not in spec


def test_best_checkpoint_by_tao_validation_map(tmp_path, colour_set):
    _, examples = colour_set
    result = TaoTrainer(_cfg(epochs=6, checkpoint="best"), CLASSES).train(examples, [], tmp_path / "run",
                                                                          progress=False)
    saved = {2, 4, 6}
    scored = {int(r["epoch"]): r["mAP"] for r in result.history if "mAP" in r}
    assert set(scored) == {1, 2, 3, 4, 5, 6}  # TAO validates label folders every epoch
    best = max(saved, key=lambda e: scored[e])  # the best among the epochs TAO saved a model for
    assert best != max(scored, key=scored.get)
    assert result.checkpoint.name == f"yolov4_resnet18_epoch_{best:03d}.hdf5"
    assert result.extra["tao_val_map50"] == scored[best]


def test_docker_runner_end_to_end(tmp_path, colour_set, monkeypatch):
    _, examples = colour_set
    rec = _record(tmp_path, monkeypatch)
    trainer = TaoTrainer(_cfg(runner="docker", docker=str(_fake_docker(tmp_path))), CLASSES)
    result = trainer.train(examples, [], tmp_path / "run", progress=False)
    dets = trainer.predict(result.checkpoint, [e.path for e in examples], progress=False)
    assert [len(d) for d in dets] == [0, 1, 2]
    train_call, _infer_call = _calls(rec)
    assert train_call["mode"] == "docker" and train_call["argv"][:3] == ["run", "--rm", "--gpus"]
    assert train_call["mounts"] == [str(tmp_path / "run")]
    assert not (tmp_path / "run" / "tao_mounts.json").exists()


def test_your_own_mounts_file_is_used_by_the_launcher(tmp_path, colour_set, monkeypatch):
    _, examples = colour_set
    rec = _record(tmp_path, monkeypatch)
    mine = tmp_path / "my_mounts.json"
    mine.write_text(json.dumps({"Mounts": [{"source": str(tmp_path), "destination": str(tmp_path)}],
                                "DockerOptions": {"tty": False}}))
    trainer = TaoTrainer(_cfg(mounts_file=str(mine)), CLASSES)
    result = trainer.train(examples, [], tmp_path / "run", progress=False)
    assert result.checkpoint.is_file() and not (tmp_path / "run" / "tao_mounts.json").exists()
    assert _calls(rec)[0]["mounts"] == [str(tmp_path)]


def test_a_failing_task_through_the_launcher_exits_0_and_is_still_caught(tmp_path, colour_set, monkeypatch):
    _, examples = colour_set
    monkeypatch.setenv("FAKE_TAO_FAIL", "train")
    with pytest.raises(TrainerError) as err:
        TaoTrainer(_cfg(), CLASSES).train(examples, [], tmp_path / "run", progress=False)
    msg = str(err.value)
    assert "TAO train failed (Execution status: FAIL)" in msg and "OOM when allocating tensor" in msg
    assert f"{FAKE} model yolo_v4 train -e" in msg and str(tmp_path / "run" / "logs" / "train.log") in msg
    assert "\n" not in msg  # one line, as every alloop error


def test_a_failing_task_through_docker_raises_with_its_exit_code(tmp_path, colour_set, monkeypatch):
    _, examples = colour_set
    monkeypatch.setenv("FAKE_TAO_FAIL", "train")
    with pytest.raises(TrainerError, match=r"TAO train failed \(exit code 255\).*OOM when allocating"):
        TaoTrainer(_cfg(runner="docker", docker=str(_fake_docker(tmp_path))), CLASSES).train(
            examples, [], tmp_path / "run", progress=False)


def test_exit_0_without_a_model_is_an_error(tmp_path, colour_set, monkeypatch):
    _, examples = colour_set
    monkeypatch.setenv("FAKE_TAO_SKIP", "1")
    with pytest.raises(TrainerError, match="wrote no model in .*weights"):
        TaoTrainer(_cfg(), CLASSES).train(examples, [], tmp_path / "run", progress=False)


def test_inference_without_label_files_is_an_error(tmp_path, colour_set, monkeypatch):
    _, examples = colour_set
    trainer = TaoTrainer(_cfg(), CLASSES)
    result = trainer.train(examples, [], tmp_path / "run", progress=False)
    monkeypatch.setenv("FAKE_TAO_SKIP", "1")
    with pytest.raises(TrainerError, match="wrote no labels for .*black.png"):
        trainer.predict(result.checkpoint, [examples[0].path], progress=False)


@pytest.mark.parametrize("options, message", [
    ({"launcher": "/nonexistent/bin/tao"},
     (r"TAO launcher '/nonexistent/bin/tao' not found; install the TAO launcher with `pip install nvidia-tao`"
     r".*runner=docker")),
    ({"launcher": "surely-no-such-tao-launcher"}, "pip install nvidia-tao"),
    ({"runner": "docker", "docker": "surely-no-such-docker"}, "needs Docker.*runner=launcher"),
])
def test_a_missing_executable_says_how_to_install(tmp_path, colour_set, options, message):
    _, examples = colour_set
    with pytest.raises(TrainerError, match=message):
        TaoTrainer(TaoConfig(**options), CLASSES).train(examples, [], tmp_path / "run", progress=False)


def test_an_identical_rerun_reuses_the_finished_model(tmp_path, colour_set, monkeypatch):
    _, examples = colour_set
    rec = _record(tmp_path, monkeypatch)
    first = TaoTrainer(_cfg(), CLASSES).train(examples, [], tmp_path / "run", seed=1, progress=False)
    again = TaoTrainer(_cfg(), CLASSES).train(examples, [], tmp_path / "run", seed=1, progress=False)
    assert again.checkpoint == first.checkpoint and again.extra["reused"] and len(_calls(rec)) == 1
    TaoTrainer(_cfg(), CLASSES).train(examples, [], tmp_path / "run", seed=2, progress=False)
    assert len(_calls(rec)) == 2  # a different seed is a different run


def test_images_tao_would_skip_are_converted(tmp_path, monkeypatch):
    root = tmp_path / "images"
    _draw(root / "UPPER.JPG", (RED_BOX, (255, 0, 0)))
    Image.open(root / "UPPER.JPG").save(root / "scan.tif")
    boxes = (Box(*map(float, RED_BOX), "Apple"),)
    examples = [Example(root / n, ImageAnnotation(n, W, H, boxes)) for n in ("UPPER.JPG", "scan.tif")]
    trainer = TaoTrainer(_cfg(), CLASSES)
    result = trainer.train(examples, [], tmp_path / "run", progress=False)
    assert sorted(p.name for p in (tmp_path / "run" / "data" / "train" / "images").iterdir()) == [
        "UPPER.png", "scan.png"]
    dets = trainer.predict(result.checkpoint, [e.path for e in examples], progress=False)
    assert [d.labels.tolist() for d in dets] == [[0], [0]]


def test_exif_rotated_images_are_exported_upright_and_originals_untouched(tmp_path):
    root = tmp_path / "images"
    _draw(root / "phone.png", (RED_BOX, (255, 0, 0)))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": upright the image is H wide, W high
    Image.open(root / "phone.png").save(root / "phone.png", exif=exif)
    before = (root / "phone.png").read_bytes()
    ann = ImageAnnotation("phone.png", H, W, (Box(10.0, 10.0, 20.0, 30.0, "Apple"),))
    trainer = TaoTrainer(_cfg(), CLASSES)
    result = trainer.train([Example(root / "phone.png", ann)], [], tmp_path / "run", progress=False)
    exported = tmp_path / "run" / "data" / "train" / "images"
    assert [q.name for q in exported.iterdir()] == ["phone.png"]
    assert Image.open(exported / "phone.png").size == (H, W)
    assert (root / "phone.png").read_bytes() == before  # the hard-linked original was not written through
    (det,) = trainer.predict(result.checkpoint, [root / "phone.png"], progress=False)
    assert len(det) == 1 and det.boxes[0, 2] <= H and det.boxes[0, 3] <= W  # upright frame


def test_predict_needs_a_model_trained_by_alloop(tmp_path, colour_set):
    _, examples = colour_set
    model = tmp_path / "yolov4_resnet18_epoch_010.hdf5"
    model.write_text("{}")
    with pytest.raises(TrainerError, match="not trained by alloop's tao trainer"):
        TaoTrainer(_cfg(), CLASSES).predict(model, [examples[0].path], progress=False)
    result = TaoTrainer(_cfg(), CLASSES).train(examples, [], tmp_path / "run", progress=False)
    with pytest.raises(TrainerError, match=r"trained on classes \['Apple', 'Pear'\].*train again"):
        TaoTrainer(_cfg(), ["Apple"]).predict(result.checkpoint, [examples[0].path], progress=False)


# -- the loop --------------------------------------------------------------------------------------

def test_alloop_step_with_the_tao_trainer(tmp_path, orchard, make_labels):
    """`alloop init --trainer tao -T launcher=[...]` then `alloop step` completes an iteration."""
    from typer.testing import CliRunner

    from alloop.cli import app
    from alloop.project import Project

    proj = tmp_path / "proj"
    launcher = json.dumps([sys.executable, str(FAKE)])
    runner = CliRunner()
    res = runner.invoke(app, [
        "init", str(proj), "--images", str(orchard / "images"), "--n", "6", "--device", "cpu",
        "--embedder", "backbone",
        "-E", "arch=mobilenet_v3_small", "-E", "weights=none", "-E", "image_size=32",
        "--trainer", "tao", "-T", f"launcher={launcher}", "-T", "epochs=2", "-T", "output_width=128",
        "-T", "output_height=96", "--quiet",
    ])
    assert res.exit_code == 0, res.output
    with Project.open(proj, lock=False) as p:
        queued = sorted(r.path for r in p.store.images() if r.id in p.store.queued_ids())
    labels = make_labels(orchard / "annotations.json", queued, tmp_path / "round1.json")
    res = runner.invoke(app, ["step", str(proj), "--labels", str(labels), "--n", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "iteration 1" in res.output and "selected 4 images" in res.output
    with Project.open(proj, lock=False) as p:
        it = p.store.iteration(1)
        assert it.status == "done" and it.checkpoint.endswith("_epoch_002.hdf5")
        assert (proj / it.checkpoint).is_file() and (proj / (it.checkpoint + ".alloop.json")).is_file()
