"""``alloop export-model``: ONNX and TorchScript files that give the boxes ``alloop predict`` gives."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import torch

from alloop import images as imagelib
from alloop.errors import ConfigError, TrainerError
from alloop.model import export_model, predict

# width, height: three shapes, one portrait. Not 200x150: with min_size 96 / max_size 128 both resize
# rules give exactly 0.64 there, and the scripted transform (float32) rounds it to one pixel less
# than eager PyTorch (float64), which moves boxes by ~1.5 px: torchvision's behaviour, not the export's.
SIZES = ((128, 96), (210, 150), (97, 131))


@pytest.fixture(scope="module")
def three_images(trained_project, tmp_path_factory):
    """Three orchard images resized to different shapes, and alloop's own predictions on them."""
    from alloop.project import Project

    out = tmp_path_factory.mktemp("three")
    with Project.open(trained_project, lock=False) as p:
        sources = [p.image_root / r.path for r in p.store.images()[:3]]
    paths = []
    for k, (src, size) in enumerate(zip(sources, SIZES)):
        path = out / "in" / f"img_{k}.png"
        path.parent.mkdir(exist_ok=True)
        imagelib.open_rgb(src).resize(size).save(path)
        paths.append(path)
    res = predict(trained_project, paths, out / "pred", progress=False)
    assert sum(len(d) for d in res.predictions.detections) > 0, "nothing detected: the comparison would be empty"
    return paths, res.predictions.detections


def _pixels(path):
    return np.asarray(imagelib.open_rgb(path), dtype=np.uint8)


@pytest.mark.slow
def test_onnx_runtime_gives_alloops_boxes_on_three_sizes(trained_project, three_images, tmp_path,
                                                          assert_same_detections):
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'alloop[onnx]')")
    res = export_model(trained_project, fmt="onnx", out=tmp_path / "model.onnx")
    assert res.path.is_file() and res.metadata_path == tmp_path / "model.json"
    session = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    paths, expected = three_images
    for path, want in zip(paths, expected):
        boxes, labels, scores = session.run(None, {"image": _pixels(path)})
        assert_same_detections(boxes, labels, scores, want.boxes, want.labels, want.scores)


@pytest.mark.slow
def test_torchscript_gives_alloops_boxes_on_three_sizes(trained_project, three_images, tmp_path,
                                                        assert_same_detections):
    res = export_model(trained_project, fmt="torchscript", out=tmp_path / "detector.pt")
    assert res.metadata_path == tmp_path / "detector.json"
    model = torch.jit.load(str(res.path))
    paths, expected = three_images
    for path, want in zip(paths, expected):
        with torch.inference_mode():
            boxes, labels, scores = (t.numpy() for t in model(torch.from_numpy(_pixels(path).copy())))
        assert_same_detections(boxes, labels, scores, want.boxes, want.labels, want.scores)


@pytest.mark.slow
def test_metadata_describes_the_model(trained_project, tmp_path):
    res = export_model(trained_project, fmt="torchscript", out=tmp_path / "m.pt", score_threshold=0.3)
    meta = json.loads(res.metadata_path.read_text())
    assert meta["classes"] == ["apple"] and meta["file"] == "m.pt" and meta["format"] == "torchscript"
    assert meta["score_threshold"] == pytest.approx(0.3)
    assert meta["source"]["iteration"] == 1 and "best held-out mAP@0.5" in meta["source"]["chosen"]
    assert meta["source"]["architecture"] == "fasterrcnn_mobilenet_v3_large_320_fpn"
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["shape"] == ["height", "width", 3]
    assert meta["preprocessing_inside_model"]["resize"] == {
        "min_size": [96], "max_size": 128,
        "rule": "shorter side to min_size unless the longer side would pass max_size"}
    assert meta["training"]["labeled_images"] == 8
    assert meta["training"]["train_images"] + meta["training"]["heldout_images"] == 8
    assert meta["training"]["boxes_per_class"]["apple"] > 0
    assert set(meta["metrics"]) == {"heldout_map50", "heldout_map", "names"}
    assert meta["versions"]["alloop"] and meta["sha256"] == hashlib.sha256(res.path.read_bytes()).hexdigest()
    with pytest.raises(ConfigError, match=r"m.pt already exists; choose another --out or pass --force"):
        export_model(trained_project, fmt="torchscript", out=tmp_path / "m.pt")
    export_model(trained_project, fmt="torchscript", out=tmp_path / "m.pt", force=True)


def _blob() -> bytes:
    buf = io.BytesIO()
    torch.save({}, buf)
    return buf.getvalue()


def test_tao_export_needs_a_model_trained_by_alloops_tao_trainer(hand_project, tmp_path):
    """TAO's own export runs in its container (tests/model/test_tao_export.py); a checkpoint without
    the tao trainer's record is refused before anything runs."""
    proj = hand_project([(1, _blob(), 0.4, 0.2)], trainer="tao")
    with pytest.raises(TrainerError, match=r"iteration-1/best.pt: no best.pt.alloop.json next to it, so it was not "
                                           r"trained by alloop's tao trainer"):
        export_model(proj, fmt="onnx", out=tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_bad_arguments_are_refused_before_any_work(hand_project, tmp_path):
    proj = hand_project([(1, _blob(), 0.4, 0.2)])
    with pytest.raises(ConfigError, match="--format takes one of onnx, torchscript"):
        export_model(proj, fmt="tensorrt", out=tmp_path / "m.engine")
    with pytest.raises(ConfigError, match="name the model file .onnx or .pt"):
        export_model(proj, fmt="onnx", out=tmp_path / "model.json")
    (tmp_path / "taken.json").write_text("{}")
    with pytest.raises(ConfigError, match="taken.json already exists.*--force"):
        export_model(proj, fmt="torchscript", out=tmp_path / "taken.pt")
    assert (tmp_path / "taken.json").read_text() == "{}"


def test_corrupt_checkpoint_leaves_no_file(hand_project, tmp_path):
    proj = hand_project([(1, b"PK\x03\x04 torn", 0.4, 0.2)])
    with pytest.raises(TrainerError, match="corrupt") as err:
        export_model(proj, fmt="torchscript", out=tmp_path / "m.pt")
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == [tmp_path / "hand1"]
