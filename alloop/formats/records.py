"""The values every format shares, and the one place parsed labels become a validated LabelSet.

A format reader only parses: it turns its file into :class:`RawImage` records (the tool's image
name, the size it declares, boxes with class *names*). :func:`build_label_set` then resolves
names, checks sizes, classes, boxes and duplicates for every format alike, and raises before
returning anything, so an import is all of a file or nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alloop.boxes import Box, ImageAnnotation, LabelSet, check_box
from alloop.errors import LabelError
from alloop.formats.names import ImageIndex


@dataclass(frozen=True)
class BatchItem:
    """One image of a batch to export for labeling."""

    file_name: str  # posix path relative to the image root (the project's id for the image)
    path: Path  # absolute path to the image file
    width: int
    height: int
    predictions: tuple[Box, ...] = ()  # the current model's boxes (score set), for pre-annotation
    score: float | None = None  # the image's uncertainty score (task data / comments)


@dataclass(frozen=True)
class ImportOptions:
    """How strict an import is."""

    clip_boxes: bool = False  # clip out-of-image boxes (warn) instead of failing
    add_classes: bool = False  # accept class names not in the project
    allow_duplicates: bool = False  # identical duplicate boxes: error unless set (then dropped, warned)
    # Pascal VOC pixel origin: None = decide per file from its <source> (the original VOC datasets are
    # 1-based; datumaro, CVAT, LabelImg and Label Studio write 0-based), else 0 or 1 for every file.
    voc_origin: int | None = None

    def __post_init__(self) -> None:
        if self.voc_origin not in (None, 0, 1):
            raise LabelError(f"--voc-origin {self.voc_origin!r}: must be 0 or 1 (or left out to decide per file)")


@dataclass
class RawImage:
    """One image as a label file describes it, before any validation."""

    name: str  # the image name as the tool wrote it
    where: str  # "<file>: <record>" prefix for messages
    width: int | None = None  # the size the tool declares, when it declares one
    height: int | None = None
    boxes: list[tuple[Box, str]] = field(default_factory=list)  # (box, where) pairs
    by_stem: bool = False  # ``name`` is a label file's stem path (KITTI/VOC/YOLO), not an image name
    resolved: str | None = None  # set by readers that resolve names themselves (need the size first)


@dataclass
class ParsedLabels:
    """What a reader found in one label file or directory."""

    images: list[RawImage]
    warnings: list[str] = field(default_factory=list)
    # Class names in the file's own order (COCO categories, classes.txt); new ones are appended
    # to the project's classes in this order when --add-classes is given.
    declared_classes: list[str] = field(default_factory=list)
    # Maps names as written in the file to the project's names (KITTI lower-cases them).
    class_aliases: dict[str, str] = field(default_factory=dict)


def _size_mismatch(raw: RawImage, name: str, width: int, height: int) -> LabelError:
    hint = "re-export the labels from the tool that saw these images"
    if (raw.width, raw.height) == (height, width):
        hint = "the labeling tool applied the image's EXIF rotation; strip EXIF orientation and relabel"
    return LabelError(
        f"{raw.where}: image {name!r} is {raw.width}x{raw.height} in the label file but "
        f"{width}x{height} in the project; {hint}"
    )


EDGE_SLACK = 0.5  # px; boxes.check_box accepts this much outside the image without --clip-boxes


def _outside(box: Box, width: int, height: int) -> float:
    """How far (px) the box sticks out of the image, on its worst side."""
    return max(-box.x0, -box.y0, box.x1 - width, box.y1 - height, 0.0)


class _Tally:
    """Per-box events (clipped, dropped, duplicate) summarised as one warning line each."""

    _TEXT = {
        "clipped": "box(es) clipped to their image (--clip-boxes); worst",
        "dropped": "box(es) entirely outside their image dropped (--clip-boxes); first",
        "duplicate": "duplicate box(es) dropped (--allow-duplicates); first",
    }

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.worst: dict[str, tuple[float, str]] = {}

    def add(self, kind: str, amount: float, where: str) -> None:
        self.count[kind] = self.count.get(kind, 0) + 1
        if kind not in self.worst or amount > self.worst[kind][0]:
            self.worst[kind] = (amount, where)

    def lines(self, source: str) -> list[str]:
        out = []
        for kind, text in self._TEXT.items():
            if kind in self.count:
                where = self.worst[kind][1]
                where = where[len(source) + 2 :] if where.startswith(source + ": ") else where
                out.append(f"{source}: {self.count[kind]} {text}: {where}")
        return out


def _dup_key(box: Box) -> tuple:
    return (box.label, *(round(c, 3) for c in (box.x0, box.y0, box.x1, box.y1)))


def build_label_set(
    parsed: ParsedLabels,
    *,
    index: ImageIndex,
    sizes: Mapping[str, tuple[int, int]],
    classes: Sequence[str],
    options: ImportOptions,
    source: str,
) -> tuple[LabelSet, list[str]]:
    """Resolve, validate and assemble; raise LabelError on the first problem (nothing is returned)."""
    warnings = list(parsed.warnings)
    known = list(classes)
    known_set = set(known)

    # Class names: every unknown name in the whole file at once, so one fix covers them all.
    used: dict[str, str] = {}  # unknown name -> where it first appears
    for raw in parsed.images:
        for box, where in raw.boxes:
            label = parsed.class_aliases.get(box.label, box.label)
            if label not in known_set and label not in used:
                used[label] = where
    declared_new = options.add_classes and any(c and c not in known_set for c in parsed.declared_classes)
    if used or declared_new:
        if used and not options.add_classes:
            shown = ", ".join(repr(c) for c in known) or "none yet"
            first = next(iter(used.values()))
            first = first[len(source) + 2 :] if first.startswith(source + ": ") else first
            raise LabelError(
                f"{source}: unknown class name(s) {', '.join(repr(c) for c in used)} (first at {first}); "
                f"the project knows {shown}; fix the labels or pass --add-classes to add them"
            )
        # The file's declared classes come along, boxes or not (a COCO category, a CVAT label, a
        # data.yaml name without boxes yet is still a class of that dataset).
        order = [c for c in dict.fromkeys(parsed.declared_classes) if c and c not in known_set] + [
            c for c in used if c not in parsed.declared_classes
        ]
        known += order
        warnings.append(f"{source}: added class(es) {', '.join(order)}")

    seen: dict[str, str] = {}
    out: list[ImageAnnotation] = []
    tally = _Tally()
    for raw in parsed.images:
        if raw.resolved is not None:
            name = raw.resolved
        elif raw.by_stem:
            name = index.resolve_stem(raw.name, raw.where)
        else:
            name = index.resolve(raw.name, raw.where)
        if name in seen:
            raise LabelError(
                f"{raw.where}: image {name!r} is labeled twice in this file (also at {seen[name]}); "
                "keep one record per image"
            )
        seen[name] = raw.where
        width, height = sizes[name]
        if raw.width and raw.height and (raw.width, raw.height) != (width, height):
            raise _size_mismatch(raw, name, width, height)
        boxes: list[Box] = []
        keys: set[tuple] = set()
        for box, where in raw.boxes:
            label = parsed.class_aliases.get(box.label, box.label)
            if label != box.label:
                box = Box(box.x0, box.y0, box.x1, box.y1, label, box.score, box.attributes)
            if box.score is not None and not math.isfinite(box.score):
                raise LabelError(f"{where}: score {box.score} is not finite; fix or delete that annotation")
            checked = check_box(box, width, height, where=where, clip=options.clip_boxes)
            if checked is None:
                tally.add("dropped", 0.0, f"{where}, outside the {width}x{height} image")
                continue
            if checked is not box:
                # Up to half a pixel outside is the tools' rounding at the border: snapped silently.
                off = _outside(box, width, height)
                if off > EDGE_SLACK:
                    tally.add("clipped", off, f"{where}, {off:.3g} px outside the {width}x{height} image")
            key = _dup_key(checked)
            if key in keys:
                if not options.allow_duplicates:
                    raise LabelError(
                        f"{where}: duplicate of an earlier {checked.label!r} box in {name!r}; "
                        "delete one or pass --allow-duplicates to drop duplicates"
                    )
                tally.add("duplicate", 0.0, where)
                continue
            keys.add(key)
            boxes.append(checked)
        out.append(ImageAnnotation(name, width, height, tuple(boxes)))
    warnings += tally.lines(source)
    return LabelSet(tuple(known), tuple(out), source), warnings


def check_project_classes(annotations: Sequence[ImageAnnotation], classes: Sequence[str] | Mapping[str, object]) -> None:
    """Every box's class is one of ``classes``, else a LabelError naming the image and the class (exports)."""
    for ann in annotations:
        for box in ann.boxes:
            if box.label not in classes:
                raise LabelError(
                    f"image {ann.file_name!r}: class {box.label!r} is not a project class; add it first"
                )


