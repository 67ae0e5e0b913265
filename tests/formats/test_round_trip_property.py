"""Property: for any valid boxes, export -> import gives the same boxes back, in every format."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from alloop.boxes import Box, ImageAnnotation
from alloop.formats import BatchItem, export_batch, export_training_set, read_labels

from .conftest import CLASSES, assert_same
from .test_cvat import write_cvat_xml
from .test_labelstudio import _as_label_studio_export
from .test_voc import write_voc

W, H = 97, 61  # odd sizes: percentages and normalised centres are not round numbers


@st.composite
def boxes(draw) -> Box:
    x0 = draw(st.floats(0, W - 1, allow_nan=False))
    y0 = draw(st.floats(0, H - 1, allow_nan=False))
    x1 = draw(st.floats(x0 + 0.01, W, allow_nan=False))
    y1 = draw(st.floats(y0 + 0.01, H, allow_nan=False))
    return Box(x0, y0, x1, y1, draw(st.sampled_from(CLASSES)))


def _key(b: Box) -> tuple:
    return (b.label, round(b.x0, 2), round(b.y0, 2), round(b.x1, 2), round(b.y1, 2))


annotation_sets = st.lists(st.lists(boxes(), max_size=6, unique_by=_key), min_size=1, max_size=4).map(
    lambda per_image: [ImageAnnotation(f"d/img_{i}.jpg", W, H, tuple(bs)) for i, bs in enumerate(per_image)]
)


def _project(root: Path, anns: list[ImageAnnotation]) -> dict[str, tuple[int, int]]:
    for a in anns:
        (root / a.file_name).parent.mkdir(parents=True, exist_ok=True)
        (root / a.file_name).write_bytes(b"x")
    return {a.file_name: (a.width, a.height) for a in anns}


@settings(max_examples=15, deadline=None)
@given(anns=annotation_sets)
def test_training_formats(anns) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        images = _project(root, anns)
        for fmt, sub, attrs in (("coco", "", True), ("kitti", "train", True), ("yolo", "", False), ("voc", "", False),
                                ("cvat_xml", "", True)):
            out = Path(tmp) / fmt
            export_training_set(fmt, anns, out, image_root=root, classes=CLASSES)
            got, _ = read_labels(out / sub, format=fmt, images=images, classes=CLASSES)
            assert_same(got.images, anns, tol=1e-6, attributes=attrs)


@settings(max_examples=15, deadline=None)
@given(anns=annotation_sets)
def test_labeling_tool_formats(anns) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "images"
        images = _project(root, anns)
        items = [BatchItem(a.file_name, root / a.file_name, W, H, a.boxes) for a in anns]
        tasks = json.loads(export_batch("labelstudio", items, tmp / "ls", classes=CLASSES, model_version="m")
                           .read_text())
        (tmp / "ls.json").write_text(json.dumps(_as_label_studio_export(tasks, keep_alloop_file=False)))
        got, _ = read_labels(tmp / "ls.json", format="labelstudio", images=images, classes=CLASSES)
        assert_same(got.images, anns, tol=1e-6, attributes=False)

        got, _ = read_labels(write_cvat_xml(anns, tmp / "a.xml"), format="cvat_xml", images=images, classes=CLASSES)
        assert_same(got.images, anns, tol=0)

        got, _ = read_labels(write_voc(anns, tmp / "voc"), format="voc", images=images, classes=CLASSES)
        assert_same(got.images, anns, tol=1e-9)
