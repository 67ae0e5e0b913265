"""Label Studio: tasks with predictions out, its JSON export in."""

from __future__ import annotations

import copy
import json
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import LabelError
from alloop.formats import BatchItem, export_batch, read_labels, sniff_format
from alloop.formats.labelstudio import labeling_config

from .conftest import CLASSES, DATA, assert_same


def _read(path: Path, images, **kw):
    return read_labels(path, format=kw.pop("format", "labelstudio"), images=images, classes=CLASSES, **kw)


def _items(image_root: Path, labeled: list[ImageAnnotation]) -> list[BatchItem]:
    return [
        BatchItem(a.file_name, image_root / a.file_name, a.width, a.height,
                  tuple(Box(b.x0, b.y0, b.x1, b.y1, b.label, 0.5 + i / 10) for i, b in enumerate(a.boxes)),
                  score=0.25)
        for a in labeled
    ]


def _as_label_studio_export(tasks: list[dict], *, keep_alloop_file: bool = True) -> list[dict]:
    """What Label Studio exports after an annotator accepts every prediction as is."""
    out = []
    for tid, task in enumerate(tasks, start=1):
        data = dict(task["data"])
        if not keep_alloop_file:
            del data["alloop_file"]
        results = copy.deepcopy(task["predictions"][0]["result"])
        for r in results:
            r.pop("score", None)
            r["origin"] = "prediction"
        out.append({
            "id": tid,
            "data": data,
            "annotations": [{"id": 100 + tid, "result": results, "was_cancelled": False, "ground_truth": False,
                             "created_at": "2024-05-02T10:00:00Z", "updated_at": "2024-05-02T10:00:00Z"}],
            "predictions": task["predictions"],
        })
    return out


def test_export_shape(tmp_path, image_root, labeled, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(tmp_path))
    path = export_batch("labelstudio", _items(image_root, labeled), tmp_path / "b", classes=CLASSES,
                        model_version="iteration-2")
    tasks = json.loads(path.read_text())
    first = tasks[0]
    assert first["data"] == {"image": "/data/local-files/?d=images/row_01/apple_001.jpg",
                             "alloop_file": "row_01/apple_001.jpg", "alloop_score": 0.25}
    pred = first["predictions"][0]
    assert pred["model_version"] == "iteration-2"
    assert pred["score"] == pytest.approx(0.6)
    r = pred["result"][0]
    assert {k: r[k] for k in ("type", "from_name", "to_name", "original_width", "original_height", "image_rotation")} \
        == {"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 640,
            "original_height": 480, "image_rotation": 0}
    assert r["value"] == {"x": 10.0, "y": 12.5, "width": 25.0, "height": pytest.approx(16.0), "rotation": 0,
                          "rectanglelabels": ["apple"]}
    assert r["score"] == 0.5
    assert tasks[1]["predictions"] == [{"model_version": "iteration-2", "result": []}]
    # The labeling config names match the results' from_name/to_name and lists the classes.
    config = ET.fromstring((tmp_path / "b" / "labeling_config.xml").read_text())
    assert config.find("Image").get("name") == "image" and config.find("Image").get("value") == "$image"
    rl = config.find("RectangleLabels")
    assert (rl.get("name"), rl.get("toName")) == ("label", "image")
    assert [lab.get("value") for lab in rl.findall("Label")] == list(CLASSES)
    readme = (tmp_path / "b" / "README.txt").read_text()
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={tmp_path} " in readme
    assert f"Local Storage with the absolute path {image_root} " in readme


def test_export_without_model_has_no_predictions(tmp_path, image_root, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(tmp_path))
    items = [BatchItem("apple_004.png", image_root / "apple_004.png", 320, 240)]
    tasks = json.loads(export_batch("labelstudio", items, tmp_path / "b", classes=CLASSES).read_text())
    assert tasks == [{"data": {"image": "/data/local-files/?d=images/apple_004.png", "alloop_file": "apple_004.png"}}]


