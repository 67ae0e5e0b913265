"""Pascal VOC XML, both ways: one ``<annotation>`` file per image (LabelImg, datumaro, CVAT "PASCAL VOC 1.1").

Shape::

    <annotation><folder>images</folder><filename>apple_001.jpg</filename>
      <source><database>Unknown</database></source>
      <size><width>640</width><height>480</height><depth>3</depth></size>
      <object><name>apple</name><pose>Unspecified</pose><truncated>0</truncated>
        <difficult>0</difficult>
        <bndbox><xmin>10</xmin><ymin>20</ymin><xmax>110</xmax><ymax>220</ymax></bndbox>
      </object>
    </annotation>

Pixel origin: the tools disagree, so the file decides when it says who wrote it, else ``--voc-origin``:

- **0-based** corners, used as is (``x0 = xmin``): datumaro (its default ``dm-zero-based`` mode), so
  CVAT's "PASCAL VOC 1.1" export (CVAT exports VOC through datumaro), LabelImg (Qt pixel
  coordinates, read back unchanged), Label Studio's VOC export, and alloop's own export. The default.
- **1-based** inclusive pixel indices (``x0 = xmin - 1``, ``x1 = xmax``): the original PASCAL VOC
  2007/2012 annotations and devkit (datumaro's ``voc-one-based`` mode). Files whose
  ``<source><annotation>`` or ``<database>`` names PASCAL VOC are read this way; a ``0`` minimum is
  read as the border, not as -1.

The image is named by ``<filename>``, tried first joined to the XML's sub-folder (LabelImg writes bare
names); when a bare name is ambiguous, the XML file's own path without ``.xml`` picks among the
candidates; with no ``<filename>``, that path names the image. An unknown or escaping ``<filename>``
is an error, never overridden. A file with no ``<object>`` is "no objects", and so is an image listed
in ``ImageSets/Main/<subset>.txt`` with no XML (datumaro writes no XML for an image without boxes).
``labelmap.txt`` (datumaro, CVAT) declares the classes, boxes or not.
``difficult``, ``truncated`` and ``occluded`` become box attributes.

Layout written by :func:`write_training_set` (datumaro's and CVAT's ``voc`` import reads it as is)::

    out/Annotations/<file_name without extension>.xml
    out/JPEGImages/<file_name>                      (hard links to the project's images)
    out/ImageSets/Main/train.txt, val.txt           (image ids, one a line)
    out/labelmap.txt                                (every class, boxes or not)
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import LabelError
from alloop.formats.records import ParsedLabels, RawImage, check_project_classes, clean_attributes, load_xml
from alloop.formats.staging import StagedDir, place_image, put

ANNOTATIONS, IMAGES, LISTS, LABELMAP = "Annotations", "JPEGImages", "ImageSets/Main", "labelmap.txt"


def _base(path: Path) -> Path:
    """The folder XML stems are relative to: ``Annotations/`` inside a dataset root, else ``path``."""
    if path.is_file():
        return path.parent
    return path / ANNOTATIONS if (path / ANNOTATIONS).is_dir() else path


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in _base(path).rglob("*.xml") if not p.name.startswith("."))


def sniff(path: Path) -> bool:
    """An XML file (or a dir of them) whose root element is <annotation>."""
    if path.is_file() and path.suffix.lower() != ".xml":
        return False
    files = _files(path) if path.exists() else []
    if not files:
        return False
    with files[0].open("rb") as f:
        head = f.read(4096)
    return b"<annotation>" in head or b"<annotation " in head


def _text(elem, tag: str) -> str | None:
    child = elem.find(tag)
    return child.text.strip() if child is not None and child.text is not None else None


def _number(elem, tag: str, where: str) -> float:
    text = _text(elem, tag)
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LabelError(f"{where}: <{tag}> is {text!r}, not a number; fix that box") from None
    if not math.isfinite(value):
        raise LabelError(f"{where}: <{tag}> is {text!r}, not a finite number; fix that box")
    return value


def _size(root, key: str, where: str) -> int | None:
    text = _text(root, f"size/{key}")
    if text is None or text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        raise LabelError(f"{where}: <size><{key}> is {text!r}, not a number; fix the file") from None
    if not math.isfinite(number) or number >= 2**31:
        raise LabelError(f"{where}: <size><{key}> is {text!r}, not an image size in pixels; fix the file")
    value = int(number)
    return value if value > 0 else None


def file_origin(root) -> int | None:
    """1 when the file says it comes from the original PASCAL VOC annotations, else None (unknown)."""
    said = " ".join(_text(root, f"source/{k}") or "" for k in ("annotation", "database")).upper()
    return 1 if "PASCAL VOC" in said or "VOC20" in said else None


def _resolve(filename: str | None, rel_stem: str, index, where: str) -> str:
    """The project image a VOC file names. <filename> is usually a bare name; the XML's own sub-folder
    or path may disambiguate it, but never overrides it (an unknown or escaping filename is an error)."""
    if not filename:
        return index.resolve_stem(rel_stem, where)
    folder = rel_stem.rsplit("/", 1)[0] if "/" in rel_stem else ""
    if folder:
        try:
            return index.resolve(f"{folder}/{filename}", where)
        except LabelError:
            pass
    try:
        return index.resolve(filename, where)
    except LabelError as err:
        if "ambiguous" not in str(err):
            raise
        by_stem = index.resolve_stem(rel_stem, where)
        if by_stem.rsplit("/", 1)[-1] != filename.replace("\\", "/").rsplit("/", 1)[-1]:
            raise
        return by_stem


def _parse_file(f: Path, rel_stem: str, index, origin: int | None) -> RawImage:
    root = load_xml(f)
    where = str(f)
    if root.tag != "annotation":
        raise LabelError(f"{where}: root element is <{root.tag}>, not <annotation>; not a Pascal VOC file")
    if origin is None:
        origin = file_origin(root) or 0
    filename = _text(root, "filename")
    raw = RawImage(filename or rel_stem, where, _size(root, "width", where), _size(root, "height", where))
    raw.resolved = _resolve(filename, rel_stem, index, where)
    for i, obj in enumerate(root.findall("object"), start=1):
        name = _text(obj, "name")
        owhere = f"{where}: object {i} ({name!r})"
        if not name:
            raise LabelError(f"{owhere}: object has no <name>; give it a class")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise LabelError(f"{owhere}: object has no <bndbox>; alloop imports boxes only")
        xmin, ymin, xmax, ymax = (_number(bnd, k, owhere) for k in ("xmin", "ymin", "xmax", "ymax"))
        x0, y0 = xmin, ymin
        if origin == 1:
            x0 = 0.0 if 0 <= xmin < 1 else xmin - 1
            y0 = 0.0 if 0 <= ymin < 1 else ymin - 1
        extra = {k: _text(obj, k) for k in ("difficult", "truncated", "occluded")}
        raw.boxes.append((Box(x0, y0, xmax, ymax, name, attributes=clean_attributes(extra)), owhere))
    return raw


def _subset_ids(path: Path) -> list[str]:
    """Image ids from ``ImageSets/Main/<subset>.txt`` (not the ``<class>_<subset>.txt`` lists)."""
    lists = path / LISTS if path.is_dir() else None
    if lists is None or not lists.is_dir():
        return []
    ids: list[str] = []
    for f in sorted(lists.glob("*.txt")):
        if "_" in f.stem:
            continue
        ids += [ln.strip() for ln in _read_text(f).splitlines() if ln.strip() and not ln.startswith("#")]
    return ids


def _labelmap(path: Path) -> list[str]:
    """Class names from datumaro's ``labelmap.txt`` (``name:color:parts:actions``), background left out."""
    f = path / LABELMAP if path.is_dir() else None
    if f is None or not f.is_file():
        return []
    names = []
    for line in _read_text(f).splitlines():
        if line.strip() and not line.startswith("#"):
            name = line.split(":", 1)[0].strip()
            if name and name != "background":
                names.append(name)
    return names