def finite_number(value: object, what: str, where: str) -> float:
    """A JSON/XML number as float; LabelError naming the field when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LabelError(f"{where}: {what} must be a number, got {value!r}; fix that record")
    try:
        return float(value)
    except OverflowError:
        # JSON integers have no size limit; one past float's range is a corrupt file, not a box.
        digits = len(str(abs(value)))
        raise LabelError(
            f"{where}: {what} is a {digits}-digit integer, too large for a pixel coordinate; fix that record"
        ) from None




# -- reading files: one message shape for every malformed file ----------------------------------

def load_json(path: Path) -> object:
    """Parse a JSON file; LabelError naming the file, line and column when it is not valid JSON."""

    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); export it as UTF-8 JSON"
        ) from e
    except OSError as e:
        raise LabelError(f"{path}: cannot read ({e.strerror}); check the path") from e
    return parse_json(text, str(path))


def parse_json(text: str, source: str) -> object:
    """Parse JSON text read from ``source``; LabelError with line and column when malformed."""
    import json

    if not text.strip():
        raise LabelError(f"{source}: file is empty, not JSON; re-export it from your labeling tool")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LabelError(
            f"{source}: malformed JSON at line {e.lineno} column {e.colno} ({e.msg}); "
            "re-export it from your labeling tool"
        ) from e
    except RecursionError as e:
        raise LabelError(f"{source}: JSON nested too deeply; re-export it from your labeling tool") from e


def parse_xml(data: bytes, source: str):
    """Parse XML bytes with defusedxml; LabelError with line and column when malformed.

    Entity and DTD declarations, external references and entity expansion are refused by the parser
    itself (in any encoding, UTF-16 included), whatever the expat version underneath.
    """
    import xml.etree.ElementTree as ET

    import defusedxml
    from defusedxml.ElementTree import fromstring

    try:
        return fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException as e:
        raise LabelError(
            f"{source}: XML declares a DTD or entities ({type(e).__name__}), which label tools never "
            "write; re-export the file"
        ) from e
    except ET.ParseError as e:
        line, col = e.position
        raise LabelError(
            f"{source}: malformed XML at line {line} column {col + 1} ({str(e).split(':')[0]}); "
            "re-export it from your labeling tool"
        ) from e


def load_xml(path: Path):
    """Parse an XML file (see :func:`parse_xml`)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LabelError(f"{path}: cannot read ({e.strerror}); check the path") from e
    if not data.strip():
        raise LabelError(f"{path}: file is empty, not XML; re-export it from your labeling tool")
    return parse_xml(data, str(path))


