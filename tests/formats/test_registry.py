"""The format registry: lists, sniffing, unknown names, batch names."""

from __future__ import annotations

import json
import pytest

from alloop.boxes import ImageAnnotation
from alloop.errors import LabelError
from alloop.formats import (
    BatchItem,
    export_batch,
    export_formats,
    export_training_set,
    import_formats,
    read_labels,
    sniff_format,
    train_export_formats,
)

from .conftest import CLASSES, DATA


def test_lists() -> None:
    assert import_formats() == ["coco", "labelstudio", "cvat", "cvat_xml", "kitti", "voc", "yolo"]
    assert export_formats() == ["coco", "labelstudio", "cvat", "filelist"]
    assert train_export_formats() == ["coco", "cvat_xml", "kitti", "voc", "yolo"]


@pytest.mark.parametrize("rel, fmt", [
    ("labelstudio/export.json", "labelstudio"),
    ("labelstudio/export_min.json", "labelstudio"),
    ("cvat/instances_default.json", "coco"),
    ("cvat/annotations.xml", "cvat_xml"),
    ("kitti", "kitti"),
    ("kitti/labels", "kitti"),
    ("voc/Annotations", "voc"),
    ("voc/Annotations/apple_001.xml", "voc"),
    ("yolo", "yolo"),
    ("yolo/labels/train", "yolo"),
])
def test_sniff_samples(rel: str, fmt: str) -> None:
    assert sniff_format(DATA / rel) == fmt


def test_cannot_sniff(tmp_path) -> None:
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(LabelError, match=r"cannot tell the label format; pass --format with one of: coco, labelstudio"):
        sniff_format(tmp_path / "notes.md")


def test_only_empty_txt_files_are_ambiguous(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(LabelError, match="cannot tell the label format"):
        sniff_format(tmp_path)


def test_missing_path(tmp_path) -> None:
    with pytest.raises(LabelError, match=r"no such file or directory; check the --labels path"):
        read_labels(tmp_path / "nope.json", format=None, images={}, classes=CLASSES)


def test_unknown_format(tmp_path) -> None:
    (tmp_path / "a.json").write_text("[]")
    with pytest.raises(LabelError, match=r"unknown label format 'pascal'; --format takes one of: coco, "):
        read_labels(tmp_path / "a.json", format="pascal", images={}, classes=CLASSES)
    with pytest.raises(LabelError, match=r"unknown export format 'kitti'; --format takes one of: coco, labelstudio"):
        export_batch("kitti", [], tmp_path, classes=CLASSES)
    with pytest.raises(LabelError, match=r"unknown training export format 'labelstudio'; --format takes one of: coco, cvat_xml"):
        export_training_set("labelstudio", [], tmp_path, image_root=tmp_path, classes=CLASSES)


@pytest.mark.parametrize("bad", ["../x.jpg", "/etc/passwd", "a\\b.jpg"])
def test_export_refuses_unsafe_names(tmp_path, bad: str) -> None:
    with pytest.raises(LabelError, match="not a relative path inside the image root"):
        export_batch("coco", [BatchItem(bad, tmp_path / "x.jpg", 1, 1)], tmp_path / "b", classes=CLASSES)
    with pytest.raises(LabelError, match="not a relative path inside the image root"):
        export_training_set("kitti", [ImageAnnotation(bad, 1, 1)], tmp_path / "k", image_root=tmp_path, classes=CLASSES)


def test_filelist(tmp_path, image_root) -> None:
    items = [BatchItem("row_01/apple_001.jpg", image_root / "row_01/apple_001.jpg", 640, 480),
             BatchItem("apple_004.png", image_root / "apple_004.png", 320, 240)]
    path = export_batch("filelist", items, tmp_path / "b", classes=CLASSES)
    assert path.read_text().splitlines() == [str((image_root / "row_01/apple_001.jpg").resolve()),
                                             str((image_root / "apple_004.png").resolve())]
    assert (tmp_path / "b" / "names.txt").read_text() == "row_01/apple_001.jpg\napple_004.png\n"


def test_empty_label_studio_export(tmp_path, images) -> None:
    (tmp_path / "e.json").write_text("[]")
    got, _ = read_labels(tmp_path / "e.json", format=None, images=images, classes=CLASSES)
    assert got.images == ()


def test_label_set_source(tmp_path, images) -> None:
    got, _ = read_labels(DATA / "cvat" / "annotations.xml", format=None, images=images, classes=CLASSES)
    assert got.source == str(DATA / "cvat" / "annotations.xml")
    assert json.dumps(got.classes) == '["apple", "leaf"]'


def test_zip_of_a_dir_format_is_refused(tmp_path, images) -> None:
    import zipfile

    path = tmp_path / "yolo.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("labels/apple_004.txt", "0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(LabelError, match=r"yolo\.zip: is a zip archive; unzip it and pass the yolo labels inside"):
        read_labels(path, format="yolo", images=images, classes=CLASSES)


@pytest.mark.parametrize("fmt", train_export_formats())
def test_every_training_set_reimports_as_it_is(tmp_path, image_root, labeled, fmt) -> None:
    # Issue 16, item 4: alloop could not re-import its own --training-set --format coco folder.
    out = tmp_path / fmt
    export_training_set(fmt, labeled[:2], out, image_root=image_root, classes=CLASSES, val=labeled[2:])
    assert sniff_format(out) == {"coco": "cvat"}.get(fmt, fmt)  # a COCO dataset folder is CVAT's COCO 1.0 layout
    got, warnings = read_labels(out, format=fmt, images={a.file_name: (a.width, a.height) for a in labeled},
                                classes=CLASSES)
    assert warnings == []
    assert {a.file_name: len(a.boxes) for a in got.images} == {a.file_name: len(a.boxes) for a in labeled}
