"""The TAO trainer without a container: spec rendering against TAO's documented keys, the exact
command lines, parsing of TAO's KITTI inference output, and train/predict through a fake launcher
(tests/data/tao/fake_tao.py) that checks what the real tools would reject."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alloop import formats
from alloop.boxes import Box, ImageAnnotation
from alloop.errors import ConfigError, TrainerError
from alloop.trainers import config_from_mapping, load_trainer
from alloop.trainers.base import Example, Trainer
from alloop.trainers.tao import (
    DEFAULT_ANCHORS,
    TaoConfig,
    TaoTrainer,
    anchor_shapes,
    check_mounts_file,
    detections_from_boxes,
    kmeans_anchors,
    render_spec,
    spec_context,
    tao_command,
    write_mounts_file,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "tao"
FAKE = DATA / "fake_tao.py"
CLASSES = ("Apple", "Pear")
W, H = 96, 64
RED_BOX = (10, 12, 30, 40)  # x0 y0 x1 y1 of the red square (pixel edges)
GREEN_BOX = (50, 5, 80, 25)


def _fake_module():
    spec = importlib.util.spec_from_file_location("fake_tao", FAKE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cfg(**kw) -> TaoConfig:
    base = dict(launcher=[sys.executable, str(FAKE)], epochs=3, checkpoint_interval=2, output_width=96,
                output_height=64)
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


# -- config ----------------------------------------------------------------------------------------

def test_defaults_are_the_tutorial_spec_values():
    c = TaoConfig()
    assert (c.runner, c.launcher, c.task_group, c.network, c.arch, c.nlayers) == (
        "launcher", ("tao",), "model", "yolo_v4", "resnet", 18)
    assert (c.batch_size, c.epochs, c.output_width, c.output_height) == (8, 50, 704, 1280)
    assert (c.min_learning_rate, c.max_learning_rate) == (1e-7, 1e-4)
    assert (c.nms_confidence, c.nms_iou, c.top_k) == (0.001, 0.5, 200)
    assert (c.mosaic_prob, c.horizontal_flip, c.key, c.anchors) == (0.5, 0.5, "nvidia_tlt", "default")


def test_the_trainer_is_registered_and_fits_the_protocol():
    assert load_trainer("tao") is TaoTrainer
    assert isinstance(TaoTrainer(TaoConfig(), CLASSES), Trainer)


def test_toml_values_are_normalised():
    c = config_from_mapping(TaoConfig, {
        "launcher": ["python3", "/x/fake.py"], "anchors": [[1, 2]] * 9, "pretrained_model": "none",
        "gpus": 2, "gpu_index": [0, 1], "docker_args": "--shm-size 16g",
    }, where="test")
    assert c.launcher == ("python3", "/x/fake.py")
    assert c.anchors == ((1.0, 2.0),) * 9 and c.pretrained_model is None
    assert c.gpu_index == (0, 1) and c.docker_args == ("--shm-size", "16g")


@pytest.mark.parametrize("values, message", [
    ({"output_width": 700}, "output_width must be a multiple of 32"),
    ({"runner": "k8s"}, "unknown runner 'k8s'; use one of launcher, docker"),
    ({"nlayers": 19}, "resnet in yolo_v4 comes in 10, 18, 34, 50, 101 layers"),
    ({"arch": "cspdarknet_tiny"}, "is not a yolo_v4 backbone"),
    ({"nms_confidence": 0}, r"nms_confidence must be a number in \(0.0, 1.0\)"),
    ({"gpus": 2, "gpu_index": [0]}, "gpu_index names 1 GPU"),
    ({"anchors": [[1, 2]] * 3}, "anchors needs 9"),
    ({"anchors": "auto"}, "anchors must be"),
    ({"launcher": []}, "launcher must be"),
    ({"min_learning_rate": 1e-3}, "must be below max_learning_rate"),
    ({"epoch": 3}, "unknown option.*epoch.*known options are.*epochs"),
])
def test_bad_config_values_name_the_fix(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(TaoConfig, values, where="[trainer] options (tao)")


def test_classes_tao_cannot_hold_are_refused():
    with pytest.raises(ConfigError, match="collide once lower-cased"):
        TaoTrainer(TaoConfig(), ["Red apple", "red_apple"])
    with pytest.raises(ConfigError, match="has a quote or backslash"):
        TaoTrainer(TaoConfig(), ['6" pipe'])


# -- spec ------------------------------------------------------------------------------------------

def _context(tmp_path, **kw):
    args = dict(train_dir=tmp_path / "data" / "train", val_dir=tmp_path / "data" / "val",
                anchors=DEFAULT_ANCHORS, num_epochs=50, seed=7,
                pretrain_model_path=tmp_path / "resnet_18.hdf5")
    args.update(kw)
    return spec_context(TaoConfig(), ["apple", "pear"], **args)


def test_train_spec_has_every_documented_key(tmp_path):
    fake = _fake_module()
    path = tmp_path / "train.txt"
    path.write_text(render_spec(_context(tmp_path)))
    spec = fake.load_spec(str(path))  # TAO's field names/types and spec_loader asserts
    one = fake.one
    assert set(spec) == {"random_seed", "yolov4_config", "training_config", "eval_config", "nms_config",
                         "augmentation_config", "dataset_config"}
    assert one(spec, "random_seed") == 7
    y = one(spec, "yolov4_config")
    assert one(y, "small_anchor_shape") == "[(15.64, 12.00), (12.71, 18.00), (17.60, 22.00)]"
    assert one(y, "big_anchor_shape") == "[(29.33, 27.00), (32.27, 35.00), (41.07, 42.00)]"
    assert (one(y, "box_matching_iou"), one(y, "arch"), one(y, "nlayers")) == (0.25, "resnet", 18)
    t = one(spec, "training_config")
    assert (one(t, "batch_size_per_gpu"), one(t, "num_epochs")) == (8, 50)
    assert one(t, "pretrain_model_path") == str(tmp_path / "resnet_18.hdf5") and "resume_model_path" not in t
    lr = one(one(t, "learning_rate"), "soft_start_cosine_annealing_schedule")
    assert (one(lr, "min_learning_rate"), one(lr, "max_learning_rate")) == (1e-7, 1e-4)
    assert "adam" in one(t, "optimizer")
    assert one(one(spec, "eval_config"), "matching_iou_threshold") == 0.5
    nms = one(spec, "nms_config")
    assert (one(nms, "confidence_threshold"), one(nms, "clustering_iou_threshold"), one(nms, "top_k")) == (
        0.001, 0.5, 200)
    aug = one(spec, "augmentation_config")
    assert (one(aug, "mosaic_prob"), one(aug, "horizontal_flip")) == (0.5, 0.5)
    assert (one(aug, "output_width"), one(aug, "output_height"), one(aug, "output_channel")) == (704, 1280, 3)
    ds = one(spec, "dataset_config")
    assert [(one(m, "key"), one(m, "value")) for m in ds["target_class_mapping"]] == [
        ("apple", "apple"), ("pear", "pear")]
    src, val = ds["data_sources"][0], ds["validation_data_sources"][0]
    assert one(src, "image_directory_path") == str(tmp_path / "data" / "train" / "images")
    assert one(src, "label_directory_path") == str(tmp_path / "data" / "train" / "labels")
    assert one(val, "label_directory_path") == str(tmp_path / "data" / "val" / "labels")


def test_resume_spec_sets_only_resume_model_path(tmp_path):
    fake = _fake_module()
    path = tmp_path / "train.txt"
    ckpt = tmp_path / "w" / "yolov4_resnet18_epoch_050.hdf5"
    path.write_text(render_spec(_context(tmp_path, resume_model_path=ckpt, pretrain_model_path=None,
                                         num_epochs=100)))
    t = fake.one(fake.load_spec(str(path)), "training_config")
    assert fake.one(t, "resume_model_path") == str(ckpt) and "pretrain_model_path" not in t
    assert fake.one(t, "num_epochs") == 100


def test_the_fake_rejects_what_tao_rejects(tmp_path):
    fake = _fake_module()
    good = render_spec(_context(tmp_path))
    for bad, message in [
        (good.replace("mosaic_min_ratio: 0.2", "mosaic_min_ratio: 0.7"), "mosaic_min_ratio"),
        (good.replace("nlayers: 18", "nlayers: 18.0"), "must be an integer"),
        (good.replace("top_k: 200", "topk: 200"), 'no field named "topk"'),
        (good.replace('arch: "resnet"', "arch: resnet"), "quoted string"),
    ]:
        path = tmp_path / "bad.txt"
        path.write_text(bad)
        with pytest.raises(fake.SpecError, match=message):
            fake.load_spec(str(path))


def test_paths_tao_cannot_pass_are_refused(tmp_path):
    with pytest.raises(TrainerError, match="contains ' '.*move or rename it"):
        _context(tmp_path, train_dir=tmp_path / "my data" / "train")


def test_anchor_strings_are_sorted_by_area():
    shapes = anchor_shapes([(9, 9), (1, 1), (5, 5), (2, 2), (8, 8), (3, 3), (7, 7), (4, 4), (6, 6)])
    assert shapes == {"small": "[(1.00, 1.00), (2.00, 2.00), (3.00, 3.00)]",
                      "mid": "[(4.00, 4.00), (5.00, 5.00), (6.00, 6.00)]",
                      "big": "[(7.00, 7.00), (8.00, 8.00), (9.00, 9.00)]"}


def test_custom_template(tmp_path):
    tpl = tmp_path / "mine.j2"
    tpl.write_text("num_epochs: {{ num_epochs }}\n")
    assert render_spec(_context(tmp_path), template=tpl) == "num_epochs: 50\n"
    tpl.write_text("{{ no_such_value }}")
    with pytest.raises(ConfigError, match="no_such_value.*fix the template"):
        render_spec(_context(tmp_path), template=tpl)
    with pytest.raises(ConfigError, match="no such file"):
        render_spec(_context(tmp_path), template=tmp_path / "missing.j2")


def test_kmeans_anchors_find_the_box_sizes():
    rng = np.random.default_rng(0)
    centres = np.array([[0.02, 0.03], [0.05, 0.05], [0.1, 0.08], [0.15, 0.2], [0.2, 0.1],
                        [0.3, 0.3], [0.4, 0.2], [0.5, 0.6], [0.8, 0.7]])
    sizes = np.concatenate([c * (1 + 0.02 * rng.standard_normal((30, 2))) for c in centres])
    anchors = kmeans_anchors(sizes, output_width=100, output_height=200, seed=1)
    assert len(anchors) == 9
    areas = [w * h for w, h in anchors]
    assert areas == sorted(areas)
    expected = sorted((c[0] * 100, c[1] * 200) for c in centres)
    got = sorted(anchors)
    assert np.allclose(got, expected, rtol=0.05)
    with pytest.raises(ValueError, match="more than 9 boxes"):
        kmeans_anchors(sizes[:9], output_width=100, output_height=200)


# -- commands --------------------------------------------------------------------------------------

def test_launcher_command_line():
    args = ["-e", "/p/spec.txt", "-r", "/p/results", "-k", "nvidia_tlt", "--gpus", "1"]
    assert tao_command(TaoConfig(), "train", args) == ["tao", "model", "yolo_v4", "train", *args]
    assert tao_command(TaoConfig(task_group=""), "train", args)[:3] == ["tao", "yolo_v4", "train"]
    assert tao_command(_cfg(), "inference", ["-m", "x"]) == [sys.executable, str(FAKE), "model", "yolo_v4",
                                                            "inference", "-m", "x"]


def test_docker_command_line(tmp_path):
    cfg = TaoConfig(runner="docker", docker_args=["--shm-size", "16g"])
    run = tmp_path / "run"
    cmd = tao_command(cfg, "train", ["-e", "s"], mounts=[run / "results", run, tmp_path / "models"])
    assert cmd == ["docker", "run", "--rm", "--gpus", "all", "--user", f"{os.getuid()}:{os.getgid()}",
                   "-v", f"{tmp_path / 'models'}:{tmp_path / 'models'}", "-v", f"{run}:{run}",
                   "--shm-size", "16g", "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5",
                   "yolo_v4", "train", "-e", "s"]
    two = tao_command(TaoConfig(runner="docker", gpus=2, gpu_index=[0, 1], docker_user=False), "train", [])
    assert two[3:5] == ["--gpus", '"device=0,1"'] and "--user" not in two


def test_mounts_file(tmp_path):
    path = write_mounts_file(tmp_path / "m.json", [tmp_path / "a" / "b", tmp_path / "a", tmp_path / "c"])
    doc = json.loads(path.read_text())
    assert doc["Mounts"] == [{"source": str(tmp_path / "a"), "destination": str(tmp_path / "a")},
                             {"source": str(tmp_path / "c"), "destination": str(tmp_path / "c")}]
    assert doc["DockerOptions"] == {"tty": False, "user": f"{os.getuid()}:{os.getgid()}"}


def test_a_user_mounts_file_must_cover_every_directory(tmp_path):
    (tmp_path / "proj" / "run").mkdir(parents=True)
    mine = tmp_path / "mine.json"
    no_tty = {"DockerOptions": {"tty": False}}
    elsewhere = {"Mounts": [{"source": str(tmp_path / "proj"), "destination": "/workspace"}]}
    mine.write_text(json.dumps({**elsewhere, **no_tty}))
    with pytest.raises(TrainerError, match="does not mount .*run at the same path"):
        check_mounts_file(mine, [tmp_path / "proj" / "run"])
    same = {"Mounts": [{"source": str(tmp_path / "proj"), "destination": str(tmp_path / "proj")}]}
    mine.write_text(json.dumps(same))
    with pytest.raises(TrainerError, match='"tty": false'):
        check_mounts_file(mine, [tmp_path / "proj" / "run"])
    mine.write_text(json.dumps({**same, **no_tty}))
    check_mounts_file(mine, [tmp_path / "proj" / "run"])
    with pytest.raises(TrainerError, match="no such file"):
        check_mounts_file(tmp_path / "nope.json", [tmp_path])


# -- parsing TAO's inference output ----------------------------------------------------------------

def test_parse_real_shaped_outputs_with_0_1_and_many_lines():
    found = formats.read_kitti_detections(DATA / "inference_labels", classes=CLASSES)
    sizes = {"000000": (720, 1280), "000001": (720, 1280), "000002": (640, 480)}  # (width, height)
    dets = {k: detections_from_boxes(v, CLASSES, *sizes[k]) for k, v in found.items()}
    assert len(dets["000000"]) == 0 and dets["000000"].probs.shape == (0, 3)
    one = dets["000001"]  # a single line: the converter of the tutorial read this as "no detections"
    assert len(one) == 1 and one.boxes.shape == (1, 4)
    assert np.allclose(one.boxes[0], [412.70087, 503.15866, 441.5277, 534.2118])
    assert one.labels.tolist() == [0] and np.isclose(one.scores[0], 0.9124311)
    many = dets["000002"]
    assert many.scores.tolist() == pytest.approx([0.87, 0.41263, 0.05, 0.0012345])  # highest first
    assert many.labels.tolist() == [0, 1, 0, 0]
    # Clipped to the 640x480 image: TAO's boxes may stick out.
    assert np.allclose(many.boxes[2], [300.0, 200.0, 640.0, 260.0])
    assert np.allclose(many.boxes[3], [0, 90, 22.4, 130.6])
    assert np.allclose(many.probs[:, 0], 1 - many.scores)
    assert np.allclose(many.probs[np.arange(4), many.labels + 1], many.scores)
    assert np.allclose(many.probs.sum(axis=1), 1.0) and np.array_equal(many.objectness, many.scores)
    above = detections_from_boxes(found["000002"], CLASSES, 640, 480, score_threshold=0.05)
    assert len(above) == 3


def test_hflip_boxes_are_mirrored_back():
    boxes = [Box(10.0, 5.0, 30.0, 25.0, "Pear", 0.7)]
    det = detections_from_boxes(boxes, CLASSES, 100, 50, hflip=True)
    assert np.allclose(det.boxes, [[70.0, 5.0, 90.0, 25.0]]) and det.labels.tolist() == [1]


# -- train and predict through the fake launcher ---------------------------------------------------

def test_train_and_predict_through_the_fake_launcher(tmp_path, colour_set, monkeypatch):
    root, examples = colour_set
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
    train_call, infer_call = _calls(rec)
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
     r"TAO launcher '/nonexistent/bin/tao' not found; install the TAO launcher with `pip install nvidia-tao`"
     r".*runner=docker"),
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
