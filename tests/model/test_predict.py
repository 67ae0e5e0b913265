"""``alloop predict``: the loop's own detector on new images, its outputs, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from alloop.boxes import Detections
from alloop.errors import ConfigError, ImageError, TrainerError
from alloop.model import Predictions, collect_images, predict
from alloop.model.predict import draw_predictions, write_predictions
from alloop.model.registry import ChosenModel, ModelInfo
from alloop.predictions import load_predictions
from alloop.project import Project


def _stored(project_dir):
    """The pool images the loop predicted on in iteration 1, and what it stored."""
    with Project.open(project_dir, lock=False) as p:
        ids, dets, _ = load_predictions(p.predictions_file(1))
        rows = {r.id: r for r in p.store.images()}
        return [p.image_root / rows[i].path for i in ids.tolist()], dets


@pytest.mark.slow
def test_predict_equals_what_the_loop_stored(trained_project, tmp_path, assert_same_detections):
    paths, stored = _stored(trained_project)
    paths, stored = paths[:6], stored[:6]
    res = predict(trained_project, paths, tmp_path / "out", fmt="coco", progress=False)
    assert res.predictions.chosen.model.iteration == 1
    assert sum(len(d) for d in stored) > 0, "the tiny model predicted nothing: the comparison would be empty"
    by_path = {im.path: d for im, d in zip(res.predictions.images, res.predictions.detections)}
    for path, want in zip(paths, stored):
        got = by_path[path.resolve()]
        assert_same_detections(got.boxes, got.labels, got.scores, want.boxes, want.labels, want.scores,
                               box_px=0.05, score_rtol=1e-4)
    # The COCO results file holds the same boxes.
    results = json.loads((tmp_path / "out" / "coco" / "predictions.json").read_text())
    assert len(results) == sum(len(d) for d in res.predictions.detections)


@pytest.mark.slow
def test_formats_draw_and_force(trained_project, tmp_path):
    paths, _ = _stored(trained_project)
    out = tmp_path / "out"
    res = predict(trained_project, paths[:2], out, fmt="yolo", draw=True, score_threshold=0.0, progress=False)
    assert sorted(p.name for p in (out / "drawn").rglob("*.jpg")) == sorted(p.with_suffix(".jpg").name for p in paths[:2])
    lines = [ln.split() for f in (out / "yolo" / "labels").rglob("*.txt") for ln in f.read_text().splitlines()]
    assert len(lines) == sum(len(d) for d in res.predictions.detections) and all(len(ln) == 6 for ln in lines)
    with pytest.raises(ConfigError, match="already exists.*--force"):
        predict(trained_project, paths[:1], out, fmt="labelstudio", progress=False)
    predict(trained_project, paths[:1], out, fmt="labelstudio", force=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["labelstudio"]
    tasks = json.loads((out / "labelstudio" / "tasks.json").read_text())
    assert len(tasks) == 1 and tasks[0]["predictions"][0]["model_version"] == "alloop iteration-1"


@pytest.mark.slow
def test_an_image_whose_pixels_cannot_be_decoded(trained_project, tmp_path):
    good, _ = _stored(trained_project)
    data = good[0].read_bytes()
    bad = tmp_path / "in" / "truncated.jpg"
    bad.parent.mkdir()
    bad.write_bytes(data[: len(data) // 2])  # the header is fine, the pixels stop half-way
    with pytest.raises(ImageError, match=r"truncated.jpg: cannot decode") as err:
        predict(trained_project, [good[0], bad], tmp_path / "out", progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_collect_images_names_relative_to_the_common_folder(tmp_path, make_image):
    make_image(tmp_path / "a" / "x.png", (40, 30))
    make_image(tmp_path / "a" / "sub" / "y.jpg", (30, 40))
    make_image(tmp_path / "b.png", (20, 20))
    found = collect_images([tmp_path / "a", tmp_path / "b.png"])
    assert sorted(im.name for im in found) == ["a/sub/y.jpg", "a/x.png", "b.png"]
    assert {im.name: (im.width, im.height) for im in found}["a/sub/y.jpg"] == (30, 40)


def test_unreadable_image_is_one_line_and_nothing_is_written(hand_project, tmp_path):
    proj = hand_project([(1, b"not a checkpoint", 0.3, 0.1)])
    bad = tmp_path / "photos" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ImageError, match=r"broken.jpg: not a readable image.*remove it or fix the file") as err:
        predict(proj, [bad.parent], tmp_path / "out", progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ImageError, match=r"nope.png: no such image file or folder"):
        predict(proj, [tmp_path / "nope.png"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_corrupt_checkpoint_is_one_line(hand_project, tmp_path, make_image):
    proj = hand_project([(1, b"\x00garbage, not a torch file", 0.3, 0.1)])
    image = make_image(tmp_path / "img.png", (64, 48))
    with pytest.raises(TrainerError, match=r"best.pt: checkpoint of iteration 1 is corrupt.*--iteration") as err:
        predict(proj, [image], tmp_path / "out", progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_iteration_without_checkpoint(hand_project, tmp_path, make_image):
    from alloop.errors import ProjectError

    proj = hand_project([(1, None, None, None)])
    image = make_image(tmp_path / "img.png", (64, 48))
    with pytest.raises(ProjectError, match="no trained detector yet"):
        predict(proj, [image], tmp_path / "out", iteration=1, progress=False)


def test_existing_output_folder_is_refused_before_any_work(hand_project, tmp_path):
    proj = hand_project([(1, b"x", 0.3, 0.1)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"out already exists; choose another --out folder or pass --force"):
        predict(proj, [tmp_path / "missing.png"], out, progress=False)
    assert (out / "keep.txt").read_text() == "mine"


def test_unknown_format_and_threshold(hand_project, tmp_path):
    proj = hand_project([(1, b"x", 0.3, 0.1)])
    with pytest.raises(ConfigError, match="--format takes one of coco, labelstudio, yolo"):
        predict(proj, [tmp_path], tmp_path / "out", fmt="voc", progress=False)


def _synthetic(tmp_path, make_image) -> Predictions:
    make_image(tmp_path / "in" / "row_1" / "a.png", (100, 50))
    det = Detections(
        boxes=np.array([[10, 5, 30, 25], [50, 10, 90, 40]], np.float32),
        labels=np.array([1, 0]), scores=np.array([0.9, 0.4], np.float32),
        probs=np.array([[0.05, 0.05, 0.9], [0.5, 0.4, 0.1]], np.float32),
        objectness=np.array([0.9, 0.6], np.float32),
    )
    info = ModelInfo(3, "done", tmp_path / "best.pt", 1, 0.5, 0.3, 10, 8, 2)
    return Predictions(ChosenModel(info, "asked", 3), ("apple", "pear"), tuple(collect_images([tmp_path / "in"])),
                       (det,), None, "cpu", 1.0)


def test_writers_convert_boxes_once(tmp_path, make_image):
    preds = _synthetic(tmp_path, make_image)
    assert preds.images[0].name == "a.png"
    yolo = write_predictions(preds, tmp_path / "o", "yolo")
    rows = [ln.split() for ln in (yolo / "a.txt").read_text().splitlines()]
    assert rows[0] == ["1", "0.200000", "0.300000", "0.200000", "0.400000", "0.900000"]
    assert (tmp_path / "o" / "yolo" / "classes.txt").read_text() == "apple\npear\n"
    write_predictions(preds, tmp_path / "o", "coco")
    results = json.loads((tmp_path / "o" / "coco" / "predictions.json").read_text())
    assert results[0]["bbox"] == [10.0, 5.0, 20.0, 20.0] and results[0]["category_id"] == 2
    drawn = draw_predictions(preds, tmp_path / "o" / "drawn")
    with Image.open(drawn / "a.jpg") as img:
        assert img.size == (100, 50)
        assert np.asarray(img)[15, 10].tolist() != [0, 0, 0]  # a box edge, in the class colour
