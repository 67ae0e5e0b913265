"""KITTI as TAO reads it: training export layout, label import, inference output (0/1/many lines)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import ImageError, LabelError
from alloop.formats import ImportOptions, export_training_set, read_kitti_detections, read_labels, sniff_format

from .conftest import CLASSES, DATA, assert_same


def _read(path: Path, images, classes=CLASSES, **kw):
    return read_labels(path, format=kw.pop("format", None), images=images, classes=classes, **kw)


def test_kitti_layout(tmp_path, image_root, labeled) -> None:
    out = export_training_set("kitti", labeled[:2], tmp_path / "kitti", image_root=image_root, classes=CLASSES,
                              val=labeled[2:])
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "classes.txt", "dataset_meta.json", "kitti_class_map.json",
        "train/image_2/row_01__apple_001.jpg", "train/image_2/row_01__apple_002.jpg",
        "train/label_2/row_01__apple_001.txt", "train/label_2/row_01__apple_002.txt",
        "val/image_2/apple_004.png", "val/label_2/apple_004.txt",
    ]
    assert json.loads((out / "dataset_meta.json").read_text()) == {"labels": list(CLASSES)}


def test_tao_layout(tmp_path, image_root, labeled) -> None:
    out = export_training_set("kitti", labeled[:2], tmp_path / "kitti", image_root=image_root, classes=CLASSES,
                              val=labeled[2:], layout="tao")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "classes.txt", "dataset_meta.json", "kitti_class_map.json",
        "train/images/row_01__apple_001.jpg", "train/images/row_01__apple_002.jpg",
        "train/labels/row_01__apple_001.txt", "train/labels/row_01__apple_002.txt",
        "val/images/apple_004.png", "val/labels/apple_004.txt",
    ]
    lines = (out / "train/labels/row_01__apple_001.txt").read_text().splitlines()
    assert lines == [
        "apple 0.00 0 0.00 64.00 60.00 224.00 136.80 0.00 0.00 0.00 0.00 0.00 0.00 0.00",
        "leaf 0.00 1 0.00 300.25 200.50 340.25 230.5125 0.00 0.00 0.00 0.00 0.00 0.00 0.00",
        "apple 0.00 0 0.00 0.00 0.00 640.00 480.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00",
    ]
    assert all(len(ln.split()) == 15 for ln in lines)
    assert (out / "train/labels/row_01__apple_002.txt").read_text() == ""  # no objects: empty file
    assert (out / "val/labels/apple_004.txt").read_text() == \
        "leaf 0.50 2 0.00 10.333 20.667 30.50 41.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00\n"
    # Images are linked (or copied), never moved.
    assert (out / "val/images/apple_004.png").read_bytes() == (image_root / "apple_004.png").read_bytes()
    assert (image_root / "apple_004.png").exists()


def test_round_trip(tmp_path, images, image_root, labeled) -> None:
    out = export_training_set("kitti", labeled, tmp_path / "kitti", image_root=image_root, classes=CLASSES)
    assert sniff_format(out / "train") == "kitti"
    got, warnings = _read(out / "train", images)
    assert warnings == []
    assert_same(got.images, labeled, tol=0)


def test_class_names_are_lower_case_and_mapped_back(tmp_path, image_root) -> None:
    classes = ("Green Apple", "leaf")
    anns = [ImageAnnotation("apple_004.png", 320, 240, (Box(1, 2, 3, 4, "Green Apple"),))]
    out = export_training_set("kitti", anns, tmp_path / "k", image_root=image_root, classes=classes)
    assert (out / "train/label_2/apple_004.txt").read_text().startswith("green_apple 0.00 0 ")
    assert (out / "classes.txt").read_text() == "green_apple\nleaf\n"
    assert json.loads((out / "kitti_class_map.json").read_text()) == {"green_apple": "Green Apple", "leaf": "leaf"}
    got, _ = _read(out / "train" / "label_2", {"apple_004.png": (320, 240)}, classes=classes)
    assert got.images[0].boxes[0].label == "Green Apple"


def test_class_names_clashing_in_lower_case(tmp_path, image_root) -> None:
    with pytest.raises(LabelError, match=r"classes 'Apple' and 'apple' both become 'apple' in KITTI"):
        export_training_set("kitti", [], tmp_path / "k", image_root=image_root, classes=("Apple", "apple"))


def test_flattened_names_clash(tmp_path, image_root) -> None:
    (image_root / "row_01__apple_001.jpg").write_bytes(b"x")
    anns = [ImageAnnotation("row_01/apple_001.jpg", 640, 480), ImageAnnotation("row_01__apple_001.jpg", 640, 480)]
    with pytest.raises(LabelError, match=r"both become 'row_01__apple_001' in the export's flat folders"):
        export_training_set("kitti", anns, tmp_path / "k", image_root=image_root, classes=CLASSES)


def test_missing_image_leaves_old_export_untouched(tmp_path, image_root, labeled) -> None:
    out = export_training_set("kitti", labeled, tmp_path / "k", image_root=image_root, classes=CLASSES)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    (image_root / "apple_004.png").unlink()
    with pytest.raises(ImageError, match=r"apple_004\.png: image file is missing"):
        export_training_set("kitti", labeled[:1] + labeled[2:], out, image_root=image_root, classes=CLASSES)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_reexport_replaces_stale_labels(tmp_path, image_root, labeled) -> None:
    out = export_training_set("kitti", labeled, tmp_path / "k", image_root=image_root, classes=CLASSES)
    export_training_set("kitti", labeled[:1], out, image_root=image_root, classes=CLASSES)
    assert sorted(os.listdir(out / "train" / "label_2")) == ["row_01__apple_001.txt"]


def test_real_shaped_labels(images) -> None:
    path = DATA / "kitti"
    assert sniff_format(path) == "kitti"
    got, _ = _read(path, images)
    by = {a.file_name: a.boxes for a in got.images}
    assert by["row_01/apple_001.jpg"] == (Box(64.0, 60.0, 224.0, 136.8, "apple"),)  # 'Apple' -> 'apple'
    assert by["row_01/apple_002.jpg"] == (
        Box(10, 10, 60, 60, "apple", attributes=(("occluded", "1"), ("truncated", "0.5"))),
        Box(300.25, 200.5, 340.25, 230.51, "leaf"),
        Box(587.01, 173.33, 614.12, 200.12, "apple",
            attributes=(("kitti_3d", "-1.58 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59"), ("occluded", "2"))),
    )
    assert by["row_02/apple_003.jpg"] == ()  # empty file: no objects
    assert "apple_004.png" not in by  # no file: not labeled


def test_3d_fields_survive(tmp_path, images, image_root) -> None:
    got, _ = _read(DATA / "kitti", images)
    out = export_training_set("kitti", list(got.images), tmp_path / "k", image_root=image_root, classes=CLASSES)
    line = (out / "train/label_2/row_01__apple_002.txt").read_text().splitlines()[2]
    assert line == "apple 0.00 2 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59"


def test_image_2_without_label_file_is_no_objects(tmp_path, images) -> None:
    # KITTI's own layout (datumaro, CVAT): an image in image_2/ without a label file has no objects.
    for sub in ("image_2", "label_2"):
        (tmp_path / "train" / sub / "row_01").mkdir(parents=True)
    (tmp_path / "train" / "image_2" / "row_01" / "apple_002.jpg").write_bytes(b"x")
    (tmp_path / "train" / "image_2" / "apple_004.png").write_bytes(b"x")
    (tmp_path / "train" / "label_2" / "apple_004.txt").write_text(LINE + "\n")
    (tmp_path / "dataset_meta.json").write_text('{"labels": ["apple", "leaf", "pear"]}')
    assert sniff_format(tmp_path) == "kitti"
    got, _ = _read(tmp_path, images, options=ImportOptions(add_classes=True))
    assert {a.file_name: len(a.boxes) for a in got.images} == {"apple_004.png": 1, "row_01/apple_002.jpg": 0}
    assert got.classes == (*CLASSES, "pear")


# -- TAO inference output: the 0 / 1 / many lines trap ---------------------------------------------

def test_detections_zero_one_many_lines(images) -> None:
    dets = read_kitti_detections(DATA / "tao_inference", classes=CLASSES)
    assert dets["apple_001"] == ()
    assert dets["apple_002"] == (Box(64.12, 60.5, 224.0, 136.8, "apple", 0.913),)
    assert [b.score for b in dets["apple_003"]] == [0.75, 0.052, 0.001]
    assert [b.label for b in dets["apple_003"]] == ["apple", "leaf", "apple"]


def test_detections_keyed_by_project_names(images) -> None:
    dets = read_kitti_detections(DATA / "tao_inference", classes=CLASSES, images=images)
    assert set(dets) == {"row_01/apple_001.jpg", "row_01/apple_002.jpg", "row_02/apple_003.jpg"}
    assert len(dets["row_02/apple_003.jpg"]) == 3


def test_detections_need_the_confidence(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("apple 0.00 0 0.00 1 2 3 4 0 0 0 0 0 0 0\n")
    with pytest.raises(LabelError, match=r"a\.txt:1: has 15 fields, KITTI needs 16 .* confidence\); fix that line"):
        read_kitti_detections(tmp_path, classes=CLASSES)


def test_detections_unknown_class(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("pear 0.00 0 0.00 1 2 3 4 0 0 0 0 0 0 0 0.5\n")
    with pytest.raises(LabelError, match=r"a\.txt:1: class 'pear' is not a project class \(apple, leaf\)"):
        read_kitti_detections(tmp_path, classes=CLASSES)


def test_detections_nan(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("apple 0.00 0 0.00 nan 2 3 4 0 0 0 0 0 0 0 0.5\n")
    with pytest.raises(LabelError, match=r"a\.txt:1: non-finite value"):
        read_kitti_detections(tmp_path, classes=CLASSES)


# -- bad label input ------------------------------------------------------------------------------

def _fails(tmp_path, images, files: dict[str, str | bytes], match: str) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    for name, text in files.items():
        (labels / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(LabelError, match=match) as err:
        _read(tmp_path, images, format="kitti")
    assert str(err.value).startswith(str(tmp_path)) and "\n" not in str(err.value)


LINE = "apple 0.00 0 0.00 1.00 2.00 30.00 40.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00"


def test_wrong_field_count(tmp_path, images) -> None:
    _fails(tmp_path, images, {"apple_004.txt": f"{LINE}\napple 1 2 3\n"}, r"apple_004\.txt:2: has 4 fields, KITTI needs 15")


def test_confidence_in_labels(tmp_path, images) -> None:
    _fails(tmp_path, images, {"apple_004.txt": LINE + " 0.9\n"},
           r"apple_004\.txt:1: has 16 fields \(a confidence 0\.9\): this is detector output")


def test_score_column_in_labels_is_refused(tmp_path, images) -> None:
    # Issue 16: a 16th field that varies is a score column (detector output), whatever else is in the file.
    _fails(tmp_path, images, {"apple_004.txt": f"{LINE} 1.0\n", "row_01__apple_001.txt": f"{LINE} 0.42\n"},
           r"row_01__apple_001\.txt:1: has a 16th field 0\.42 where .*apple_004\.txt:1 has 1: a confidence "
           r"column, so this is detector output")


DATUMARO_LINE = "apple 0.0 0 -1 1.0 2.0 30.0 40.0 -1 -1 -1 -1 -1 -1 -1 1.0"  # as datumaro writes ground truth


def test_constant_16th_field_on_ground_truth_is_accepted(tmp_path, images) -> None:
    # Issue 16, item 1: datumaro (so CVAT's KITTI export) writes 1.0 as a 16th field on every label line,
    # and -1 placeholders for alpha and the 3-D fields, which must not become a kitti_3d attribute.
    labels = tmp_path / "label_2"
    labels.mkdir()
    (labels / "apple_004.txt").write_text(f"{DATUMARO_LINE}\n{DATUMARO_LINE.replace('1.0 2.0', '5.0 6.0')}\n")
    got, warnings = _read(tmp_path, images, format="kitti")
    assert got.images[0].boxes == (Box(1, 2, 30, 40, "apple"), Box(5, 6, 30, 40, "apple"))
    assert warnings == []


def test_bom_is_not_part_of_the_class_name(tmp_path, images) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "apple_004.txt").write_bytes(b"\xef\xbb\xbf" + LINE.encode() + b"\n")
    assert sniff_format(tmp_path) == "kitti"
    got, _ = _read(tmp_path, images, format="kitti")
    assert got.images[0].boxes[0].label == "apple"


def test_kitti_dontcare_placeholders_are_dropped(tmp_path, images) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "apple_004.txt").write_text("apple 0.00 0 -10 1 2 30 40 -1 -1 -1 -1000 -1000 -1000 -10\n")
    got, _ = _read(tmp_path, images, format="kitti")
    assert got.images[0].boxes == (Box(1, 2, 30, 40, "apple"),)


def test_not_a_number(tmp_path, images) -> None:
    _fails(tmp_path, images, {"apple_004.txt": LINE.replace("30.00", "x30")}, r"field 'x30' is not a number")


def test_bad_occlusion(tmp_path, images) -> None:
    _fails(tmp_path, images, {"apple_004.txt": LINE.replace(" 0 0.00", " 7 0.00", 1)}, r"occlusion '7' must be 0, 1, 2 or 3")


def test_negative_size(tmp_path, images) -> None:
    _fails(tmp_path, images, {"apple_004.txt": LINE.replace("30.00", "0.50")}, r"apple_004\.txt:1: box .* non-positive")


def test_nan(tmp_path, images) -> None:
    _fails(tmp_path, images, {"apple_004.txt": LINE.replace("30.00", "nan")}, r"non-finite coordinate")


def test_outside(tmp_path, images) -> None:
    _fails(tmp_path, images, {"apple_004.txt": LINE.replace("40.00", "400.00")}, r"lies outside the 320x240 image")


def test_unknown_image(tmp_path, images) -> None:
    _fails(tmp_path, images, {"pear.txt": LINE}, r"image 'pear' is not in the project")


def test_unknown_class(tmp_path, images) -> None:
    _fails(tmp_path, images, {"apple_004.txt": LINE.replace("apple", "pear", 1)},
           r"unknown class name\(s\) 'pear' \(first at .*apple_004\.txt:1\); the project knows 'apple', 'leaf'")


def test_duplicate(tmp_path, images) -> None:
    _fails(tmp_path, images, {"apple_004.txt": f"{LINE}\n{LINE}\n"}, r"apple_004\.txt:2: duplicate of an earlier")


def test_not_utf8(tmp_path, images) -> None:
    _fails(tmp_path, images, {"apple_004.txt": b"\xffpple 0 0 0"}, r"not UTF-8 text")


def test_no_label_files(tmp_path, images) -> None:
    with pytest.raises(LabelError, match=r"no \.txt label files found"):
        _read(tmp_path, images, format="kitti")
