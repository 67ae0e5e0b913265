"""COCO: training-set export -> import round trip, batch export, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alloop.boxes import Box
from alloop.errors import LabelError
from alloop.formats import BatchItem, ImportOptions, export_batch, export_training_set, read_labels

from .conftest import CLASSES, assert_same


def _read(path: Path, images, **kw):
    return read_labels(path, format=kw.pop("format", None), images=images, classes=CLASSES, **kw)


def _write(tmp_path: Path, doc, name: str = "labels.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _doc(annotations=None, images=None, categories=None) -> dict:
    return {
        "images": images if images is not None else [
            {"id": 1, "file_name": "row_01/apple_001.jpg", "width": 640, "height": 480},
            {"id": 2, "file_name": "apple_004.png", "width": 320, "height": 240},
        ],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0},
        ],
        "categories": categories if categories is not None else [
            {"id": 1, "name": "apple", "supercategory": ""}, {"id": 2, "name": "leaf", "supercategory": ""},
        ],
    }


def test_round_trip(tmp_path, images, image_root, labeled) -> None:
    path = export_training_set("coco", labeled, tmp_path / "out", image_root=image_root, classes=CLASSES)
    assert path == tmp_path / "out" / "annotations" / "instances_train.json"  # datumaro's COCO layout
    assert (tmp_path / "out/images/train/row_01/apple_001.jpg").read_bytes() == \
        (image_root / "row_01/apple_001.jpg").read_bytes()
    got, warnings = _read(path, images)
    assert warnings == []
    assert got.classes == CLASSES
    assert_same(got.images, labeled)


def test_round_trip_with_val_split(tmp_path, images, image_root, labeled) -> None:
    export_training_set("coco", labeled[:1], tmp_path / "out", image_root=image_root, classes=CLASSES, val=labeled[1:])
    got, _ = _read(tmp_path / "out" / "annotations" / "instances_val.json", images)
    assert_same(got.images, labeled[1:])


def test_image_without_annotations_means_no_objects(tmp_path, images) -> None:
    got, _ = _read(_write(tmp_path, _doc()), images)
    by = {a.file_name: a for a in got.images}
    assert by["apple_004.png"].boxes == ()
    assert by["row_01/apple_001.jpg"].boxes == (Box(10, 20, 40, 60, "apple"),)


def test_crowd_and_cvat_attributes_are_kept(tmp_path, images) -> None:
    doc = _doc(annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 1},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "iscrowd": 0,
         "attributes": {"occluded": True, "rotation": 0.0, "track_id": 3, "ripeness": "green"}},
    ])
    got, _ = _read(_write(tmp_path, doc), images)
    boxes = got.images[0].boxes
    assert boxes[0].attributes == (("iscrowd", "1"),)
    assert boxes[1].attributes == (("occluded", "1"), ("ripeness", "green"))


def test_batch_export(tmp_path) -> None:
    items = [
        BatchItem("row_01/apple_001.jpg", tmp_path / "row_01/apple_001.jpg", 640, 480,
                  (Box(1, 2, 30, 40, "apple", 0.9),), score=0.7),
        BatchItem("apple_004.png", tmp_path / "apple_004.png", 320, 240),
    ]
    path = export_batch("coco", items, tmp_path / "batch", classes=CLASSES)
    doc = json.loads(path.read_text())
    assert [i["file_name"] for i in doc["images"]] == ["row_01/apple_001.jpg", "apple_004.png"]
    assert doc["annotations"] == []
    assert [c["name"] for c in doc["categories"]] == list(CLASSES)
    preds = json.loads((tmp_path / "batch" / "predictions.json").read_text())
    assert preds == [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 29, 38], "score": 0.9}]


def test_predictions_load_in_pycocotools(tmp_path) -> None:
    # Issue 16, item 6: predictions.json must be a results file COCO's own tools load.
    from pycocotools.coco import COCO

    items = [BatchItem("row_01/apple_001.jpg", tmp_path / "a.jpg", 640, 480,
                       (Box(1, 2, 30, 40, "apple", 0.9), Box(5.5, 6, 50, 60.25, "leaf", 0.4)))]
    batch = export_batch("coco", items, tmp_path / "batch", classes=CLASSES)
    gt = COCO(str(batch))
    res = gt.loadRes(str(tmp_path / "batch" / "predictions.json"))
    assert sorted(a["bbox"] for a in res.dataset["annotations"]) == [[1, 2, 29, 38], [5.5, 6, 44.5, 54.25]]


def test_no_model_boxes_no_predictions_file(tmp_path) -> None:
    # Issue 16, item 6: an empty results list makes pycocotools' loadRes raise IndexError, so a batch
    # without model boxes (the initial selection) gets no predictions.json, and a stale one goes.
    from pycocotools.coco import COCO

    with pytest.raises(IndexError):  # why: the file alloop used to write
        COCO(str(export_batch("coco", [], tmp_path / "probe", classes=CLASSES))).loadRes([])
    out = tmp_path / "batch"
    out.mkdir()
    (out / "predictions.json").write_text("[]\n")
    export_batch("coco", [BatchItem("apple_004.png", tmp_path / "b.png", 320, 240)], out, classes=CLASSES)
    assert sorted(p.name for p in out.iterdir()) == ["batch.json"]


def test_bom_file_is_sniffed(tmp_path, images) -> None:
    # Issue 19, item 8: a COCO file saved with a UTF-8 BOM (Windows tools) was not recognised.
    path = tmp_path / "labels.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_doc()).encode())
    got, _ = _read(path, images)
    assert got.images[0].boxes == (Box(10, 20, 40, 60, "apple"),)


def test_json_naming_a_class_images_is_not_coco(tmp_path) -> None:
    from alloop.formats import sniff_format

    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("images 0 0 0 1 2 30 40 0 0 0 0 0 0 0\n")
    (tmp_path / "kitti_class_map.json").write_text('{"images": "images"}')  # a KITTI export's class map
    assert sniff_format(tmp_path) == "kitti"


def test_dataset_folder(tmp_path, images) -> None:
    # Issue 16, item 4: --format coco on a folder said "Is a directory".
    (tmp_path / "annotations").mkdir()
    _write(tmp_path / "annotations", _doc(images=[_doc()["images"][0]]), "instances_train.json")
    _write(tmp_path / "annotations", _doc(images=[_doc()["images"][1]], annotations=[]), "instances_val.json")
    got, _ = _read(tmp_path, images, format="coco")
    assert {a.file_name: len(a.boxes) for a in got.images} == {"row_01/apple_001.jpg": 1, "apple_004.png": 0}


def test_folder_without_coco_files(tmp_path, images) -> None:
    with pytest.raises(LabelError, match=r"a folder with no annotations/instances_\*\.json and no COCO \.json"):
        _read(tmp_path, images, format="coco")


def test_unlabeled_batch_file_is_refused(tmp_path, images) -> None:
    items = [BatchItem("apple_004.png", tmp_path / "apple_004.png", 320, 240)]
    path = export_batch("coco", items, tmp_path / "batch", classes=CLASSES)
    with pytest.raises(LabelError, match="unlabeled batch alloop exported"):
        _read(path, images)


def test_added_classes(tmp_path, images) -> None:
    doc = _doc(
        annotations=[{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]}],
        categories=[{"id": 1, "name": "apple"}, {"id": 3, "name": "pear"}],
    )
    got, warnings = _read(_write(tmp_path, doc), images, options=ImportOptions(add_classes=True))
    assert got.classes == ("apple", "leaf", "pear")
    assert "added class(es) pear" in warnings[0]


def test_clip_boxes(tmp_path, images) -> None:
    doc = _doc(annotations=[
        {"id": 1, "image_id": 2, "category_id": 1, "bbox": [300, 200, 40, 60]},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [400, 10, 5, 5]},
    ])
    got, warnings = _read(_write(tmp_path, doc), images, options=ImportOptions(clip_boxes=True))
    img = {a.file_name: a for a in got.images}["apple_004.png"]
    assert img.boxes == (Box(300, 200, 320, 240, "apple"),)
    assert any("clipped" in w for w in warnings) and any("dropped" in w for w in warnings)


def test_allow_duplicates_drops_them(tmp_path, images) -> None:
    doc = _doc(annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]},
    ])
    got, warnings = _read(_write(tmp_path, doc), images, options=ImportOptions(allow_duplicates=True))
    assert len(got.images[0].boxes) == 1
    assert warnings == [f"{tmp_path / 'labels.json'}: 1 duplicate box(es) dropped (--allow-duplicates); "
                        "first: image 'row_01/apple_001.jpg' annotation id 2"]


# -- bad input: one test each, asserting the message --------------------------------------------

def _fails(tmp_path, images, doc, match: str, **kw) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(LabelError, match=match) as err:
        _read(path, images, format="coco", **kw)
    assert str(err.value).startswith(str(path))
    assert "\n" not in str(err.value)


def test_huge_integer_is_an_error_not_a_traceback(tmp_path, images) -> None:
    # Issue 19, item 6: a 1e400-sized integer in bbox raised OverflowError.
    big = "1" + "0" * 400
    text = json.dumps(_doc()).replace('"bbox": [10, 20, 30, 40]', f'"bbox": [{big}, 1, 2, 2]')
    _fails(tmp_path, images, text, r"annotation id 1: bbox value is a 401-digit integer, too large for a pixel")


def test_malformed_json(tmp_path, images) -> None:
    _fails(tmp_path, images, '{"images": [', r"malformed JSON at line 1 column 13")


def test_empty_file(tmp_path, images) -> None:
    _fails(tmp_path, images, "", r"file is empty, not JSON")


def test_not_utf8(tmp_path, images) -> None:
    path = tmp_path / "labels.json"
    path.write_bytes(b'{"images": "\xff\xfe"}')
    with pytest.raises(LabelError, match="not UTF-8"):
        _read(path, images, format="coco")


def test_top_level_list(tmp_path, images) -> None:
    _fails(tmp_path, images, [], r"found a JSON list; pick the right --format")


def test_missing_annotations_list(tmp_path, images) -> None:
    doc = _doc()
    del doc["annotations"]
    _fails(tmp_path, images, doc, r"has no 'annotations' list")


def test_image_not_in_project(tmp_path, images) -> None:
    doc = _doc(images=[{"id": 1, "file_name": "pear.jpg", "width": 640, "height": 480}], annotations=[])
    _fails(tmp_path, images, doc, r"image 'pear\.jpg' \(id 1\): image 'pear\.jpg' is not in the project")


def test_path_escapes_root(tmp_path, images) -> None:
    doc = _doc(images=[{"id": 1, "file_name": "../apple_004.png", "width": 320, "height": 240}], annotations=[])
    _fails(tmp_path, images, doc, r"path escapes the image root")


def test_image_size_mismatch(tmp_path, images) -> None:
    doc = _doc(images=[{"id": 1, "file_name": "apple_004.png", "width": 640, "height": 480}], annotations=[])
    _fails(tmp_path, images, doc, r"is 640x480 in the label file but 320x240 in the project")


def test_exif_rotated_size(tmp_path, images) -> None:
    doc = _doc(images=[{"id": 1, "file_name": "apple_004.png", "width": 240, "height": 320}], annotations=[])
    _fails(tmp_path, images, doc, r"EXIF rotation")


def test_negative_size_box(tmp_path, images) -> None:
    doc = _doc(annotations=[{"id": 7, "image_id": 1, "category_id": 1, "bbox": [10, 20, -5, 40]}])
    _fails(tmp_path, images, doc, r"annotation id 7: box .* non-positive width or height")


def test_nan_box(tmp_path, images) -> None:
    doc = '{"images": [{"id": 1, "file_name": "apple_004.png"}], "categories": [{"id": 1, "name": "apple"}],' \
          ' "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [NaN, 1, 2, 3]}]}'
    _fails(tmp_path, images, doc, r"annotation id 7: box .* non-finite coordinate")


def test_box_as_strings(tmp_path, images) -> None:
    doc = _doc(annotations=[{"id": 7, "image_id": 1, "category_id": 1, "bbox": ["10", 20, 5, 40]}])
    _fails(tmp_path, images, doc, r"annotation id 7: bbox value must be a number, got '10'")


def test_box_outside_image(tmp_path, images) -> None:
    doc = _doc(annotations=[{"id": 7, "image_id": 2, "category_id": 1, "bbox": [300, 200, 40, 60]}])
    _fails(tmp_path, images, doc, r"lies outside the 320x240 image; fix the annotation or pass --clip-boxes")


def test_unknown_class(tmp_path, images) -> None:
    doc = _doc(
        annotations=[{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]}],
        categories=[{"id": 1, "name": "apple"}, {"id": 3, "name": "pear"}],
    )
    _fails(tmp_path, images, doc, r"unknown class name\(s\) 'pear' \(first at .*\); the project knows 'apple', 'leaf'; .*--add-classes")


def test_duplicate_annotation(tmp_path, images) -> None:
    doc = _doc(annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]},
    ])
    _fails(tmp_path, images, doc, r"annotation id 2: duplicate of an earlier 'apple' box.*--allow-duplicates")


def test_duplicate_annotation_id(tmp_path, images) -> None:
    doc = _doc(annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]},
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4]},
    ])
    _fails(tmp_path, images, doc, r"annotation id 1 is used twice")


def test_image_listed_twice(tmp_path, images) -> None:
    doc = _doc(images=[
        {"id": 1, "file_name": "apple_004.png", "width": 320, "height": 240},
        {"id": 2, "file_name": "/data/upload/1/1a2b3c4d-apple_004.png", "width": 320, "height": 240},
    ], annotations=[])
    _fails(tmp_path, images, doc, r"image 'apple_004\.png' is labeled twice in this file")


def test_unknown_image_id(tmp_path, images) -> None:
    doc = _doc(annotations=[{"id": 3, "image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4]}])
    _fails(tmp_path, images, doc, r"annotation id 3: image_id 99 is not in the file's images list")


def test_unknown_category_id(tmp_path, images) -> None:
    doc = _doc(annotations=[{"id": 3, "image_id": 1, "category_id": 9, "bbox": [1, 2, 3, 4]}])
    _fails(tmp_path, images, doc, r"category_id 9 is not in the categories list")


def test_segmentation_without_bbox(tmp_path, images) -> None:
    doc = _doc(annotations=[{"id": 3, "image_id": 1, "category_id": 1, "segmentation": [[1, 2, 3, 4, 5, 6]]}])
    _fails(tmp_path, images, doc, r"has no bbox \(segmentation only\?\)")


def test_rotated_cvat_box(tmp_path, images) -> None:
    doc = _doc(annotations=[{"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4],
                             "attributes": {"occluded": False, "rotation": 30.0}}])
    _fails(tmp_path, images, doc, r"box is rotated by 30\.0 degrees")


def test_duplicate_category_name(tmp_path, images) -> None:
    doc = _doc(categories=[{"id": 1, "name": "apple"}, {"id": 2, "name": "apple"}])
    _fails(tmp_path, images, doc, r"category name 'apple' is used twice")


def test_all_or_nothing(tmp_path, images) -> None:
    """One bad box among good ones: nothing is returned."""
    doc = _doc(annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [10, 20, 0, 40]},
    ])
    _fails(tmp_path, images, doc, r"annotation id 2")