# -- box attributes: one vocabulary across formats -------------------------------------------------
# occluded (KITTI 0-3, CVAT bool -> "1"), truncated (KITTI float, VOC 0/1), difficult (VOC), iscrowd
# (COCO). Their default values are dropped so a box without attributes round-trips to one without.
DEFAULTED = {"occluded", "truncated", "difficult", "iscrowd"}


def attr_value(value: object) -> str:
    """One attribute value as the string Box.attributes stores."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def clean_attributes(pairs: dict[str, object]) -> tuple[tuple[str, str], ...]:
    """Sorted (key, value) pairs with None and known defaults dropped."""
    out = {}
    for key, value in pairs.items():
        if value is None:
            continue
        text = attr_value(value)
        if key in DEFAULTED:
            try:
                if float(text) == 0:
                    continue
            except ValueError:
                if text.lower() in ("false", "no", ""):
                    continue
        out[key] = text
    return tuple(sorted(out.items()))


# -- zip archives (CVAT exports are zips): members are read, never extracted ---------------------
MAX_MEMBER_BYTES = 1 << 30


def zip_members(path: Path) -> dict[str, "object"]:
    """The members of a zip archive by name; LabelError when it is not a readable zip."""
    import zipfile

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise LabelError(f"{path}: not a readable zip archive ({e}); download the export again") from e
    with archive:
        return {info.filename: info for info in archive.infolist() if not info.is_dir()}


def read_member(path: Path, name: str) -> bytes:
    """One member's bytes; refuses members that inflate past 1 GiB (a zip bomb, not an export)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
        if info.file_size > MAX_MEMBER_BYTES:
            raise LabelError(
                f"{path}: member {name!r} is {info.file_size} bytes unpacked; not a label export"
            )
        try:
            return archive.read(name)
        except (zipfile.BadZipFile, OSError, RuntimeError) as e:
            raise LabelError(
                f"{path}: member {name!r} cannot be read ({e}); download the export again"
            ) from e


__all__ = [
    "BatchItem",
    "ImportOptions",
    "ParsedLabels",
    "RawImage",
    "attr_value",
    "build_label_set",
    "clean_attributes",
    "finite_number",
    "load_json",
    "load_xml",
    "parse_json",
    "parse_xml",
    "read_member",
    "zip_members",
]
