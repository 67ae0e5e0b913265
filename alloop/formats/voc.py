"""Pascal VOC XML import: one ``<annotation>`` file per image (LabelImg, CVAT "PASCAL VOC 1.1", ...).

Shape::

    <annotation><folder>images</folder><filename>apple_001.jpg</filename>
      <size><width>640</width><height>480</height><depth>3</depth></size>
      <object><name>apple</name><pose>Unspecified</pose><truncated>0</truncated>
        <difficult>0</difficult>
        <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>110</xmax><ymax>220</ymax></bndbox>
      </object>
    </annotation>

Pixel convention: VOC boxes are 1-based inclusive pixel indices (a box covering the whole image is
``xmin=1 .. xmax=W``). alloop's boxes are 0-based continuous corners, so ``x0 = xmin - 1, y0 =
ymin - 1, x1 = xmax, y1 = ymax`` (as detectron2's VOC loader does); a ``0`` minimum, which some
tools write for the image border, is read as the border (0), not as -1.

The image is named by ``<filename>``, tried first joined to the XML's sub-folder (LabelImg writes bare
names); when a bare name is ambiguous, the XML file's own path without ``.xml`` picks among the
candidates; with no ``<filename>``, that path names the image. An unknown or escaping ``<filename>``
is an error, never overridden. A file with no ``<object>`` is "no objects".
``difficult``, ``truncated`` and ``occluded`` become box attributes.
"""

from __future__ import annotations

from pathlib import Path

from alloop.boxes import Box
from alloop.errors import LabelError
from alloop.formats.records import ParsedLabels, RawImage, clean_attributes, load_xml


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.xml") if not p.name.startswith("."))


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
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LabelError(f"{where}: <{tag}> is {text!r}, not a number; fix that box") from None


def _size(root, key: str, where: str) -> int | None:
    text = _text(root, f"size/{key}")
    if text is None or text == "":
        return None
    try:
        value = int(float(text))
    except ValueError:
        raise LabelError(f"{where}: <size><{key}> is {text!r}, not a number; fix the file") from None
    return value if value > 0 else None


def _parse_file(f: Path, rel_stem: str, index) -> RawImage:
    root = load_xml(f)
    where = str(f)
    if root.tag != "annotation":
        raise LabelError(f"{where}: root element is <{root.tag}>, not <annotation>; not a Pascal VOC file")
    filename = _text(root, "filename")
    raw = RawImage(filename or rel_stem, where, _size(root, "width", where), _size(root, "height", where))
    # Resolve here: <filename> is usually a bare name; the XML's own sub-folder / path may
    # disambiguate it, but never overrides it (a filename that is unknown or escapes is an error).
    if not filename:
        raw.resolved = index.resolve_stem(rel_stem, where)
    else:
        folder = rel_stem.rsplit("/", 1)[0] if "/" in rel_stem else ""
        if folder:
            try:
                raw.resolved = index.resolve(f"{folder}/{filename}", where)
            except LabelError:
                pass
        if raw.resolved is None:
            try:
                raw.resolved = index.resolve(filename, where)
            except LabelError as err:
                if "ambiguous" not in str(err):
                    raise
                by_stem = index.resolve_stem(rel_stem, where)
                if by_stem.rsplit("/", 1)[-1] != filename.replace("\\", "/").rsplit("/", 1)[-1]:
                    raise
                raw.resolved = by_stem
    for i, obj in enumerate(root.findall("object"), start=1):
        name = _text(obj, "name")
        owhere = f"{where}: object {i} ({name!r})"
        if not name:
            raise LabelError(f"{owhere}: object has no <name>; give it a class")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise LabelError(f"{owhere}: object has no <bndbox>; alloop imports boxes only")
        xmin, ymin, xmax, ymax = (_number(bnd, k, owhere) for k in ("xmin", "ymin", "xmax", "ymax"))
        x0 = 0.0 if 0 <= xmin < 1 else xmin - 1
        y0 = 0.0 if 0 <= ymin < 1 else ymin - 1
        extra = {k: _text(obj, k) for k in ("difficult", "truncated", "occluded")}
        raw.boxes.append((Box(x0, y0, xmax, ymax, name, attributes=clean_attributes(extra)), owhere))
    return raw


def read(path: Path, *, index, **_: object) -> ParsedLabels:
    """Parse one VOC XML file or a folder of them (searched recursively)."""
    files = _files(path)
    if not files:
        raise LabelError(f"{path}: no .xml files found; point --labels at the Pascal VOC Annotations folder")
    base = path.parent if path.is_file() else path
    images = [_parse_file(f, f.relative_to(base).with_suffix("").as_posix(), index) for f in files]
    return ParsedLabels(images)