def _read_text(f: Path) -> str:
    try:
        return f.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelError(f"{f}: not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    except OSError as e:
        raise LabelError(f"{f}: cannot read ({e.strerror}); check the path") from e


def read(path: Path, *, index, origin: int | None = None, **_: object) -> ParsedLabels:
    """Parse one VOC XML file, a folder of them (searched recursively), or a VOC dataset root."""
    files = _files(path)
    listed = _subset_ids(path)
    if not files and not listed:
        raise LabelError(f"{path}: no .xml files found; point --labels at the Pascal VOC Annotations folder")
    base = _base(path)
    images, stems = [], set()
    for f in files:
        stem = f.relative_to(base).with_suffix("").as_posix()
        stems.add(stem)
        images.append(_parse_file(f, stem, index, origin))
    for stem in dict.fromkeys(listed):
        if stem not in stems:  # listed in a subset, no XML: datumaro's way of saying "no objects"
            images.append(RawImage(stem, f"{path / LISTS}: {stem!r}", by_stem=True))
    return ParsedLabels(images, declared_classes=_labelmap(path))


# -- writing ---------------------------------------------------------------------------------------

def _num(v: float) -> str:
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


def _xml(ann: ImageAnnotation) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = IMAGES
    ET.SubElement(root, "filename").text = ann.file_name
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "alloop"
    ET.SubElement(source, "annotation").text = "alloop (0-based pixel corners)"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(ann.width)
    ET.SubElement(size, "height").text = str(ann.height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    for box in ann.boxes:
        attrs = dict(box.attributes)
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = box.label
        ET.SubElement(obj, "pose").text = "Unspecified"
        for key in ("truncated", "occluded", "difficult"):
            ET.SubElement(obj, key).text = "0" if attrs.get(key, "0") in ("0", "") else "1"
        bnd = ET.SubElement(obj, "bndbox")
        for key, v in zip(("xmin", "ymin", "xmax", "ymax"), (box.x0, box.y0, box.x1, box.y1)):
            ET.SubElement(bnd, key).text = _num(v)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_training_set(
    annotations: Sequence[ImageAnnotation],
    out_dir: Path,
    *,
    image_root: Path,
    classes: Sequence[str],
    val: Sequence[ImageAnnotation] = (),
    **_: object,
) -> Path:
    """A VOC dataset under ``out_dir`` (see the module doc); returns ``out_dir``."""
    check_project_classes((*annotations, *val), classes)
    bad = [c for c in classes if ":" in c or c != c.strip() or c == "background"]
    if bad:
        raise LabelError(
            f"class {bad[0]!r} cannot be written to VOC's labelmap.txt (':' , outer spaces or the reserved "
            "name 'background'); rename the class"
        )
    with StagedDir(out_dir) as tmp:
        for split, anns in (("train", annotations), ("val", val)):
            ids = []
            for ann in anns:
                stem = str(PurePosixPath(ann.file_name).with_suffix(""))
                ids.append(stem)
                place_image(Path(image_root) / ann.file_name, tmp / IMAGES / ann.file_name)
                put(tmp / ANNOTATIONS / f"{stem}.xml", _xml(ann))
            if anns or split == "train":
                put(tmp / LISTS / f"{split}.txt", "".join(f"{i}\n" for i in ids))
        (tmp / ANNOTATIONS).mkdir(exist_ok=True)
        labelmap = "# label:color_rgb:parts:actions\nbackground:0,0,0::\n" + "".join(f"{c}:::\n" for c in classes)
        put(tmp / LABELMAP, labelmap)
    return Path(out_dir)
