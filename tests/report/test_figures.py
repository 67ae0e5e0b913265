"""Figures and thumbnails: data URIs that decode to real pictures."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from alloop.report import figures
from alloop.report.data import BatchImage, ClassRow, CurvePoint, PredictedBox


def _decode(uri: str) -> Image.Image:
    header, payload = uri.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def _item(tmp_path: Path, boxes=()) -> BatchImage:
    path = tmp_path / "grey.png"
    Image.new("RGB", (640, 480), (128, 128, 128)).save(path)
    return BatchImage(1, "grey.png", path, 640, 480, 1, 0.5, 0.2, tuple(boxes))


def test_thumbnail_is_downscaled_and_shows_boxes(tmp_path):
    box = PredictedBox(320, 240, 640, 480, "apple", 0.9)
    img = _decode(figures.thumbnail(_item(tmp_path, [box]), ["apple"]))
    assert img.size == (160, 120)
    px = np.asarray(img.convert("RGB"), np.int16)
    # The box's right half is outlined; the top-left quarter stays plain grey.
    assert np.abs(px[:55, :75] - 128).max() < 12
    assert np.abs(px[60:, 80] - 128).max() > 60


def test_thumbnail_of_a_missing_file_is_a_placeholder(tmp_path):
    item = _item(tmp_path)
    item.file.unlink()
    img = _decode(figures.thumbnail(item, []))
    assert img.size == (160, 120)


def test_charts_return_pngs_or_none():
    curve = [CurvePoint(1, 10, 0.3, 0.1), CurvePoint(2, 20, 0.5, None)]
    assert _decode(figures.learning_curve(curve, [], current=2)).format == "PNG"
    assert figures.learning_curve([], [], current=0) is None
    assert figures.class_counts([]) is None
    rows = [ClassRow("$weird_name$", 3, 5, 0.5, 0.2, None)]  # "$" must not be read as mathtext
    assert _decode(figures.class_counts(rows)).format == "PNG"
    assert figures.training_curve([{"epoch": 0.0}]) is None
    assert _decode(figures.training_curve([{"epoch": 0.0, "loss": 1.0}, {"epoch": 1.0, "loss": 0.5}])).format == "PNG"