def test_local_file_urls_of_two_projects_never_collide(tmp_path, monkeypatch) -> None:
    """Two projects whose image folders are both called ``images`` (issue 17, item 6)."""
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    urls = []
    for name in ("farm_a", "farm_b"):
        root = tmp_path / name / "images"
        path = export_batch("labelstudio", [BatchItem("a.jpg", root / "a.jpg", 10, 10)], tmp_path / name / "b",
                            classes=CLASSES)
        urls.append(json.loads(path.read_text())[0]["data"]["image"])
    # Without the variable the document root is Label Studio's default, /: the whole path is in the URL.
    assert urls == [f"/data/local-files/?d={str(tmp_path / n / 'images' / 'a.jpg').lstrip('/')}"
                    for n in ("farm_a", "farm_b")]
    readme = (tmp_path / "farm_a" / "b" / "README.txt").read_text()
    assert "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=/ " in readme


def test_images_outside_the_document_root_fall_back_to_slash(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(tmp_path / "elsewhere"))
    root = tmp_path / "images"
    path = export_batch("labelstudio", [BatchItem("a.jpg", root / "a.jpg", 10, 10)], tmp_path / "b", classes=CLASSES)
    assert json.loads(path.read_text())[0]["data"]["image"] == "/data/local-files/?d=" + str(root / "a.jpg").lstrip("/")
    assert "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=/ " in (tmp_path / "b" / "README.txt").read_text()


@pytest.mark.parametrize("prefix", ["s3://bucket/orchard", "gs://bucket/orchard/"])
def test_cloud_prefixes_are_not_escaped(tmp_path, image_root, prefix) -> None:
    items = [BatchItem("row 1/a+b.jpg", image_root / "row 1/a+b.jpg", 10, 10)]
    path = export_batch("labelstudio", items, tmp_path / "b", classes=CLASSES, image_url_prefix=prefix)
    assert json.loads(path.read_text())[0]["data"]["image"] == prefix.rstrip("/") + "/row 1/a+b.jpg"


def test_no_classes_never_gives_an_empty_label_list(tmp_path, image_root) -> None:
    """Issue 17 item 4: init without --classes wrote a labeling config nobody could label with."""
    items = [BatchItem("a.jpg", image_root / "a.jpg", 10, 10)]
    export_batch("labelstudio", items, tmp_path / "b", classes=())
    assert not (tmp_path / "b" / "labeling_config.xml").exists()
    assert "no classes yet" in (tmp_path / "b" / "README.txt").read_text()
    with pytest.raises(LabelError, match="no classes.*--classes apple,leaf"):
        labeling_config(())


def test_export_with_url_prefix(tmp_path, image_root) -> None:
    items = [BatchItem("a b/c+d.jpg", image_root / "a b/c+d.jpg", 10, 10)]
    path = export_batch("labelstudio", items, tmp_path / "b", classes=CLASSES, image_url_prefix="http://host:8081/")
    assert json.loads(path.read_text())[0]["data"]["image"] == "http://host:8081/a%20b/c%2Bd.jpg"
    assert "python -m http.server" in (tmp_path / "b" / "README.txt").read_text()


@pytest.mark.parametrize("prefix", [None, "http://localhost:8081/"])
@pytest.mark.parametrize("keep_alloop_file", [True, False])
def test_round_trip(tmp_path, images, image_root, labeled, prefix, keep_alloop_file) -> None:
    path = export_batch("labelstudio", _items(image_root, labeled), tmp_path / "b", classes=CLASSES,
                        model_version="m", image_url_prefix=prefix)
    export = tmp_path / "export.json"
    tasks = json.loads(path.read_text())
    export.write_text(json.dumps(_as_label_studio_export(tasks, keep_alloop_file=keep_alloop_file)))
    assert sniff_format(export) == "labelstudio"
    got, warnings = _read(export, images, format=None)
    assert warnings == []
    assert_same(got.images, labeled, tol=1e-9, attributes=False)  # Label Studio boxes carry no attributes


