"""CVAT "CVAT for images 1.1" XML import (https://docs.cvat.ai/docs/dataset_management/formats/format-xml/).

Shape::

    <annotations><version>1.1</version><meta>...</meta>
      <image id="0" name="row_01/apple_001.jpg" width="640" height="480">
        <box label="apple" source="manual" occluded="0" xtl="10.5" ytl="20" xbr="110" ybr="220"
             z_order="0" rotation="0.0"><attribute name="kind">red</attribute></box>
        <tag label="..."/>
      </image>
    </annotations>

``xtl/ytl/xbr/ybr`` are corners in absolute pixels, continuous coordinates (used as is). CVAT lists
every image of the task, so an image with no ``box`` is labeled "no objects". ``occluded="1"`` is
kept as the ``occluded`` attribute and ``<attribute>`` children under their names. ``rotation``
other than 0, other shapes (polygon, points, mask, ...), and ``<track>`` elements (a "CVAT for
video" export) are errors. Accepted as the ``.xml``, or the export zip / folder holding
``annotations.xml``.
"""

from __future__ import annotations

import math
from pathlib import Path

from alloop.boxes import Box
from alloop.errors import LabelError
from alloop.formats.records import (
    ParsedLabels,
    RawImage,
    clean_attributes,
    load_xml,
    parse_xml,
    read_member,
    zip_members,
)

_SHAPES = {"polygon", "polyline", "points", "mask", "skeleton", "ellipse", "cuboid"}


def _zip_xml(path: Path) -> str | None:
    names = [n for n in zip_members(path) if n.rsplit("/", 1)[-1] == "annotations.xml"]
    return min(names, key=len) if names else None


def sniff(path: Path) -> bool:
    """An XML file whose root is <annotations>, or a zip/folder with annotations.xml."""
    if path.is_dir():
        return (path / "annotations.xml").is_file()
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix == ".zip":
        try:
            return _zip_xml(path) is not None
        except LabelError:
            return False
    if suffix == ".xml":
        with path.open("rb") as f:
            head = f.read(4096)
        return b"<annotations" in head
    return False


def _float(elem, key: str, where: str) -> float:
    text = elem.get(key)
    try:
        return float(text)
    except (TypeError, ValueError):
        raise LabelError(f"{where}: attribute {key}={text!r} is not a number; fix that box") from None


def _int_attr(elem, key: str, where: str) -> int | None:
    text = elem.get(key)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise LabelError(f"{where}: {key}={text!r} is not an integer; fix that image") from None
    if value < 0:
        raise LabelError(f"{where}: {key}={text!r} is negative; fix that image")
    return value


def parse(root, source: str) -> ParsedLabels:
    """Parse a decoded CVAT for images XML tree."""
    if root.tag != "annotations":
        raise LabelError(
            f"{source}: root element is <{root.tag}>, not <annotations>; "
            "export from CVAT as 'CVAT for images 1.1'"
        )
    if root.find("track") is not None:
        raise LabelError(
            f"{source}: has <track> elements (a 'CVAT for video' export); "
            "export the task as 'CVAT for images 1.1'"
        )
    parsed = ParsedLabels([])
    labels = root.findall("meta/task/labels/label/name") or root.findall("meta/project/labels/label/name")
    parsed.declared_classes = [e.text or "" for e in labels]
    seen_ids: set[str] = set()
    for i, image in enumerate(root.iter("image")):
        name = image.get("name")
        if not name:
            raise LabelError(f"{source}: <image> number {i + 1} has no name attribute; re-export from CVAT")
        where = f"{source}: image {name!r} (id {image.get('id')})"
        iid = image.get("id")
        if iid is not None:
            if iid in seen_ids:
                raise LabelError(f"{where}: image id {iid} appears twice; re-export from CVAT")
            seen_ids.add(iid)
        width, height = _int_attr(image, "width", where), _int_attr(image, "height", where)
        raw = RawImage(name, where, width or None, height or None)
        for j, child in enumerate(image):
            if child.tag == "tag":
                continue
            if child.tag in _SHAPES:
                raise LabelError(
                    f"{where}: has a {child.tag} shape ({child.get('label')!r}); alloop imports boxes only, "
                    "convert it to a rectangle or delete it in CVAT"
                )
            if child.tag != "box":
                continue
            label = child.get("label")
            bwhere = f"{where} box {j + 1} ({label!r})"
            if not label:
                raise LabelError(f"{bwhere}: box has no label; give it a label in CVAT")
            x0, y0, x1, y1 = (_float(child, k, bwhere) for k in ("xtl", "ytl", "xbr", "ybr"))
            rotation = _float(child, "rotation", bwhere) if child.get("rotation") else 0.0
            if not math.isfinite(rotation) or rotation % 360 != 0:
                raise LabelError(
                    f"{bwhere}: box is rotated by {rotation} degrees; alloop needs axis-aligned boxes, "
                    "set rotation to 0 in CVAT"
                )
            extra: dict[str, object] = {"occluded": child.get("occluded")}
            for attr in child.findall("attribute"):
                key = attr.get("name")
                if key:
                    extra[key] = (attr.text or "").strip()
            raw.boxes.append((Box(x0, y0, x1, y1, label, attributes=clean_attributes(extra)), bwhere))
        parsed.images.append(raw)
    return parsed


def read(path: Path, **_: object) -> ParsedLabels:
    """Parse annotations.xml, or the CVAT export zip / folder holding it."""
    source = str(path)
    if path.is_dir():
        xml = path / "annotations.xml"
        if not xml.is_file():
            raise LabelError(
                f"{source}: no annotations.xml inside; export from CVAT as 'CVAT for images 1.1'"
            )
        return parse(load_xml(xml), str(xml))
    if path.suffix.lower() == ".zip":
        member = _zip_xml(path)
        if member is None:
            raise LabelError(
                f"{source}: zip has no annotations.xml; export as 'CVAT for images 1.1' "
                "(or pass --format cvat for a COCO 1.0 export)"
            )
        data = read_member(path, member)
        if not data.strip():
            raise LabelError(f"{source}!{member}: file is empty, not XML; re-export it from CVAT")
        return parse(parse_xml(data, f"{source}!{member}"), f"{source}!{member}")
    return parse(load_xml(path), source)
