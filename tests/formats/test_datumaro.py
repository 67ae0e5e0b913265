"""Interop with datumaro, the library CVAT imports and exports datasets with (issue 16).

For each format both ways, on a small generated set with nested folders, unicode and spaces in
names, an image without boxes and a class without boxes:

- alloop -> datumaro: ``alloop export --training-set`` output loads, unchanged, with datumaro's
  importer of the same name;
- datumaro -> alloop: what datumaro's exporter writes imports here.

Boxes must agree to 0.01 px; image counts, subsets and class names exactly.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from alloop.boxes import Box, ImageAnnotation
from alloop.formats import ImportOptions, export_training_set, read_labels, sniff_format
from alloop.formats.names import flat_stem

dm = pytest.importorskip("datumaro", reason="datumaro is not installed (pip install -e '.[interop]')")
from datumaro.components.annotation import AnnotationType, Bbox, LabelCategories  # noqa: E402
from datumaro.components.dataset import Dataset  # noqa: E402
from datumaro.components.dataset_base import DatasetItem  # noqa: E402
from datumaro.components.media import Image as DmImage  # noqa: E402

CLASSES = ("apple", "leaf", "pear")  # pear has no box anywhere
TOL = 0.01
TRAIN = [
    ImageAnnotation("row 01/äpfel 1.jpg", 60, 40, (
        Box(1.5, 2.25, 12.0, 10.25, "apple"),
        Box(0.0, 0.0, 60.0, 40.0, "leaf"),
    )),
    ImageAnnotation("row_02/Ünïcode name.png", 50, 30, ()),  # labeled: no objects
    ImageAnnotation("deep/a b/c d.jpg", 80, 60, (
        Box(10.333, 20.667, 30.5, 41.0, "leaf"),
        Box(70.25, 50.5, 80.0, 60.0, "apple"),
    )),
]
VAL = [ImageAnnotation("flat.jpg", 64, 48, (Box(3.0, 4.0, 8.0, 10.0, "apple"),))]
# alloop format -> datumaro importer name, and datumaro exporter name for the way back.
IMPORTER = {"coco": "coco", "voc": "voc", "yolo": "yolo", "kitti": "kitti", "cvat_xml": "cvat"}
EXPORTER = {"coco": "coco_instances", "voc": "voc_detection", "yolo": "yolo_ultralytics",
            "kitti": "kitti_detection", "cvat_xml": "cvat"}


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    from PIL import Image

    root = tmp_path / "images"
    for ann in (*TRAIN, *VAL):
        f = root / ann.file_name
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (ann.width, ann.height), (90, 140, 60)).save(f)
    return root


def _sizes() -> dict[str, tuple[int, int]]:
    return {a.file_name: (a.width, a.height) for a in (*TRAIN, *VAL)}


def _key(fmt: str, file_name: str) -> str:
    """The datumaro item id alloop's export gives an image."""
    return flat_stem(file_name) if fmt in ("yolo", "kitti") else str(PurePosixPath(file_name).with_suffix(""))


def _close(got: list[tuple], want: list[tuple], where: str) -> None:
    assert len(got) == len(want), (where, got, want)
    for g, w in zip(sorted(got), sorted(want)):
        assert g[0] == w[0], (where, g, w)
        assert all(abs(a - b) <= TOL for a, b in zip(g[1:], w[1:])), (where, g, w)


@pytest.mark.parametrize("fmt", sorted(IMPORTER))
def test_alloop_export_loads_in_datumaro(tmp_path, image_root, fmt) -> None:
    out = tmp_path / "export"
    export_training_set(fmt, TRAIN, out, image_root=image_root, classes=CLASSES, val=VAL)
    ds = Dataset.import_from(str(out), IMPORTER[fmt])
    names = [c.name for c in ds.categories()[AnnotationType.label]]
    # datumaro's VOC categories always start with its own 'background'.
    assert [n for n in names if not (fmt == "voc" and n == "background")] == list(CLASSES)
    items = {(it.id, it.subset): it for it in ds}
    want = {(_key(fmt, a.file_name), split): a for split, anns in (("train", TRAIN), ("val", VAL)) for a in anns}
    assert set(items) == set(want)
    for key, ann in want.items():
        boxes = [a for a in items[key].annotations if a.type == AnnotationType.bbox]
        got = [(names[b.label], b.x, b.y, b.x + b.w, b.y + b.h) for b in boxes]
        _close(got, [(b.label, b.x0, b.y0, b.x1, b.y1) for b in ann.boxes], f"{fmt} {key}")


def _datumaro_dataset(image_root: Path) -> Dataset:
    items = []
    for split, anns in (("train", TRAIN), ("val", VAL)):
        for a in anns:
            boxes = [Bbox(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0, label=CLASSES.index(b.label)) for b in a.boxes]
            items.append(DatasetItem(id=str(PurePosixPath(a.file_name).with_suffix("")), subset=split,
                                     media=DmImage.from_file(path=str(image_root / a.file_name)),
                                     annotations=boxes))
    return Dataset.from_iterable(items, categories={AnnotationType.label: LabelCategories.from_iterable(CLASSES)})


@pytest.mark.parametrize("fmt", sorted(EXPORTER))
def test_datumaro_export_imports_here(tmp_path, image_root, fmt) -> None:
    out = tmp_path / "datumaro"
    _datumaro_dataset(image_root).export(str(out), EXPORTER[fmt], save_media=True)
    # A COCO dataset folder is also the layout of CVAT's "COCO 1.0" export; both names read it alike.
    assert sniff_format(out) == {"coco": "cvat"}.get(fmt, fmt)
    got, warnings = read_labels(out, format=fmt, images=_sizes(), classes=(),
                                options=ImportOptions(add_classes=True), image_root=image_root)
    if fmt == "kitti":
        # datumaro's KITTI export writes no class list (not even with save_dataset_meta), so only the
        # classes that have boxes can come back.
        assert sorted(got.classes) == ["apple", "leaf"]
    else:
        assert got.classes == CLASSES
    assert warnings == [f"{out}: added class(es) {', '.join(got.classes)}"]
    by = {a.file_name: a for a in got.images}
    assert set(by) == set(_sizes())  # the image without boxes included, as "no objects"
    for want in (*TRAIN, *VAL):
        _close([(b.label, b.x0, b.y0, b.x1, b.y1) for b in by[want.file_name].boxes],
               [(b.label, b.x0, b.y0, b.x1, b.y1) for b in want.boxes], f"{fmt} {want.file_name}")


def test_datumaro_darknet_yolo_imports_here(tmp_path, image_root) -> None:
    # datumaro's plain "yolo" exporter writes the darknet layout (obj.names, obj_train_data/).
    out = tmp_path / "datumaro"
    _datumaro_dataset(image_root).export(str(out), "yolo", save_media=True)
    got, _ = read_labels(out, format="yolo", images=_sizes(), classes=(), options=ImportOptions(add_classes=True))
    assert got.classes == CLASSES
    assert {a.file_name: len(a.boxes) for a in got.images} == {a.file_name: len(a.boxes) for a in (*TRAIN, *VAL)}
