"""Pascal VOC XML, both ways; the pixel origin from the file's <source>, else --voc-origin (default 0)."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import LabelError
from alloop.formats import ImportOptions, read_labels, sniff_format

from .conftest import CLASSES, DATA, assert_same


def _read(path: Path, images, **kw):
    return read_labels(path, format=kw.pop("format", None), images=images, classes=CLASSES, **kw)


def write_voc(anns: list[ImageAnnotation], out: Path) -> Path:
    """One VOC file per image, as LabelImg writes them (0-based corners, no <source><annotation>)."""
    for a in anns:
        p = Path(a.file_name)
        objects = []
        for b in a.boxes:
            attrs = dict(b.attributes)
            objects.append(
                f"<object><name>{escape(b.label)}</name><pose>Unspecified</pose>"
                f"<truncated>{attrs.get('truncated', 0)}</truncated><difficult>{attrs.get('difficult', 0)}</difficult>"
                f"<occluded>{attrs.get('occluded', 0)}</occluded>"
                f"<bndbox><xmin>{b.x0!r}</xmin><ymin>{b.y0!r}</ymin><xmax>{b.x1!r}</xmax><ymax>{b.y1!r}</ymax>"
                "</bndbox></object>"
            )
        f = out / p.with_suffix(".xml")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(
            f"<annotation><folder>{p.parent}</folder><filename>{p.name}</filename>"
            f"<size><width>{a.width}</width><height>{a.height}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{''.join(objects)}</annotation>\n"
        )
    return out


def test_round_trip(tmp_path, images, labeled) -> None:
    out = write_voc(labeled, tmp_path / "Annotations")
    assert sniff_format(out) == "voc"
    got, _ = _read(out, images)
    assert_same(got.images, labeled, tol=1e-9)


def test_real_shaped_labelimg(images) -> None:
    # LabelImg names no origin (<database>Unknown</database> only): read 0-based, the default.
    got, _ = _read(DATA / "voc" / "Annotations", images)
    by = {a.file_name: a.boxes for a in got.images}
    assert by["row_01/apple_001.jpg"] == (
        Box(65, 61, 224, 137, "apple"),
        Box(1, 1, 640, 480, "leaf", attributes=(("difficult", "1"), ("truncated", "1"))),
    )
    assert by["row_02/apple_003.jpg"] == ()  # no <object>: no objects


def test_explicit_origin_1(images) -> None:
    got, _ = _read(DATA / "voc" / "Annotations", images, options=ImportOptions(voc_origin=1))
    by = {a.file_name: a.boxes for a in got.images}
    assert by["row_01/apple_001.jpg"] == (
        Box(64, 60, 224, 137, "apple"),
        # xmin=1..xmax=W is the whole image: 0..W in continuous coordinates.
        Box(0, 0, 640, 480, "leaf", attributes=(("difficult", "1"), ("truncated", "1"))),
    )


def test_original_pascal_voc_file_is_1_based(tmp_path, images) -> None:
    # Issue 16, item 2: the original VOC2007/2012 files say so in <source>; they are 1-based.
    (tmp_path / "a.xml").write_text(
        "<annotation><folder>VOC2007</folder><filename>apple_004.png</filename><source>"
        "<database>The VOC2007 Database</database><annotation>PASCAL VOC2007</annotation><image>flickr</image>"
        "</source><size><width>320</width><height>240</height></size>" + _obj("11", "21", "110", "220")
        + "</annotation>")
    got, _ = _read(tmp_path / "a.xml", images)
    assert got.images[0].boxes == (Box(10, 20, 110, 220, "apple"),)
    got, _ = _read(tmp_path / "a.xml", images, options=ImportOptions(voc_origin=0))  # explicit wins
    assert got.images[0].boxes == (Box(11, 21, 110, 220, "apple"),)


def test_datumaro_shaped_file_is_0_based(tmp_path, images) -> None:
    # Issue 16, item 2: datumaro (so CVAT's "PASCAL VOC 1.1") writes 0-based corners: no 1 px shift.
    (tmp_path / "a.xml").write_text(
        "<annotation><folder></folder><filename>apple_004.png</filename><source><database>Unknown</database>"
        "<annotation>Unknown</annotation><image>Unknown</image></source><size><width>320</width>"
        "<height>240</height><depth>3</depth></size>" + _obj("1.5", "2.25", "12.0", "10.25") + "</annotation>")
    got, _ = _read(tmp_path / "a.xml", images)
    assert got.images[0].boxes == (Box(1.5, 2.25, 12.0, 10.25, "apple"),)


def test_bad_origin_option() -> None:
    with pytest.raises(LabelError, match=r"--voc-origin 2: must be 0 or 1"):
        ImportOptions(voc_origin=2)


def test_single_file(images) -> None:
    got, _ = _read(DATA / "voc" / "Annotations" / "apple_001.xml", images)
    assert [a.file_name for a in got.images] == ["row_01/apple_001.jpg"]


def test_zero_minimum_is_the_border(tmp_path, images) -> None:
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>apple_004.png</filename><size><width>320</width><height>240</height></size>"
        "<object><name>apple</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>10</xmax><ymax>10</ymax></bndbox>"
        "</object></annotation>")
    got, _ = _read(tmp_path / "a.xml", images, options=ImportOptions(voc_origin=1))
    assert got.images[0].boxes == (Box(0, 0, 10, 10, "apple"),)


def test_subfolder_disambiguates_filename(tmp_path) -> None:
    images = {"a/x.jpg": (10, 10), "b/x.jpg": (10, 10)}
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.xml").write_text("<annotation><filename>x.jpg</filename></annotation>")
    got, _ = read_labels(tmp_path, format="voc", images=images, classes=CLASSES)
    assert got.images[0].file_name == "b/x.jpg"


def test_subset_list_without_xml_is_no_objects(tmp_path, images) -> None:
    # datumaro (so CVAT's PASCAL VOC 1.1) writes no XML for an image without boxes, only its id in
    # ImageSets/Main/<subset>.txt; labelmap.txt declares the classes, boxes or not.
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "apple_004.xml").write_text(_ann(_obj()))
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("apple_004\nrow_01/apple_002\n")
    (tmp_path / "ImageSets" / "Main" / "apple_train.txt").write_text("apple_004  1\n")  # a class list
    (tmp_path / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\napple:::\npear:::\n")
    assert sniff_format(tmp_path) == "voc"
    got, warnings = _read(tmp_path, images, options=ImportOptions(add_classes=True))
    assert {a.file_name: len(a.boxes) for a in got.images} == {"apple_004.png": 1, "row_01/apple_002.jpg": 0}
    assert got.classes == (*CLASSES, "pear") and warnings == [f"{tmp_path}: added class(es) pear"]


def test_training_set_layout_and_round_trip(tmp_path, images, image_root, labeled) -> None:
    from alloop.formats import export_training_set

    out = export_training_set("voc", labeled[:2], tmp_path / "voc", image_root=image_root, classes=CLASSES,
                              val=labeled[2:])
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "Annotations/apple_004.xml", "Annotations/row_01/apple_001.xml", "Annotations/row_01/apple_002.xml",
        "ImageSets/Main/train.txt", "ImageSets/Main/val.txt",
        "JPEGImages/apple_004.png", "JPEGImages/row_01/apple_001.jpg", "JPEGImages/row_01/apple_002.jpg",
        "labelmap.txt",
    ]
    assert (out / "ImageSets/Main/train.txt").read_text() == "row_01/apple_001\nrow_01/apple_002\n"
    got, _ = _read(out, images)
    # VOC keeps occluded/truncated/difficult as 0/1 flags only.
    assert_same(got.images, labeled, tol=1e-9, attributes=False)


# -- bad input ------------------------------------------------------------------------------------

def _fails(tmp_path, images, xml: str, match: str) -> None:
    f = tmp_path / "apple_004.xml"
    f.write_text(xml)
    with pytest.raises(LabelError, match=match) as err:
        _read(tmp_path, images, format="voc")
    assert str(err.value).startswith(str(tmp_path)) and "\n" not in str(err.value)


def _obj(xmin="2", ymin="3", xmax="30", ymax="40", name="apple") -> str:
    return (f"<object><name>{name}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
            f"<ymax>{ymax}</ymax></bndbox></object>")


def _ann(*objects: str, filename="apple_004.png", size=(320, 240)) -> str:
    return (f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
            f"</size>{''.join(objects)}</annotation>")


def test_malformed(tmp_path, images) -> None:
    _fails(tmp_path, images, "<annotation><filename>a.jpg</annotation>", r"apple_004\.xml: malformed XML at line 1")


def test_not_voc(tmp_path, images) -> None:
    _fails(tmp_path, images, "<annotations/>", r"root element is <annotations>, not <annotation>")


def test_no_bndbox(tmp_path, images) -> None:
    _fails(tmp_path, images, _ann("<object><name>apple</name><polygon/></object>"), r"object 1 \('apple'\): .*no <bndbox>")


def test_not_a_number(tmp_path, images) -> None:
    _fails(tmp_path, images, _ann(_obj(xmax="thirty")), r"<xmax> is 'thirty', not a number")


def test_negative_size(tmp_path, images) -> None:
    _fails(tmp_path, images, _ann(_obj(xmax="1")), r"object 1 \('apple'\): box .* non-positive width or height")


def test_nan(tmp_path, images) -> None:
    _fails(tmp_path, images, _ann(_obj(xmax="nan")), r"object 1 \('apple'\): <xmax> is 'nan', not a finite number")


def test_huge_size_is_an_error_not_a_traceback(tmp_path, images) -> None:
    # Issue 19, item 6: <width>1e999</width> raised OverflowError.
    _fails(tmp_path, images, _ann(_obj(), size=("1e999", 240)), r"<size><width> is '1e999', not an image size in pixels")
    _fails(tmp_path, images, _ann(_obj(), size=("9" * 400, 240)), r"<size><width> is '9{400}', not an image size")


def test_outside(tmp_path, images) -> None:
    _fails(tmp_path, images, _ann(_obj(xmax="400")), r"lies outside the 320x240 image")


def test_unknown_image(tmp_path, images) -> None:
    _fails(tmp_path, images, _ann(_obj(), filename="pear.jpg"), r"image 'pear\.jpg' is not in the project")


def test_traversal(tmp_path, images) -> None:
    _fails(tmp_path, images, _ann(_obj(), filename="../../etc/apple_004.png"), r"path escapes the image root")


def test_size_mismatch(tmp_path, images) -> None:
    _fails(tmp_path, images, _ann(_obj(), size=(640, 480)), r"is 640x480 in the label file but 320x240")


def test_unknown_class(tmp_path, images) -> None:
    _fails(tmp_path, images, _ann(_obj(name="pear")), r"unknown class name\(s\) 'pear'")


def test_duplicate(tmp_path, images) -> None:
    _fails(tmp_path, images, _ann(_obj(), _obj()), r"object 2 \('apple'\): duplicate of an earlier 'apple' box")


def test_empty_file(tmp_path, images) -> None:
    _fails(tmp_path, images, "", r"file is empty, not XML")