def test_real_shaped_export(images) -> None:
    got, warnings = _read(DATA / "labelstudio" / "export.json", images)
    by = {a.file_name: a for a in got.images}
    assert set(by) == {"row_01/apple_001.jpg", "row_01/apple_002.jpg", "row_02/apple_003.jpg"}
    assert by["row_01/apple_001.jpg"].boxes == (Box(64.0, 60.0, 224.0, 156.0, "apple"),)
    # The cancelled annotation is ignored; the submitted one is used.
    assert by["row_01/apple_002.jpg"].boxes == (Box(320.0, 240.0, 400.0, 288.0, "leaf"), Box(0, 0, 640, 480, "apple"))
    assert by["row_02/apple_003.jpg"].boxes == ()  # result [] = no objects
    assert any("1 task(s) have no annotation and were left out as not labeled (task ids 4)" in w for w in warnings)


def test_real_shaped_json_min(images) -> None:
    got, _ = _read(DATA / "labelstudio" / "export_min.json", images)
    by = {a.file_name: a for a in got.images}
    assert by["row_01/apple_001.jpg"].boxes == (Box(64.0, 60.0, 224.0, 156.0, "apple"),)
    assert by["row_02/apple_003.jpg"].boxes == ()


def _task(result=None, *, annotations=None, image="/data/local-files/?d=apple_004.png", **extra) -> list[dict]:
    if annotations is None:
        annotations = [{"id": 9, "result": result if result is not None else [], "was_cancelled": False}]
    return [{"id": 5, "data": {"image": image}, "annotations": annotations, **extra}]


def _rect(**value) -> dict:
    v = {"x": 10.0, "y": 10.0, "width": 20.0, "height": 20.0, "rotation": 0, "rectanglelabels": ["apple"]}
    v.update(value)
    return {"id": "r1", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "original_width": 320, "original_height": 240, "image_rotation": 0, "value": v}


def test_most_recent_annotation_wins(tmp_path, images) -> None:
    older = {"id": 1, "result": [_rect(x=1.0)], "updated_at": "2024-01-01T00:00:00Z"}
    newer = {"id": 2, "result": [_rect(x=2.0)], "updated_at": "2024-02-01T00:00:00Z"}
    path = tmp_path / "e.json"
    path.write_text(json.dumps(_task(annotations=[newer, older])))
    got, warnings = _read(path, images)
    assert got.images[0].boxes[0].x0 == pytest.approx(6.4)
    assert "used the most recently updated one (id 2)" in warnings[0]


def test_ground_truth_annotation_wins(tmp_path, images) -> None:
    gt = {"id": 1, "result": [_rect(x=1.0)], "updated_at": "2024-01-01T00:00:00Z", "ground_truth": True}
    newer = {"id": 2, "result": [_rect(x=2.0)], "updated_at": "2024-02-01T00:00:00Z"}
    path = tmp_path / "e.json"
    path.write_text(json.dumps(_task(annotations=[newer, gt])))
    got, warnings = _read(path, images)
    assert got.images[0].boxes[0].x0 == pytest.approx(3.2)
    assert "marked ground truth" in warnings[0]


def test_all_cancelled_task_is_left_out(tmp_path, images) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps(_task(annotations=[{"id": 1, "result": [], "was_cancelled": True}])))
    got, warnings = _read(path, images)
    assert got.images == ()
    assert "skipped by the annotator" in warnings[0]


def test_predictions_are_not_labels(tmp_path, images) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps(_task(annotations=[], predictions=[{"result": [_rect()]}])))
    got, warnings = _read(path, images)
    assert got.images == () and "not labeled" in warnings[0]


# -- bad input ------------------------------------------------------------------------------------

