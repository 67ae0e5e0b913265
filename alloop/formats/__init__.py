"""Annotation formats: export batches for labeling, import what label tools export, export training sets.

One module per format; each reader only parses its file into raw records, and
:func:`alloop.formats.records.build_label_set` validates them the same way for every format
(names, sizes, classes, boxes, duplicates), raising before anything is returned: an import is all
of a file or nothing.

Every training-set export loads unchanged in datumaro (the library CVAT imports and exports with)
under the importer of the same name (``coco``, ``cvat``, ``kitti``, ``voc``, ``yolo``), and every
datumaro export of those formats imports here (tested with datumaro 1.13 in
``tests/formats/test_datumaro.py``).

==============  ======  ===========  ============  =============================================
format          import  batch export training set  what
==============  ======  ===========  ============  =============================================
coco            yes     yes          yes           COCO instances JSON (file, or dataset folder)
labelstudio     yes     yes                        Label Studio exports (JSON, JSON-MIN, COCO, VOC, YOLO; zip) / tasks
cvat            yes     yes                        CVAT "COCO 1.0" (json, zip or export dir)
cvat_xml        yes                  yes           CVAT "CVAT for images 1.1" XML (xml, zip or dir)
kitti           yes                  yes           KITTI (image_2/label_2; TAO's images/labels)
voc             yes                  yes           Pascal VOC XML (dir or dataset root)
yolo            yes                  yes           Ultralytics YOLO: data.yaml, images/, labels/
filelist                yes                        plain list of image paths
==============  ======  ===========  ============  =============================================
"""

from __future__ import annotations

import importlib
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

from alloop.boxes import Box, ImageAnnotation, LabelSet
from alloop.errors import LabelError
from alloop.formats.names import ImageIndex, is_safe_relative, resolve_image_name
from alloop.formats.records import BatchItem, ImportOptions, build_label_set

# name -> module; the module has read()/sniff() to import, write_batch() and/or write_training_set().
_IMPORT = {
    "coco": "coco",
    "labelstudio": "labelstudio",
    "cvat": "cvat",
    "cvat_xml": "cvat_xml",
    "kitti": "kitti",
    "voc": "voc",
    "yolo": "yolo",
}
_BATCH = {"coco": "coco", "labelstudio": "labelstudio", "cvat": "cvat", "filelist": "filelist"}
_TRAINING = {"coco": "coco", "cvat_xml": "cvat_xml", "kitti": "kitti", "voc": "voc", "yolo": "yolo"}
# Sniffing order: the most specific shapes first (a CVAT zip before a generic COCO file).
_SNIFF_ORDER = ("cvat_xml", "cvat", "labelstudio", "coco", "voc", "kitti", "yolo")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"alloop.formats.{name}")


def import_formats() -> list[str]:
    """Formats ``read_labels`` accepts."""
    return list(_IMPORT)


def export_formats() -> list[str]:
    """Formats a batch can be exported in for labeling."""
    return list(_BATCH)


def train_export_formats() -> list[str]:
    """Formats the labeled set can be exported in for training."""
    return list(_TRAINING)


def _pick(table: Mapping[str, str], name: str, what: str, flag: str) -> ModuleType:
    if name not in table:
        raise LabelError(f"unknown {what} format {name!r}; {flag} takes one of: {', '.join(table)}")
    return _module(table[name])


def sniff_format(path: Path) -> str:
    """The import format of ``path`` by its shape; LabelError naming the formats when unsure."""
    path = Path(path)
    if not path.exists():
        raise LabelError(f"{path}: no such file or directory; check the --labels path")
    if path.is_file() and path.suffix.lower() == ".zip" and not zipfile.is_zipfile(path):
        raise LabelError(f"{path}: not a valid zip archive (truncated download?); download the export again")
    for name in _SNIFF_ORDER:
        if _module(_IMPORT[name]).sniff(path):
            return name
    raise LabelError(
        f"{path}: cannot tell the label format; pass --format with one of: {', '.join(_IMPORT)}"
    )


def read_labels(
    path: Path,
    *,
    format: str | None,
    images: Mapping[str, tuple[int, int]],
    classes: Sequence[str],
    options: ImportOptions = ImportOptions(),
    image_root: Path | None = None,
) -> tuple[LabelSet, list[str]]:
    """Read a label file/dir exported by a label tool, as the project's images and classes.

    ``images``: the project's images, file_name (relative posix path) -> (width, height). The
    returned LabelSet names every image by the project's file_name; boxes are validated; its
    ``classes`` are the project's plus, with ``options.add_classes``, the new ones. The second
    value lists human-readable warnings. Raises LabelError before returning anything.
    ``image_root`` lets absolute paths inside the project's image root resolve.
    """
    path = Path(path)
    if not path.exists():
        raise LabelError(f"{path}: no such file or directory; check the --labels path")
    name = format or sniff_format(path)
    module = _pick(_IMPORT, name, "label", "--format")
    if path.is_file() and path.suffix.lower() == ".zip" and name not in ("cvat", "cvat_xml", "labelstudio"):
        raise LabelError(f"{path}: is a zip archive; unzip it and pass the {name} labels inside to --labels")
    index = ImageIndex(images.keys(), image_root)
    parsed = module.read(path, classes=tuple(classes), index=index, sizes=images, origin=options.voc_origin)
    return build_label_set(
        parsed, index=index, sizes=images, classes=classes, options=options, source=str(path)
    )


def _check_names(names: Sequence[str]) -> None:
    for name in names:
        if not is_safe_relative(name):
            raise LabelError(
                f"image {name!r}: not a relative path inside the image root; fix the project's image list"
            )


def export_batch(
    format: str,
    items: Sequence[BatchItem],
    out_dir: Path,
    *,
    classes: Sequence[str],
    model_version: str | None = None,
    image_url_prefix: str | None = None,
) -> Path:
    """Write a batch for labeling in ``format`` under ``out_dir``; returns the main file written."""
    module = _pick(_BATCH, format, "export", "--format")
    _check_names([it.file_name for it in items])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return module.write_batch(
        items, out_dir, classes=tuple(classes), model_version=model_version, image_url_prefix=image_url_prefix
    )


def export_training_set(
    format: str,
    annotations: Sequence[ImageAnnotation],
    out_dir: Path,
    *,
    image_root: Path,
    classes: Sequence[str],
    val: Sequence[ImageAnnotation] = (),
    **options: object,
) -> Path:
    """Write the labeled set (and a validation split) for training in ``format``; returns its main path.

    ``options`` go to the format's writer (``layout="tao"`` for KITTI in TAO's folder names).
    """
    module = _pick(_TRAINING, format, "training export", "--format")
    _check_names([a.file_name for a in (*annotations, *val)])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return module.write_training_set(
        annotations, out_dir, image_root=Path(image_root), classes=tuple(classes), val=val, **options
    )


def read_kitti_detections(
    label_dir: Path, *, classes: Sequence[str], images: Mapping[str, tuple[int, int]] | None = None
) -> dict[str, tuple[Box, ...]]:
    """TAO inference output (KITTI lines with a 16th confidence field) as boxes with scores, per image.

    Keys are label-file stems relative to ``label_dir`` (``row_01/apple_001``), or the project's
    file names when ``images`` is given.
    """
    return _module("kitti").read_detections(Path(label_dir), classes=classes, images=images)


__all__ = [
    "BatchItem",
    "ImportOptions",
    "export_batch",
    "export_formats",
    "export_training_set",
    "import_formats",
    "read_kitti_detections",
    "read_labels",
    "resolve_image_name",
    "sniff_format",
    "train_export_formats",
]
