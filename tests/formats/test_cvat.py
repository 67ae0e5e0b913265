"""CVAT: COCO 1.0 (zip, folder, json) and "CVAT for images 1.1" XML."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import LabelError
from alloop.formats import BatchItem, export_batch, read_labels, sniff_format

from .conftest import CLASSES, DATA, assert_same


def _read(path: Path, images, fmt=None, **kw):
    return read_labels(path, format=fmt, images=images, classes=CLASSES, **kw)


def _zip(path: Path, members: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


EXPECTED_COCO = {
    "row_01/apple_001.jpg": (
        Box(64.0, 60.0, 224.0, 136.8, "apple"),
        Box(300.25, 200.5, 340.25, 230.5125, "leaf", attributes=(("occluded", "1"),)),
    ),
    "row_01/apple_002.jpg": (Box(10, 10, 60, 60, "apple", attributes=(("ripeness", "green"),)),),
    "row_02/apple_003.jpg": (),
}


def _check(got) -> None:
    by = {a.file_name: a.boxes for a in got.images}
    assert set(by) == set(EXPECTED_COCO)
    for name, boxes in EXPECTED_COCO.items():
        assert_same([ImageAnnotation(name, 0, 0, by[name])], [ImageAnnotation(name, 0, 0, boxes)])


def test_real_shaped_coco_zip(tmp_path, images) -> None:
    text = (DATA / "cvat" / "instances_default.json").read_text()
    path = _zip(tmp_path / "task_7-coco.zip", {"annotations/instances_default.json": text})
    assert sniff_format(path) == "cvat"
    got, _ = _read(path, images)
    _check(got)


def test_real_shaped_coco_folder_and_json(tmp_path, images) -> None:
    folder = tmp_path / "export"
    (folder / "annotations").mkdir(parents=True)
    shutil.copy(DATA / "cvat" / "instances_default.json", folder / "annotations")
    assert sniff_format(folder) == "cvat"
    _check(_read(folder, images)[0])
    assert sniff_format(DATA / "cvat" / "instances_default.json") == "coco"
    _check(_read(DATA / "cvat" / "instances_default.json", images, "cvat")[0])


def test_batch_export_is_cvat_coco(tmp_path, image_root, labeled, images) -> None:
    items = [BatchItem(a.file_name, image_root / a.file_name, a.width, a.height,
                       tuple(Box(b.x0, b.y0, b.x1, b.y1, b.label, 0.8, b.attributes) for b in a.boxes))
             for a in labeled]
    path = export_batch("cvat", items, tmp_path / "b", classes=CLASSES)
    doc = json.loads(path.read_text())
    assert path.name == "instances_default.json"
    assert set(doc) == {"licenses", "info", "categories", "images", "annotations"}
    assert doc["categories"][0] == {"id": 1, "name": "apple", "supercategory": ""}
    ann = doc["annotations"][1]
    assert ann["attributes"] == {"occluded": True, "rotation": 0.0}
    assert ann["bbox"] == [300.25, 200.5, 40, pytest.approx(30.0125)] and ann["score"] == 0.8
    assert json.loads((tmp_path / "b" / "labels.json").read_text()) == [
        {"name": "apple", "attributes": []}, {"name": "leaf", "attributes": []}]
    assert (tmp_path / "b" / "images.txt").read_text().splitlines()[0] == str(image_root / "row_01/apple_001.jpg")
    # Imported back as is, these are the model's boxes, not labels: refused.
    with pytest.raises(LabelError, match="model pre-annotations alloop exported, not labels"):
        _read(path, images)
    # Once CVAT re-exports them (its own info block, no scores) they are labels.
    doc["info"] = {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""}
    for a in doc["annotations"]:
        del a["score"]
    zipped = _zip(tmp_path / "cvat.zip", {"annotations/instances_default.json": json.dumps(doc)})
    got, _ = _read(zipped, images)
    # CVAT's occluded is a checkbox: KITTI's levels 1-3 all come back as "1".
    def cvat_attrs(b: Box) -> tuple:
        return tuple((k, "1" if k == "occluded" else v) for k, v in b.attributes)

    want = [ImageAnnotation(a.file_name, a.width, a.height,
                            tuple(Box(b.x0, b.y0, b.x1, b.y1, b.label, attributes=cvat_attrs(b)) for b in a.boxes))
            for a in labeled]
    assert_same(got.images, want)


def test_real_shaped_xml(tmp_path, images) -> None:
    path = DATA / "cvat" / "annotations.xml"
    assert sniff_format(path) == "cvat_xml"
    got, _ = _read(path, images)
    by = {a.file_name: a.boxes for a in got.images}
    assert by["row_01/apple_001.jpg"] == (
        Box(64.0, 60.0, 224.0, 136.8, "apple"),
        Box(300.25, 200.5, 340.25, 230.51, "leaf", attributes=(("occluded", "1"), ("ripeness", "green"))),
    )
    assert by["row_01/apple_002.jpg"] == ()  # listed, no boxes: no objects
    assert by["row_02/apple_003.jpg"] == (Box(0, 0, 640, 480, "apple"),)
    zipped = _zip(tmp_path / "task.zip", {"annotations.xml": path.read_bytes()})
    assert sniff_format(zipped) == "cvat_xml"
    assert _read(zipped, images)[0] == got.__class__(got.classes, got.images, str(zipped))


def write_cvat_xml(anns: list[ImageAnnotation], path: Path) -> Path:
    """A 'CVAT for images 1.1' file as CVAT writes it (test helper: alloop only reads this format)."""
    out = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>"]
    for i, a in enumerate(anns):
        out.append(f'  <image id="{i}" name={quoteattr(a.file_name)} width="{a.width}" height="{a.height}">')
        for b in a.boxes:
            attrs = dict(b.attributes)
            occ = attrs.pop("occluded", "0")
            out.append(f'    <box label={quoteattr(b.label)} source="manual" occluded="{occ}" xtl="{b.x0!r}" '
                       f'ytl="{b.y0!r}" xbr="{b.x1!r}" ybr="{b.y1!r}" z_order="0">')
            out += [f"      <attribute name={quoteattr(k)}>{v}</attribute>" for k, v in attrs.items()]
            out.append("    </box>")
        out.append("  </image>")
    out.append("</annotations>")
    path.write_text("\n".join(out) + "\n")
    return path


def test_xml_round_trip(tmp_path, images, labeled) -> None:
    got, _ = _read(write_cvat_xml(labeled, tmp_path / "annotations.xml"), images)
    assert_same(got.images, labeled, tol=0)


# -- bad input ------------------------------------------------------------------------------------

def _fails(tmp_path, images, xml: str, match: str, fmt: str | None = "cvat_xml") -> None:
    path = tmp_path / "annotations.xml"
    path.write_text(xml)
    with pytest.raises(LabelError, match=match) as err:
        _read(path, images, fmt)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def _xml(body: str) -> str:
    return f'<?xml version="1.0"?>\n<annotations><version>1.1</version>{body}</annotations>'


BOX = '<box label="apple" occluded="0" xtl="1" ytl="2" xbr="30" ybr="40" z_order="0"/>'


def test_malformed_xml(tmp_path, images) -> None:
    _fails(tmp_path, images, '<annotations><image name="a.jpg">\n</annotations>',
           r"malformed XML at line 2 column 3 \(mismatched tag\)")


def test_entities_refused(tmp_path, images) -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><annotations>&x;</annotations>'
    _fails(tmp_path, images, bomb, r"XML declares a DTD or entities")


def test_utf16_entities_refused(tmp_path, images) -> None:
    # Issue 19, item 9: a byte check for "<!ENTITY" misses UTF-16; defusedxml refuses it in any encoding.
    bomb = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "xx">]><annotations>&x;</annotations>'
    path = tmp_path / "annotations.xml"
    path.write_bytes(bomb.encode("utf-16"))
    with pytest.raises(LabelError, match=r"annotations\.xml: XML declares a DTD or entities"):
        _read(path, images, "cvat_xml")


def test_datumaro_subset_files_folder(tmp_path, images) -> None:
    # Issue 16, item 4: datumaro's CVAT export is a folder of <subset>.xml files, not annotations.xml.
    train = '<image id="0" name="row_01/apple_001.jpg" width="640" height="480">' + BOX + "</image>"
    val = '<image id="0" name="apple_004.png" width="320" height="240"></image>'
    (tmp_path / "train.xml").write_text(_xml(train))
    (tmp_path / "val.xml").write_text(_xml(val))
    assert sniff_format(tmp_path) == "cvat_xml"
    got, _ = _read(tmp_path, images)
    assert {a.file_name: a.boxes for a in got.images} == {
        "row_01/apple_001.jpg": (Box(1, 2, 30, 40, "apple"),), "apple_004.png": ()}


def test_training_set_round_trip(tmp_path, images, image_root, labeled) -> None:
    from alloop.formats import export_training_set

    path = export_training_set("cvat_xml", labeled[:2], tmp_path / "out", image_root=image_root, classes=CLASSES,
                               val=labeled[2:])
    assert path == tmp_path / "out" / "train.xml"
    assert (tmp_path / "out" / "images" / "apple_004.png").is_file()
    got, _ = _read(tmp_path / "out", images)
    assert_same(got.images, labeled, tol=0, attributes=False)  # CVAT's occluded is a flag: KITTI's 2 -> 1
    by = {a.file_name: a.boxes for a in got.images}
    assert by["apple_004.png"][0].attributes == (("occluded", "1"), ("truncated", "0.5"))


def test_wrong_root(tmp_path, images) -> None:
    _fails(tmp_path, images, "<annotation><filename>a.jpg</filename></annotation>", r"root element is <annotation>")


def test_video_export(tmp_path, images) -> None:
    _fails(tmp_path, images, _xml('<track id="0" label="apple"><box frame="0" xtl="1" ytl="1" xbr="2" ybr="2"/></track>'),
           r"'CVAT for video' export")


def test_polygon(tmp_path, images) -> None:
    _fails(tmp_path, images, _xml('<image id="0" name="apple_004.png" width="320" height="240">'
                                  '<polygon label="apple" points="1,2;3,4;5,1"/></image>'),
           r"image 'apple_004\.png' \(id 0\): has a polygon shape")


def test_rotated(tmp_path, images) -> None:
    _fails(tmp_path, images, _xml('<image id="0" name="apple_004.png" width="320" height="240">'
                                  + BOX.replace("/>", ' rotation="45.0"/>') + "</image>"),
           r"box 1 \('apple'\): box is rotated by 45\.0 degrees")


def test_bad_number(tmp_path, images) -> None:
    _fails(tmp_path, images, _xml('<image id="0" name="apple_004.png" width="320" height="240">'
                                  + BOX.replace('xtl="1"', 'xtl="one"') + "</image>"),
           r"attribute xtl='one' is not a number")


def test_unknown_image(tmp_path, images) -> None:
    _fails(tmp_path, images, _xml(f'<image id="0" name="pear.jpg" width="320" height="240">{BOX}</image>'),
           r"image 'pear\.jpg' is not in the project")


def test_traversal(tmp_path, images) -> None:
    _fails(tmp_path, images, _xml(f'<image id="0" name="../../apple_004.png" width="320" height="240">{BOX}</image>'),
           r"path escapes the image root")


def test_outside(tmp_path, images) -> None:
    _fails(tmp_path, images, _xml('<image id="0" name="apple_004.png" width="320" height="240">'
                                  + BOX.replace('xbr="30"', 'xbr="330"') + "</image>"),
           r"lies outside the 320x240 image")


def test_unknown_class(tmp_path, images) -> None:
    _fails(tmp_path, images, _xml('<image id="0" name="apple_004.png" width="320" height="240">'
                                  + BOX.replace("apple", "pear") + "</image>"),
           r"unknown class name\(s\) 'pear'")


def test_duplicate(tmp_path, images) -> None:
    _fails(tmp_path, images, _xml(f'<image id="0" name="apple_004.png" width="320" height="240">{BOX}{BOX}</image>'),
           r"box 2 \('apple'\): duplicate of an earlier 'apple' box")


def test_empty_xml(tmp_path, images) -> None:
    _fails(tmp_path, images, "", r"file is empty, not XML")


def test_zip_without_annotations(tmp_path, images) -> None:
    path = _zip(tmp_path / "x.zip", {"images/a.jpg": b"x"})
    with pytest.raises(LabelError, match=r"zip has no annotations/instances_\*\.json"):
        _read(path, images, "cvat")
    with pytest.raises(LabelError, match=r"zip has no annotations\.xml"):
        _read(path, images, "cvat_xml")
    with pytest.raises(LabelError, match=r"cannot tell the label format; pass --format with one of: coco, "):
        _read(path, images)


def test_broken_zip(tmp_path, images) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(LabelError, match=r"not a valid zip archive"):
        _read(path, images)