def _fails(tmp_path, images, tasks, match: str) -> None:
    path = tmp_path / "export.json"
    path.write_text(tasks if isinstance(tasks, str) else json.dumps(tasks))
    with pytest.raises(LabelError, match=match) as err:
        _read(path, images)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_malformed(tmp_path, images) -> None:
    _fails(tmp_path, images, '[{"data": {"image": "a.jpg"},]', r"malformed JSON at line 1 column 30")


def test_single_task_object(tmp_path, images) -> None:
    _fails(tmp_path, images, {"data": {"image": "x"}}, r"holds one object, not a list of tasks")


def test_rotated_box(tmp_path, images) -> None:
    _fails(tmp_path, images, _task([_rect(rotation=15)]), r"task id 5 .* box is rotated by 15 degrees")


def test_rotated_image(tmp_path, images) -> None:
    _fails(tmp_path, images, _task([{**_rect(), "image_rotation": 90}]), r"the image was rotated by 90 degrees")


def test_polygon(tmp_path, images) -> None:
    poly = {"type": "polygonlabels", "value": {"points": [[1, 2], [3, 4], [5, 1]], "polygonlabels": ["apple"]}}
    _fails(tmp_path, images, _task([poly]), r"has a polygonlabels region; alloop imports boxes only")


def test_two_labels_on_one_box(tmp_path, images) -> None:
    _fails(tmp_path, images, _task([_rect(rectanglelabels=["apple", "leaf"])]), r"exactly one class")


def test_unknown_image(tmp_path, images) -> None:
    _fails(tmp_path, images, _task([_rect()], image="/data/upload/1/1a2b3c4d-pear.jpg"),
           r"task id 5 .*image '/data/upload/1/1a2b3c4d-pear\.jpg' is not in the project")


def test_traversal(tmp_path, images) -> None:
    _fails(tmp_path, images, _task([_rect()], image="/data/local-files/?d=../../etc/passwd"),
           r"path escapes the image root")


def test_outside_image(tmp_path, images) -> None:
    _fails(tmp_path, images, _task([_rect(x=95.0)]), r"lies outside the 320x240 image")


def test_negative_size(tmp_path, images) -> None:
    _fails(tmp_path, images, _task([_rect(width=-3.0)]), r"non-positive width or height")


def test_nan(tmp_path, images) -> None:
    _fails(tmp_path, images, json.dumps(_task([_rect()])).replace('"x": 10.0', '"x": NaN'), r"non-finite coordinate")


def test_unknown_class(tmp_path, images) -> None:
    _fails(tmp_path, images, _task([_rect(rectanglelabels=["pear"])]),
           r"unknown class name\(s\) 'pear' \(first at .*\); the project knows 'apple', 'leaf'; .*--add-classes")


def test_size_mismatch(tmp_path, images) -> None:
    _fails(tmp_path, images, _task([{**_rect(), "original_width": 640, "original_height": 480}]),
           r"is 640x480 in the label file but 320x240 in the project")


def test_duplicate_box(tmp_path, images) -> None:
    _fails(tmp_path, images, _task([_rect(), {**_rect(), "id": "r2"}]), r"duplicate of an earlier 'apple' box")


def test_task_twice(tmp_path, images) -> None:
    tasks = _task([_rect()]) + [{**_task([])[0], "id": 6}]
    _fails(tmp_path, images, tasks, r"task id 6 .* is labeled twice in this file")


def test_no_image_field(tmp_path, images) -> None:
    _fails(tmp_path, images, [{"id": 1, "data": {"text": "hi", "n": 3}, "annotations": []}],
           r"cannot tell which task data field is the image \(keys: text, n\)")


def test_alloop_task_file_is_refused(tmp_path, image_root, labeled, images) -> None:
    path = export_batch("labelstudio", _items(image_root, labeled), tmp_path / "b", classes=CLASSES)
    with pytest.raises(LabelError, match=r"tasks\.json: is the task file alloop exported, not a Label Studio export"):
        _read(path, images, format=None)


# -- Label Studio's other exports, as a real Label Studio 1.23 wrote them (issue 17, items 2 and 3) ------------

