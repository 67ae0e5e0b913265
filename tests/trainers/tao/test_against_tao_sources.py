"""The TAO trainer where TAO's own code (tao_tensorflow1_backend, the tao launcher, TAO 5) differs from
what a naive caller expects (issue 21): anchors on resume, per-class duplicate boxes, shell-unsafe
paths, the learning-rate assert, runs cut short with "PASS", mounts-file keys, TAO 5's spec values,
and training labels TAO would silently skip. The fake launcher behaves like TAO on each point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import ConfigError, TrainerError
from alloop.score.boxes import entropy, least_confidence, margin, objectness_least_confidence
from alloop.trainers import config_from_mapping
from alloop.trainers.base import Example
from alloop.trainers.tao import DEFAULT_ANCHORS, TaoConfig, TaoTrainer, detections_from_boxes, render_spec
from alloop.trainers.tao.anchors import anchor_shapes, anchors_from_shapes
from alloop.trainers.tao.command import check_mounts_file
from alloop.trainers.tao.spec import SPEC_DIR, spec_context

FAKE = Path(__file__).resolve().parents[2] / "data" / "tao" / "fake_tao.py"
CLASSES = ("Apple", "Pear")
W, H = 96, 64
RED, GREEN = (255, 0, 0), (0, 255, 0)


def _cfg(**kw) -> TaoConfig:
    base = {"launcher": [sys.executable, str(FAKE)], "epochs": 3, "checkpoint_interval": 2, "output_width": 96,
            "output_height": 64}
    base.update(kw)
    return TaoConfig(**base)


def _example(root: Path, name: str, *objects: tuple[tuple[int, int, int, int], tuple[int, int, int], str]) -> Example:
    img = np.zeros((H, W, 3), np.uint8)
    for (x0, y0, x1, y1), colour, _ in objects:
        img[y0:y1, x0:x1] = colour
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    boxes = tuple(Box(*map(float, box), label) for box, _, label in objects)
    return Example(path, ImageAnnotation(name, W, H, boxes))


def _squares(root: Path, sizes: list[tuple[int, int]]) -> list[Example]:
    """One red apple per image, of the given (w, h): enough boxes (> 9) for k-means anchors."""
    return [_example(root, f"{root.name}_{i:02d}.png", ((5, 5, 5 + w, 5 + h), RED, "Apple")) for i, (w, h) in enumerate(sizes)]


@pytest.fixture()
def pair(tmp_path):
    """A red apple alone, and a red apple with a green pear."""
    root = tmp_path / "images"
    return [_example(root, "red.png", ((10, 12, 30, 40), RED, "Apple")),
            _example(root, "both.png", ((10, 12, 30, 40), RED, "Apple"), ((50, 5, 80, 25), GREEN, "Pear"))]


def _calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- 1. anchors are part of the model: a resumed run keeps them ------------------------------------

def test_resume_keeps_the_anchors_the_model_was_built_with(tmp_path):
    small = _squares(tmp_path / "a", [(4 + i, 6 + (i * 5) % 9) for i in range(12)])
    large = _squares(tmp_path / "b", [(30 + 2 * i, 20 + (i * 7) % 30) for i in range(12)])
    trainer = TaoTrainer(_cfg(anchors="kmeans"), CLASSES)
    first = trainer.train(small, [], tmp_path / "it1", progress=False)
    kept = json.loads(Path(str(first.checkpoint) + ".alloop.json").read_text())["anchors"]
    second = trainer.train([*small, *large], [], tmp_path / "it2", resume_from=first.checkpoint, progress=False)
    spec_1 = (tmp_path / "it1" / "specs" / "train.txt").read_text()
    spec_2 = (tmp_path / "it2" / "specs" / "train.txt").read_text()
    anchor_lines = [ln for ln in spec_1.splitlines() if "anchor_shape" in ln]
    assert anchor_lines and all(ln in spec_2 for ln in anchor_lines)  # not refitted on the new boxes
    assert json.loads(Path(str(second.checkpoint) + ".alloop.json").read_text())["anchors"] == kept
    # The fake model decodes with the anchors it was built with: boxes come out where they are.
    (det,) = trainer.predict(second.checkpoint, [small[0].path], progress=False)
    b = small[0].annotation.boxes[0]
    assert np.allclose(det.boxes, [[b.x0, b.y0, b.x1, b.y1]])

    # A pretrain start builds a new model: there the new k-means anchors apply.
    TaoTrainer(_cfg(anchors="kmeans", resume_mode="pretrain"), CLASSES).train(
        [*small, *large], [], tmp_path / "it3", resume_from=first.checkpoint, progress=False)
    spec_3 = (tmp_path / "it3" / "specs" / "train.txt").read_text()
    assert not all(ln in spec_3 for ln in anchor_lines)


def test_anchors_of_older_records_are_read_from_their_spec():
    assert anchors_from_shapes(anchor_shapes(DEFAULT_ANCHORS)) == DEFAULT_ANCHORS


def test_a_model_recorded_before_anchors_were_kept_resumes_with_its_specs_anchors(tmp_path):
    small = _squares(tmp_path / "a", [(4 + i, 6 + (i * 5) % 9) for i in range(12)])
    trainer = TaoTrainer(_cfg(anchors="kmeans"), CLASSES)
    first = trainer.train(small, [], tmp_path / "it1", progress=False)
    record = Path(str(first.checkpoint) + ".alloop.json")
    old = json.loads(record.read_text())
    del old["anchors"]
    record.write_text(json.dumps(old))
    trainer.train(small[:10], [], tmp_path / "it2", resume_from=first.checkpoint, progress=False)
    spec_1 = (tmp_path / "it1" / "specs" / "train.txt").read_text()
    spec_2 = (tmp_path / "it2" / "specs" / "train.txt").read_text()
    assert [ln for ln in spec_1.splitlines() if "anchor_shape" in ln] == [
        ln for ln in spec_2.splitlines() if "anchor_shape" in ln]


def test_resume_without_a_record_of_the_anchors_is_refused(tmp_path, pair):
    model = tmp_path / "elsewhere" / "yolov4_resnet18_epoch_010.hdf5"
    model.parent.mkdir()
    model.write_text("{}")
    with pytest.raises(TrainerError, match="which anchors the model was built with.*resume_mode=pretrain"):
        TaoTrainer(_cfg(), CLASSES).train(pair, [], tmp_path / "run", resume_from=model, progress=False)


# -- 2. per-class NMS: one box, several lines -------------------------------------------------------

def test_per_class_lines_of_one_box_become_one_box_with_a_distribution():
    box = (10.0, 12.0, 30.0, 40.0)
    lines = [Box(*box, "Apple", 0.6), Box(*box, "Pear", 0.3), Box(50.0, 5.0, 80.0, 25.0, "Pear", 0.5)]
    det = detections_from_boxes(lines, CLASSES, W, H)
    assert len(det) == 2 and det.labels.tolist() == [0, 1] and np.allclose(det.scores, [0.6, 0.5])
    assert np.allclose(det.probs, [[0.1, 0.6, 0.3], [0.5, 0.0, 0.5]])
    assert np.allclose(det.objectness, [0.9, 0.5])
    # The scorers see two classes competing for the first box: more uncertain than one class alone.
    alone = detections_from_boxes([Box(*box, "Apple", 0.6)], CLASSES, W, H)
    assert np.allclose(alone.probs, [[0.4, 0.6, 0.0]])
    for score in (entropy, margin, least_confidence, objectness_least_confidence):
        values = score(det)
        assert values.shape == (2,) and np.all((values >= 0) & (values <= 1))
    assert entropy(det)[0] > entropy(alone)[0]
    # Independent sigmoids can sum past 1: the foreground is renormalised, the score stays TAO's.
    both = detections_from_boxes([Box(*box, "Apple", 0.7), Box(*box, "Pear", 0.6)], CLASSES, W, H)
    assert np.allclose(both.probs, [[0.0, 0.7 / 1.3, 0.6 / 1.3]]) and np.allclose(both.scores, [0.7])
    # Mirrored predictions merge the same way.
    flipped = detections_from_boxes(lines[:2], CLASSES, W, H, hflip=True)
    assert len(flipped) == 1 and np.allclose(flipped.boxes, [[W - 30.0, 12.0, W - 10.0, 40.0]])


def test_predict_merges_the_fakes_per_class_lines_and_clips_to_the_image(tmp_path, pair):
    edge = _example(tmp_path / "images", "edge.png", ((70, 40, W, H), RED, "Apple"))
    trainer = TaoTrainer(_cfg(), CLASSES)
    result = trainer.train(pair, [], tmp_path / "run", progress=False)
    dets = trainer.predict(result.checkpoint, [pair[1].path, edge.path], progress=False)
    lines = (tmp_path / "run" / "inference" / "plain" / "results" / "labels" / "000000.txt").read_text()
    assert len(lines.splitlines()) == 4  # TAO's per-class NMS: each box once per class
    assert [len(d) for d in dets] == [2, 1]
    assert np.allclose(dets[0].probs, [[0.02, 0.9, 0.08], [0.25, 0.15, 0.6]])
    edge_lines = (tmp_path / "run" / "inference" / "plain" / "results" / "labels" / "000001.txt").read_text()
    assert float(edge_lines.split()[6]) > W  # TAO's box sticks out of the image...
    assert np.allclose(dets[1].boxes, [[70, 40, W, H]])  # ...alloop's does not


# -- 3. paths through TAO's two bash layers ---------------------------------------------------------

UNSAFE = ["proj(1)", "a;b", "a&b", "a|b", "a<b", "a>b", "a#b", "~a", "a*b", "a b", "it's", "a$b", "a:b"]


@pytest.mark.parametrize("name", UNSAFE)
def test_paths_the_shell_layers_would_change_are_refused(tmp_path, name):
    path = tmp_path / name / "train"
    with pytest.raises(TrainerError) as err:
        spec_context(TaoConfig(), ["apple"], train_dir=path, val_dir=path, anchors=DEFAULT_ANCHORS,
                     num_epochs=1, seed=0)
    msg = str(err.value)
    assert str(path) in msg and "move or rename it" in msg and "letters, digits" in msg


@pytest.mark.parametrize("options, message", [
    ({"key": "my key"}, r"key 'my key' contains ' '"),
    ({"extra_args": ["--log_file", "/tmp/a;b"]}, r"extra_args '/tmp/a;b' contains ';'"),
])
def test_options_that_reach_tao_s_shell_are_plain_words(options, message):
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(TaoConfig, options, where="test")


def test_an_unsafe_project_path_is_refused_before_tao_runs(tmp_path, pair, monkeypatch):
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_TAO_RECORD", str(record))
    with pytest.raises(TrainerError, match=r"contains '\('"):
        TaoTrainer(_cfg(), CLASSES).train(pair, [], tmp_path / "proj(1)" / "run", progress=False)
    assert _calls(record) == []


def test_the_fake_launcher_breaks_on_what_bash_would_break_on(tmp_path):
    proc = subprocess.run([sys.executable, str(FAKE), "model", "yolo_v4", "train", "-e", str(tmp_path / "a;b")],
                          env={**os.environ, "LAUNCHER_MOUNTS": str(_mounts(tmp_path, {}))},
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "syntax error" in proc.stdout and "Execution status" not in proc.stdout


def test_a_plain_path_with_letters_of_any_script_and_safe_punctuation_trains(tmp_path, pair):
    out = tmp_path / "Äpfel_v2+b,c=d@e%f-g" / "run"
    result = TaoTrainer(_cfg(), CLASSES).train(pair, [], out, progress=False)
    assert result.checkpoint.is_file()


# -- 4. TAO asserts max_learning_rate > min_learning_rate -------------------------------------------

def test_equal_learning_rates_are_refused():
    with pytest.raises(ConfigError, match=r"min_learning_rate \(0.0001\) must be below max_learning_rate"):
        config_from_mapping(TaoConfig, {"min_learning_rate": 1e-4, "max_learning_rate": 1e-4}, where="test")


# -- 5. a run cut short still says PASS -------------------------------------------------------------

def test_a_run_stopped_by_a_nan_loss_is_not_a_finished_iteration(tmp_path, pair, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_STOP_AT", "2")
    with pytest.raises(TrainerError, match=r"stopped after epoch 2 of 3 .*NaN.*lower max_learning_rate"):
        TaoTrainer(_cfg(), CLASSES).train(pair, [], tmp_path / "run", progress=False)
    assert "Execution status: PASS" in (tmp_path / "run" / "logs" / "train.log").read_text()
    assert not (tmp_path / "run" / "train_done.json").exists()  # the next step trains again
    monkeypatch.delenv("FAKE_TAO_STOP_AT")
    result = TaoTrainer(_cfg(), CLASSES).train(pair, [], tmp_path / "run", progress=False)
    assert result.checkpoint.name.endswith("_epoch_003.hdf5") and not result.extra["reused"]


# -- 6. the mounts file: the launcher's own keys ----------------------------------------------------

def _mounts(tmp_path: Path, extra: dict) -> Path:
    path = tmp_path / "mounts.json"
    doc = {"Mounts": [{"source": str(tmp_path), "destination": str(tmp_path)}], "DockerOptions": {"tty": False}}
    for key, value in extra.items():
        if key == "DockerOptions":
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("extra, message", [
    ({"Env": []}, r"unknown key 'Env'.*use only Mounts, Envs, DockerOptions"),
    ({"DockerOptions": {"shm-size": "16g"}}, r"DockerOptions 'shm-size' is not an option.*shm_size"),
    ({"Envs": [{"name": "A", "value": "1"}]}, r'each Envs entry needs "variable" and "value"'),
])
def test_a_mounts_file_the_launcher_rejects_is_refused_first(tmp_path, pair, extra, message):
    path = _mounts(tmp_path, extra)
    with pytest.raises(TrainerError, match=message):
        check_mounts_file(path, [tmp_path])
    # The fake launcher rejects the same file, as docker_handler.py does (a traceback, exit 1).
    proc = subprocess.run([sys.executable, str(FAKE), "model", "yolo_v4", "train", "-e", "x", "-r", "y"],
                          env={**os.environ, "LAUNCHER_MOUNTS": str(path)}, capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and ("KeyError" in proc.stderr or "AssertionError" in proc.stderr)
    valid = _mounts(tmp_path, {"Envs": [{"variable": "A", "value": "1"}], "DockerOptions": {"shm_size": "16g"}})
    check_mounts_file(valid, [tmp_path])


# -- 7. TAO 5's sample spec values ------------------------------------------------------------------

def test_the_spec_uses_tao_5s_loss_weights_and_model_ema(tmp_path, fake_tao):
    fake = fake_tao
    context = spec_context(TaoConfig(), ["apple"], train_dir=tmp_path / "t", val_dir=tmp_path / "v",
                           anchors=DEFAULT_ANCHORS, num_epochs=10, seed=0)
    path = tmp_path / "spec.txt"
    path.write_text(render_spec(context))
    spec = fake.load_spec(str(path))
    y, t = fake.one(spec, "yolov4_config"), fake.one(spec, "training_config")
    weights = [fake.one(y, k) for k in ("loss_loc_weight", "loss_neg_obj_weights", "loss_class_weights")]
    assert weights == [1.0, 1.0, 1.0] and fake.one(t, "model_ema") is True


# -- training labels as TAO reads them --------------------------------------------------------------

def _template(tmp_path: Path, key: str) -> Path:
    text = (SPEC_DIR / "yolo_v4.txt.j2").read_text().replace('key: "{{ name }}"', f'key: "{key}"')
    path = tmp_path / "mine.txt.j2"
    path.write_text(text)
    return path


def test_a_class_mapping_tao_would_not_match_is_refused(tmp_path, pair, monkeypatch):
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_TAO_RECORD", str(record))
    cfg = _cfg(spec_template=str(_template(tmp_path, "{{ name }}s")))
    with pytest.raises(TrainerError, match=r"class 'Apple': 2 labeled box\(es\), but TAO would read none"):
        TaoTrainer(cfg, CLASSES).train(pair, [], tmp_path / "run", progress=False)
    assert _calls(record) == []


def test_the_fake_trains_on_nothing_where_tao_would(tmp_path, fake_tao):
    fake = fake_tao
    labels, images = tmp_path / "kitti" / "labels", tmp_path / "kitti" / "images"
    labels.mkdir(parents=True)
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    (labels / "a.txt").write_text("apple 0 0 0 1 1 5 5\nApple 0 0 0 1 1 5 5 0 0 0 0 0 0 0\npears 0 0 0 1 1 5 5 0 0 0 0 0 0 0\n")
    assert fake.read_kitti_dir(str(images), str(labels), {"apple": "apple", "pear": "pear"}) == (
        1, {"apple": 1})


def test_upper_case_mapping_keys_match_as_tao_lower_cases_them(tmp_path, pair):
    cfg = _cfg(spec_template=str(_template(tmp_path, "{{ name | upper }}")))
    result = TaoTrainer(cfg, CLASSES).train(pair, [], tmp_path / "run", progress=False)
    assert json.loads(result.checkpoint.read_text())["boxes_per_class"] == {"apple": 2, "pear": 1}


def test_a_class_without_labels_trains_with_a_warning(tmp_path, pair, caplog):
    result = TaoTrainer(_cfg(), (*CLASSES, "Plum")).train(pair, [], tmp_path / "run", progress=False)
    assert result.checkpoint.is_file()
    assert "class 'Plum' has no labeled boxes yet" in caplog.text
