"""Ultralytics YOLO: training export (data.yaml + labels) and label import."""

from __future__ import annotations

from pathlib import Path

import pytest

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import LabelError
from alloop.formats import ImportOptions, export_training_set, read_labels, sniff_format
from alloop.formats.yolo import parse_names_yaml

from .conftest import CLASSES, DATA, assert_same


def _read(path: Path, images, classes=CLASSES, **kw):
    return read_labels(path, format=kw.pop("format", None), images=images, classes=classes, **kw)


def test_layout(tmp_path, image_root, labeled) -> None:
    path = export_training_set("yolo", labeled[:2], tmp_path / "y", image_root=image_root, classes=CLASSES,
                               val=labeled[2:])
    out = tmp_path / "y"
    assert path == out / "data.yaml"
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    # Ultralytics' layout; sub-folders flattened (datumaro's yolo import matches labels by base name only).
    assert files == [
        "data.yaml",
        "images/train/row_01__apple_001.jpg", "images/train/row_01__apple_002.jpg", "images/val/apple_004.png",
        "labels/train/row_01__apple_001.txt", "labels/train/row_01__apple_002.txt", "labels/val/apple_004.txt",
    ]
    assert (out / "labels/train/row_01__apple_001.txt").read_text().splitlines()[0] == "0 0.225 0.205 0.25 0.16"
    assert (out / "labels/train/row_01__apple_002.txt").read_text() == ""
    text = path.read_text()
    assert "train: images/train\nval: images/val\nnc: 2\nnames:\n  0: apple\n  1: leaf\n" in text
    assert f'path: "{out.resolve()}"' in text
    assert parse_names_yaml(text, "data.yaml") == list(CLASSES)


def test_round_trip(tmp_path, images, image_root, labeled) -> None:
    export_training_set("yolo", labeled, tmp_path / "y", image_root=image_root, classes=CLASSES)
    assert sniff_format(tmp_path / "y") == "yolo"
    got, warnings = _read(tmp_path / "y", images)
    assert warnings == []
    assert_same(got.images, labeled, tol=1e-6, attributes=False)  # YOLO lines carry no attributes


def test_yaml_is_valid_yaml(tmp_path, image_root) -> None:
    yaml = pytest.importorskip("yaml")
    classes = ("apple", "Green Apple", "yes", "0day", 'say "hi"', "émoji ✓")
    path = export_training_set("yolo", [], tmp_path / "y", image_root=image_root, classes=classes)
    data = yaml.safe_load(path.read_text())
    assert data["names"] == dict(enumerate(classes))
    assert parse_names_yaml(path.read_text(), "x") == list(classes)


@pytest.mark.parametrize("text", [
    "names: ['apple', leaf]\n",
    'names: ["apple", "leaf"]  # two\n',
    "names:\n  - apple\n  - leaf\nnc: 2\n",
    "path: x\nnames:\n  0: apple\n  1: leaf\n",
    "names: {0: apple, 1: leaf}\n",
])
def test_names_shapes(text: str) -> None:
    assert parse_names_yaml(text, "data.yaml") == ["apple", "leaf"]


def test_real_shaped(images) -> None:
    path = DATA / "yolo"
    assert sniff_format(path) == "yolo"
    got, _ = _read(path, images)
    by = {a.file_name: a.boxes for a in got.images}
    assert_same([ImageAnnotation("a", 0, 0, by["row_01/apple_001.jpg"])],
                [ImageAnnotation("a", 0, 0, (Box(64, 60, 224, 136.8, "apple"), Box(300, 225, 340, 255, "leaf")))])
    assert by["row_02/apple_003.jpg"] == ()  # empty file: no objects
    assert "row_01/apple_002.jpg" not in by  # no file: not labeled


def test_classes_txt_and_no_names(tmp_path, images) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "apple_004.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (tmp_path / "classes.txt").write_text("leaf\napple\n")
    got, _ = _read(tmp_path, images)
    assert got.images[0].boxes == (Box(120, 90, 200, 150, "leaf"),)
    (tmp_path / "classes.txt").unlink()
    got, warnings = _read(tmp_path, images, format="yolo")
    assert got.images[0].boxes[0].label == "apple"
    assert "class ids read in the project's class order" in warnings[0]