LS123 = DATA / "labelstudio" / "ls-1.23"
LS123_IMAGES = {"row_01/a.jpg": (100, 80), "row_02/a.jpg": (100, 80), "row_01/b.jpg": (100, 80),
                "row_02/empty.jpg": (100, 80)}


def _read_ls123(path: Path, image_root: Path = LS123 / "images"):
    """{file_name: boxes} (coordinates to 1e-6 px: YOLO's normalised numbers carry float noise) and the warnings."""
    got, warnings = read_labels(path, format=None, images=LS123_IMAGES, classes=("apple", "leaf"), image_root=image_root)
    return {a.file_name: tuple(Box(*(round(c, 6) for c in (b.x0, b.y0, b.x1, b.y1)), b.label) for b in a.boxes)
            for a in got.images}, warnings


@pytest.mark.parametrize("export", ["COCO.zip", "COCO_WITH_IMAGES.zip", "VOC.zip", "YOLO_WITH_IMAGES.zip", "JSON_MIN.json"])
def test_every_label_studio_export_gives_what_json_gives(export) -> None:
    assert sniff_format(LS123 / export) == "labelstudio"
    want, _ = _read_ls123(LS123 / "JSON.json")
    assert want["row_02/a.jpg"] == (Box(50, 40, 60, 48, "leaf"), Box(0, 0, 100, 80, "apple"))
    got, warnings = _read_ls123(LS123 / export)
    if export == "VOC.zip":
        # No XML for an image without boxes: it stays queued, and the warning says why and what to do.
        assert got == {k: v for k, v in want.items() if k != "row_02/empty.jpg"}
        assert warnings == [(f"{LS123 / export}: 1 image(s) have no XML (Label Studio's VOC export writes none for an "
                             "image without boxes), so they stay waiting for labels: empty.jpg; import the JSON export "
                             "to record them as having no objects")]
    else:
        assert got == want and warnings == []


@pytest.mark.parametrize("export", ["COCO.zip", "VOC.zip", "YOLO_WITH_IMAGES.zip"])
def test_unzipped_exports_read_the_same(tmp_path, export) -> None:
    with zipfile.ZipFile(LS123 / export) as z:
        z.extractall(tmp_path / "x")
    target = tmp_path / "x" / "result.json" if export == "COCO.zip" else tmp_path / "x"
    got, warnings = _read_ls123(target)
    want, want_warnings = _read_ls123(LS123 / export)
    assert got == want and [w.replace(str(target), "X") for w in warnings] == \
        [w.replace(str(LS123 / export), "X") for w in want_warnings]


def test_yolo_without_images_names_the_export_to_use() -> None:
    """Two images called a.jpg: Label Studio's plain YOLO zip has one labels/a.txt for both."""
    with pytest.raises(LabelError, match=r"YOLO.zip:labels/a.txt: image name 'a' is ambiguous.*"
                                         r"export \"YOLO with images\" or, better, JSON"):
        _read_ls123(LS123 / "YOLO.zip")


def test_hash_names_are_matched_by_content_and_refused_when_no_file_matches(tmp_path) -> None:
    root = tmp_path / "images"
    shutil.copytree(LS123 / "images", root)
    assert _read_ls123(LS123 / "COCO_WITH_IMAGES.zip", root) == _read_ls123(LS123 / "JSON.json", root)
    (root / "row_02" / "a.jpg").write_bytes((root / "row_02" / "a.jpg").read_bytes() + b"edited")
    with pytest.raises(LabelError, match=r"image 'images/007d034a__a.jpg' \(id 1\): image name 'images/a.jpg' is ambiguous.*"
                                         r"Label Studio's JSON export \(Export → JSON\) names every image exactly"):
        _read_ls123(LS123 / "COCO_WITH_IMAGES.zip", root)


def test_other_zips_are_not_taken_for_label_studio_exports(tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(LabelError, match="cannot tell the label format"):
        sniff_format(tmp_path / "x.zip")
