"""KITTI object labels, laid out as NVIDIA TAO reads them.

TAO's layout (https://docs.nvidia.com/tao/tao-toolkit/text/data_annotation_format.html): a dataset
root with ``images/`` and ``labels/``; an image and its label file share the name before the
extension. One line per object, 15 space-separated fields::

    class truncation occlusion alpha x0 y0 x1 y1 height width length x y z rotation_y
    apple 0.00 0 0.00 10.00 20.00 110.50 220.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00

The box is corners in absolute pixels (0-based, continuous: used as is). TAO's inference output adds a
16th field, the confidence (read by :func:`read_detections`). An empty label file means "no objects"
(TAO trains on it as a negative image); an image with no label file is not labeled.

Class names are written lower-case with spaces as ``_`` (TAO lower-cases class names; KITTI splits
on spaces); ``kitti_class_map.json`` in the export keeps the way back to the project's names, and on
import without it names are matched to the project's case-insensitively.

Layout written by :func:`write_training_set`::

    out/train/images/<name>.<ext>  out/train/labels/<name>.txt
    out/val/images/...             out/val/labels/...          (when a validation split is given)
    out/classes.txt                out/kitti_class_map.json

Images in sub-folders are flattened (``row_01/a.jpg`` -> ``row_01__a.jpg``; TAO reads flat folders).
Truncation and occlusion come from the box attributes ``truncated``/``occluded``; non-zero alpha and
3-D fields read from a KITTI file survive a round trip in the ``kitti_3d`` attribute.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from alloop.boxes import Box, ImageAnnotation, check_box
from alloop.errors import LabelError
from alloop.formats.names import ImageIndex
from alloop.formats.records import ParsedLabels, RawImage, clean_attributes
from alloop.formats.staging import StagedDir, place_image

MAP_FILE = "kitti_class_map.json"
_SKIP = {"classes.txt", "labels.txt", "readme.txt", "label_colors.txt"}


def kitti_name(name: str) -> str:
    """The class name as written in KITTI files for TAO."""
    return "_".join(name.strip().lower().split())


def flat_stem(file_name: str) -> str:
    """``row_01/apple_001.jpg`` -> ``row_01__apple_001`` (the label/image name in TAO's flat folders)."""
    p = PurePosixPath(file_name)
    return "__".join((*p.parent.parts, p.stem))


def _num(v: float) -> str:
    """Two decimals, KITTI's habit, unless that would lose precision."""
    text = f"{v:.2f}"
    return text if float(text) == v else repr(float(v))


# -- reading ---------------------------------------------------------------------------------------

def _label_dir(path: Path) -> Path:
    for sub in ("labels", "label_2"):
        if (path / sub).is_dir():
            return path / sub
    return path


def _label_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    root = _label_dir(path)
    # Class lists and notes beside the labels are not label files (only at the top: an image may be
    # called classes.jpg, and its labels then classes.txt inside the label folder).
    return sorted(
        p for p in root.rglob("*.txt")
        if not p.name.startswith(".") and not (p.parent == path and p.name.lower() in _SKIP)
    )


def _first_fields(files: list[Path]) -> list[str] | None:
    for f in files[:50]:
        try:
            with f.open("r", encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        return line.split()
        except (OSError, UnicodeDecodeError):
            return None
    return None


def sniff(path: Path) -> bool:
    """Label .txt files whose first line has 15 (or 16) fields and a class name first."""
    if path.is_file() and path.suffix.lower() != ".txt":
        return False
    if not path.exists():
        return False
    fields = _first_fields(_label_files(path))
    if not fields or len(fields) not in (15, 16):
        return False
    try:
        float(fields[0])
        return False
    except ValueError:
        return True


def _class_map(path: Path) -> dict[str, str]:
    """The export's kitti -> project name map, looked for next to and above the label dir."""
    start = path if path.is_dir() else path.parent
    for folder in (start, start.parent, start.parent.parent):
        f = folder / MAP_FILE
        if f.is_file():
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise LabelError(f"{f}: not a valid class map ({e}); delete it or re-export") from e
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise LabelError(
                    f"{f}: must map KITTI class names to project class names; delete it or re-export"
                )
            return dict(data)
    return {}


def _aliases(names: set[str], classes: Sequence[str], mapping: dict[str, str]) -> dict[str, str]:
    by_kitti: dict[str, list[str]] = {}
    for c in classes:
        by_kitti.setdefault(kitti_name(c), []).append(c)
    out = {}
    for n in names:
        if n in mapping:
            out[n] = mapping[n]
        elif n not in classes and len(by_kitti.get(kitti_name(n), [])) == 1:
            out[n] = by_kitti[kitti_name(n)][0]
    return out


def _read_lines(f: Path) -> list[str]:
    try:
        return f.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise LabelError(f"{f}: not UTF-8 text (byte {e.start}); save the label file as UTF-8") from e
    except OSError as e:
        raise LabelError(f"{f}: cannot read ({e.strerror}); check the path") from e


def _parse_line(fields: list[str], where: str, *, with_score: bool) -> Box:
    expected = 16 if with_score else 15
    if len(fields) != expected:
        if not with_score and len(fields) == 16:
            raise LabelError(
                f"{where}: has 16 fields (a confidence): this is detector output, not labels; "
                "import the labeled files instead"
            )
        raise LabelError(
            f"{where}: has {len(fields)} fields, KITTI needs {expected} "
            "(class truncation occlusion alpha x0 y0 x1 y1 h w l x y z rotation_y"
            f"{' confidence' if with_score else ''}); fix that line"
        )
    try:
        nums = [float(v) for v in fields[1:]]
    except ValueError:
        bad = next(v for v in fields[1:] if not _is_float(v))
        raise LabelError(f"{where}: field {bad!r} is not a number; fix that line") from None
    truncation, occlusion, alpha = nums[0], nums[1], nums[2]
    x0, y0, x1, y1 = nums[3:7]
    rest = nums[7:14]
    if not (math.isfinite(occlusion) and occlusion == int(occlusion) and 0 <= occlusion <= 3):
        raise LabelError(f"{where}: occlusion {fields[2]!r} must be 0, 1, 2 or 3; fix that line")
    if not math.isfinite(truncation) or not 0 <= truncation <= 1:
        raise LabelError(f"{where}: truncation {fields[1]!r} must be between 0 and 1; fix that line")
    extra: dict[str, object] = {"truncated": truncation, "occluded": int(occlusion)}
    if any(v != 0 for v in (alpha, *rest)):
        extra["kitti_3d"] = " ".join(fields[3:4] + fields[8:15])  # alpha, dimensions, location, rotation_y
    score = nums[14] if with_score else None
    return Box(x0, y0, x1, y1, fields[0], score, clean_attributes(extra))


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def read(path: Path, *, classes: Sequence[str] = (), **_: object) -> ParsedLabels:
    """Parse a KITTI label dir (dataset root with labels/, or the label dir itself, or one .txt)."""
    files = _label_files(path)
    if not files:
        raise LabelError(f"{path}: no .txt label files found; point --labels at the KITTI labels folder")
    root = path if path.is_file() else _label_dir(path)
    parsed = ParsedLabels([])
    names: set[str] = set()
    for f in files:
        stem = f.stem if path.is_file() else f.relative_to(root).with_suffix("").as_posix()
        raw = RawImage(stem, f"{f}", by_stem=True)
        for lineno, line in enumerate(_read_lines(f), start=1):
            if not line.strip():
                continue
            where = f"{f}:{lineno}"
            box = _parse_line(line.split(), where, with_score=False)
            names.add(box.label)
            raw.boxes.append((box, where))
        parsed.images.append(raw)
    parsed.class_aliases = _aliases(names, classes, _class_map(path))
    return parsed


def read_detections(
    label_dir: Path, *, classes: Sequence[str], images: Mapping[str, tuple[int, int]] | None = None
) -> dict[str, tuple[Box, ...]]:
    """TAO inference labels (16 fields, the last the confidence) as scored boxes per image.

    Keys are label-file stems relative to ``label_dir``, or the project's file names when ``images``
    is given (then boxes are clipped to the image, and ones left empty dropped). Class names map back
    to ``classes`` case-insensitively; an unknown class or a malformed line is a LabelError. Boxes
    with non-positive size are dropped (a detector may emit them); NaN is an error.
    """
    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise LabelError(f"{label_dir}: not a directory of TAO inference label files; check the path")
    files = _label_files(label_dir)
    root = _label_dir(label_dir)
    mapping = _class_map(label_dir)
    index = ImageIndex(images.keys()) if images is not None else None
    out: dict[str, tuple[Box, ...]] = {}
    for f in files:
        stem = f.relative_to(root).with_suffix("").as_posix()
        key = index.resolve_stem(stem, str(f)) if index is not None else stem
        boxes = []
        for lineno, line in enumerate(_read_lines(f), start=1):
            if not line.strip():
                continue
            where = f"{f}:{lineno}"
            box = _parse_line(line.split(), where, with_score=True)
            label = _aliases({box.label}, classes, mapping).get(box.label, box.label)
            if label not in classes:
                raise LabelError(
                    f"{where}: class {box.label!r} is not a project class ({', '.join(classes)}); "
                    "check the model's class mapping"
                )
            coords = (box.x0, box.y0, box.x1, box.y1, box.score)
            if not all(math.isfinite(c) for c in coords):
                raise LabelError(f"{where}: non-finite value in {coords}; the model output is corrupt")
            if box.x1 <= box.x0 or box.y1 <= box.y0:
                continue
            box = Box(box.x0, box.y0, box.x1, box.y1, label, box.score)
            if images is not None:
                w, h = images[key]
                box = check_box(box, w, h, where=where, clip=True)
                if box is None:
                    continue
            boxes.append(box)
        if key in out:
            raise LabelError(f"{f}: a second label file for image {key!r}; keep one per image")
        out[key] = tuple(boxes)
    return out


# -- writing ---------------------------------------------------------------------------------------

def _line(box: Box, names: dict[str, str]) -> str:
    attrs = dict(box.attributes)
    truncation = float(attrs.get("truncated", "0") or 0)
    occ_text = attrs.get("occluded", "0")
    try:
        occlusion = int(float(occ_text))
    except ValueError:
        occlusion = 0 if occ_text.lower() in ("false", "no", "") else 1
    extra = attrs.get("kitti_3d", "").split()
    alpha, rest = (extra[0], extra[1:]) if len(extra) == 8 else ("0.00", ["0.00"] * 7)
    fields = [names[box.label], _num(truncation), str(occlusion), alpha,
              *(_num(v) for v in (box.x0, box.y0, box.x1, box.y1)), *rest]
    return " ".join(fields)


def _write_split(
    anns: Sequence[ImageAnnotation], split_dir: Path, image_root: Path, names: dict[str, str]
) -> None:
    (split_dir / "images").mkdir(parents=True)
    (split_dir / "labels").mkdir(parents=True)
    seen: dict[str, str] = {}
    for ann in anns:
        stem = flat_stem(ann.file_name)
        if stem.lower() in seen:
            raise LabelError(
                f"images {seen[stem.lower()]!r} and {ann.file_name!r} both become {stem!r} in TAO's flat "
                "KITTI folders; rename one of them"
            )
        seen[stem.lower()] = ann.file_name
        suffix = PurePosixPath(ann.file_name).suffix
        place_image(image_root / ann.file_name, split_dir / "images" / (stem + suffix))
        lines = "".join(f"{_line(b, names)}\n" for b in ann.boxes)
        (split_dir / "labels" / f"{stem}.txt").write_text(lines, encoding="utf-8")


def write_training_set(
    annotations: Sequence[ImageAnnotation],
    out_dir: Path,
    *,
    image_root: Path,
    classes: Sequence[str],
    val: Sequence[ImageAnnotation] = (),
    **_: object,
) -> Path:
    """TAO's KITTI layout under ``out_dir`` (see the module doc); returns ``out_dir``."""
    names: dict[str, str] = {}
    for c in classes:
        k = kitti_name(c)
        if not k:
            raise LabelError(f"class {c!r}: empty name cannot be written to KITTI; rename the class")
        clash = [o for o, kn in names.items() if kn == k]
        if clash:
            raise LabelError(
                f"classes {clash[0]!r} and {c!r} both become {k!r} in KITTI "
                "(TAO lower-cases names); rename one"
            )
        names[c] = k
    for ann in (*annotations, *val):
        for box in ann.boxes:
            if box.label not in names:
                raise LabelError(
                    f"image {ann.file_name!r}: class {box.label!r} is not a project class; add it first"
                )
    with StagedDir(out_dir) as tmp:
        _write_split(annotations, tmp / "train", Path(image_root), names)
        if val:
            _write_split(val, tmp / "val", Path(image_root), names)
        (tmp / "classes.txt").write_text("".join(f"{names[c]}\n" for c in classes), encoding="utf-8")
        (tmp / MAP_FILE).write_text(
            json.dumps({names[c]: c for c in classes}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return Path(out_dir)