# -- bad input ------------------------------------------------------------------------------------

def test_border_rounding_is_silent_and_clips_are_summarised(tmp_path, images) -> None:
    # Issue 16, item 7: one "clipped" warning per border box flooded the output on ordinary files.
    (tmp_path / "labels").mkdir()
    (tmp_path / "data.yaml").write_text("names: [apple, leaf]\n")
    # 0.5000005 +- 0.5 is 1.0000005: a hair past the border, the tools' rounding.
    rounding = "".join(f"0 {0.05 * i + 0.02} 0.5000005 0.03 1.0000010\n" for i in range(1, 15))
    (tmp_path / "labels" / "apple_004.txt").write_text(rounding)
    got, warnings = _read(tmp_path, images)
    assert warnings == [] and len(got.images[0].boxes) == 14
    assert max(b.y1 for b in got.images[0].boxes) == 240  # snapped onto the border
    # Real clips (--clip-boxes): one line with the count and the worst case.
    (tmp_path / "labels" / "apple_004.txt").write_text("0 0.5 0.5 0.2 1.2\n0 0.2 0.5 0.2 1.1\n1 0.9 0.5 0.3 0.2\n")
    got, warnings = _read(tmp_path, images, options=ImportOptions(clip_boxes=True))
    assert warnings == [f"{tmp_path}: 3 box(es) clipped to their image (--clip-boxes); worst: "
                        f"{tmp_path / 'labels' / 'apple_004.txt'}:1, 24 px outside the 320x240 image"]


def _fails(tmp_path, images, line: str, match: str, yaml: str = "names: [apple, leaf]\n") -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "apple_004.txt").write_text(line)
    (tmp_path / "data.yaml").write_text(yaml)
    with pytest.raises(LabelError, match=match) as err:
        _read(tmp_path, images, format="yolo")
    assert str(err.value).startswith(str(tmp_path)) and "\n" not in str(err.value)


def test_confidence(tmp_path, images) -> None:
    _fails(tmp_path, images, "0 0.5 0.5 0.1 0.1 0.9\n", r"apple_004\.txt:1: has 6 fields.*a confidence")


def test_polygon(tmp_path, images) -> None:
    _fails(tmp_path, images, "0 0.1 0.1 0.2 0.1 0.2 0.2\n", r"has 7 fields.*polygon points")


def test_class_id_out_of_range(tmp_path, images) -> None:
    _fails(tmp_path, images, "5 0.5 0.5 0.1 0.1\n", r"class id 5 is outside 0\.\.1 \(.*data\.yaml\)")


def test_class_id_not_int(tmp_path, images) -> None:
    _fails(tmp_path, images, "apple 0.5 0.5 0.1 0.1\n", r"class id 'apple' is not an integer")


def test_not_numbers(tmp_path, images) -> None:
    _fails(tmp_path, images, "0 0.5 half 0.1 0.1\n", r"are not numbers")


def test_nan(tmp_path, images) -> None:
    _fails(tmp_path, images, "0 nan 0.5 0.1 0.1\n", r"non-finite value")


def test_negative_size(tmp_path, images) -> None:
    _fails(tmp_path, images, "0 0.5 0.5 -0.1 0.1\n", r"non-positive width or height")


def test_outside(tmp_path, images) -> None:
    _fails(tmp_path, images, "0 0.99 0.5 0.2 0.1\n", r"lies outside the 320x240 image")


def test_unknown_image(tmp_path, images) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "pear.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(LabelError, match=r"pear\.txt: image 'pear' is not in the project"):
        _read(tmp_path, images, format="yolo")


def test_unknown_class(tmp_path, images) -> None:
    _fails(tmp_path, images, "1 0.5 0.5 0.1 0.1\n", r"unknown class name\(s\) 'pear'", yaml="names: [apple, pear]\n")


def test_duplicate(tmp_path, images) -> None:
    _fails(tmp_path, images, "0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1 0.1\n", r"apple_004\.txt:2: duplicate")


def test_yaml_without_names(tmp_path, images) -> None:
    _fails(tmp_path, images, "0 0.5 0.5 0.1 0.1\n", r"data\.yaml: has no 'names:' entry", yaml="nc: 1\n")
