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
video" export) are errors. Accepted as the ``.xml``, the export zip / folder holding
``annotations.xml``, or a folder of ``<subset>.xml`` files (datumaro's ``cvat`` export: ``train.xml``,
``val.xml``, ``images/``).

Layout written by :func:`write_training_set` (datumaro's ``cvat`` import reads it as is; zip the
folder to upload it to CVAT as "CVAT 1.1")::

    out/train.xml   out/val.xml   out/images/<file_name>   (hard links)
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import LabelError
from alloop.formats.coco import merge
from alloop.formats.records import (
    ParsedLabels,
    RawImage,
    check_project_classes,
    clean_attributes,
    load_xml,
    parse_xml,
    read_member,
    zip_members,
)
from alloop.formats.staging import StagedDir, place_image, put

_SHAPES = {"polygon", "polyline", "points", "mask", "skeleton", "ellipse", "cuboid"}


def _zip_xml(path: Path) -> str | None:
    names = [n for n in zip_members(path) if n.rsplit("/", 1)[-1] == "annotations.xml"]
    return min(names, key=len) if names else None


def _is_cvat_xml(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(4096)
    return b"<annotations" in head


def _subset_files(path: Path) -> list[Path]:
    """``annotations.xml`` in a folder, else its top-level ``<subset>.xml`` files (datumaro's export)."""
    if (path / "annotations.xml").is_file():
        return [path / "annotations.xml"]
    return sorted(f for f in path.glob("*.xml") if f.is_file() and _is_cvat_xml(f))


def sniff(path: Path) -> bool:
    """An XML file whose root is <annotations>, or a zip/folder with annotations.xml or <subset>.xml."""
    if path.is_dir():
        return bool(_subset_files(path))
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix == ".zip":
        try:
            return _zip_xml(path) is not None
        except LabelError:
            return False
    if suffix == ".xml":
        return _is_cvat_xml(path)
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
        files = _subset_files(path)
        if not files:
            raise LabelError(
                f"{source}: no annotations.xml (nor <subset>.xml) inside; export from CVAT as "
                "'CVAT for images 1.1'"
            )
        return merge([parse(load_xml(f), str(f)) for f in files])
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


# -- writing ---------------------------------------------------------------------------------------

def _num(v: float) -> str:
    return repr(float(v))


def _document(anns: Sequence[ImageAnnotation], subset: str, classes: Sequence[str]) -> bytes:
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = subset
    ET.SubElement(task, "size").text = str(len(anns))
    ET.SubElement(task, "mode").text = "annotation"
    used: dict[str, set[str]] = {c: set() for c in classes}
    for ann in anns:
        for box in ann.boxes:
            used[box.label] |= {k for k, _ in box.attributes if k != "occluded"}
    labels = ET.SubElement(task, "labels")
    for c in classes:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = c
        attributes = ET.SubElement(label, "attributes")
        for key in sorted(used[c]):
            attr = ET.SubElement(attributes, "attribute")
            ET.SubElement(attr, "name").text = key
            ET.SubElement(attr, "input_type").text = "text"
    for i, ann in enumerate(anns):
        image = ET.SubElement(root, "image", id=str(i), name=ann.file_name, width=str(ann.width),
                              height=str(ann.height))
        for box in ann.boxes:
            attrs = dict(box.attributes)
            occluded = attrs.pop("occluded", "0") not in ("0", "")
            elem = ET.SubElement(image, "box", label=box.label, occluded=str(int(occluded)),
                                 xtl=_num(box.x0), ytl=_num(box.y0), xbr=_num(box.x1), ybr=_num(box.y1),
                                 z_order="0")
            for key, value in sorted(attrs.items()):
                ET.SubElement(elem, "attribute", name=key).text = value
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
    """CVAT for images 1.1, one XML per split (see the module doc); returns ``train.xml``."""
    check_project_classes((*annotations, *val), classes)
    with StagedDir(out_dir) as tmp:
        for split, anns in (("train", annotations), ("val", val)):
            if split == "val" and not anns:
                continue
            for ann in anns:
                place_image(Path(image_root) / ann.file_name, tmp / "images" / ann.file_name)
            put(tmp / f"{split}.xml", _document(anns, split, classes))
    return Path(out_dir) / "train.xml"
