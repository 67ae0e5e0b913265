"""KITTI object labels, laid out as NVIDIA TAO reads them.

TAO's layout (https://docs.nvidia.com/tao/tao-toolkit/text/data_annotation_format.html): a dataset
root with ``images/`` and ``labels/``; an image and its label file share the name before the
extension. One line per object, 15 space-separated fields::

    class truncation occlusion alpha x0 y0 x1 y1 height width length x y z rotation_y
    apple 0.00 0 0.00 10.00 20.00 110.50 220.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00

The box is corners in absolute pixels (0-based, continuous: used as is). TAO's inference output adds a
16th field, the confidence (read by :func:`read_detections`). datumaro (and so CVAT's KITTI export)
writes a 16th field on ground truth too, always ``1.0``: labels whose 16th field is the same on every
line are accepted as ground truth (the field is ignored); a 16th field that varies is a score column,
detector output, and refused. KITTI's "unknown" placeholders for alpha and the 3-D fields (all ``-1``
as datumaro writes them, all ``0``, or KITTI's DontCare ``-10 -1 -1 -1 -1000 -1000 -1000 -10``) carry
nothing and are dropped.

An empty label file means "no objects" (TAO trains on it as a negative image); an image with no label
file is not labeled, except in KITTI's own ``image_2/`` + ``label_2/`` layout, where datumaro writes no
label file for an image without boxes: there an image in ``image_2/`` with no label file is "no
objects". ``dataset_meta.json`` (datumaro's class list) declares the classes, boxes or not.

Class names are written lower-case with spaces as ``_`` (TAO lower-cases class names; KITTI splits
on spaces); ``kitti_class_map.json`` in the export keeps the way back to the project's names, and on
import without it names are matched to the project's case-insensitively.

Layout written by :func:`write_training_set` (datumaro's and CVAT's ``kitti`` import reads it as is;
TAO reads any folder pair its spec names; the TAO trainer asks for ``images/`` + ``labels/``)::

    out/train/image_2/<name>.<ext>  out/train/label_2/<name>.txt
    out/val/image_2/...             out/val/label_2/...          (when a validation split is given)
    out/classes.txt   out/kitti_class_map.json   out/dataset_meta.json (datumaro's class list)

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
from alloop.formats.names import ImageIndex, flat_names
from alloop.formats.records import ParsedLabels, RawImage, check_project_classes, clean_attributes
from alloop.formats.staging import StagedDir, place_image, put

MAP_FILE = "kitti_class_map.json"
META_FILE = "dataset_meta.json"  # datumaro's class list: {"labels": [...]}
_SKIP = {"classes.txt", "labels.txt", "readme.txt", "label_colors.txt"}
# (images folder, labels folder): KITTI's own names, read by datumaro and CVAT; TAO's trainer layout.
LAYOUTS = {"kitti": ("image_2", "label_2"), "tao": ("images", "labels")}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# KITTI's "unknown" placeholders for alpha, dimensions, location, rotation_y.
_PLACEHOLDERS = {(0.0,) * 8, (-1.0,) * 8, (-10.0, -1.0, -1.0, -1.0, -1000.0, -1000.0, -1000.0, -10.0)}


def kitti_name(name: str) -> str:
    """The class name as written in KITTI files for TAO."""
    return "_".join(name.strip().lower().split())


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


def _label_dirs(path: Path) -> list[Path]:
    """The label folders under a dataset root: ``labels``/``label_2``, or ``<subset>/label_2`` ones."""
    own = _label_dir(path)
    if own != path:
        return [own]
    subsets = sorted(d / name for d in path.iterdir() if d.is_dir() for name in ("label_2", "labels")
                     if (d / name).is_dir())
    return subsets or [path]


def _label_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    # Class lists and notes beside the labels are not label files (only at the top: an image may be
    # called classes.jpg, and its labels then classes.txt inside the label folder).
    return sorted(
        p for root in _label_dirs(path) for p in root.rglob("*.txt")
        if not p.name.startswith(".") and not (p.parent == path and p.name.lower() in _SKIP)
    )


def _first_fields(files: list[Path]) -> list[str] | None:
    for f in files[:50]:
        try:
            with f.open("r", encoding="utf-8-sig") as fh:
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


def _sidecar(path: Path, name: str, what: str) -> tuple[Path, object] | None:
    """(file, parsed JSON) of ``name`` next to or up to two folders above the label dir, if there is one."""
    start = path if path.is_dir() else path.parent
    for folder in (start, start.parent, start.parent.parent):
        f = folder / name
        if f.is_file():
            try:
                return f, json.loads(f.read_text(encoding="utf-8-sig"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise LabelError(f"{f}: not a valid {what} ({e}); delete it or re-export") from e
    return None


def _class_map(path: Path) -> dict[str, str]:
    """The export's kitti -> project name map, looked for next to and above the label dir."""
    found = _sidecar(path, MAP_FILE, "class map")
    if found is None:
        return {}
    f, data = found
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise LabelError(f"{f}: must map KITTI class names to project class names; delete it or re-export")
    return dict(data)


def _meta_classes(path: Path) -> list[str]:
    """Class names from datumaro's ``dataset_meta.json`` next to or above the label dir."""
    found = _sidecar(path, META_FILE, "datumaro meta file")
    if found is None:
        return []
    f, data = found
    labels = data.get("labels") if isinstance(data, dict) else None
    if isinstance(data, dict) and isinstance(data.get("label_map"), dict):
        labels = list(data["label_map"].values())
    if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels):
        raise LabelError(f"{f}: needs a 'labels' list of class names; delete it or re-export")
    return labels


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
        return f.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise LabelError(f"{f}: not UTF-8 text (byte {e.start}); save the label file as UTF-8") from e
    except OSError as e:
        raise LabelError(f"{f}: cannot read ({e.strerror}); check the path") from e


def _parse_line(fields: list[str], where: str, *, with_score: bool) -> Box:
    """One KITTI line; ground truth (``with_score=False``) may carry a 16th field, kept as the score
    for :func:`read` to check it is constant."""
    if len(fields) not in ((16,) if with_score else (15, 16)):
        raise LabelError(
            f"{where}: has {len(fields)} fields, KITTI needs {16 if with_score else 15} "
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
    if (alpha, *rest) not in _PLACEHOLDERS:
        extra["kitti_3d"] = " ".join(fields[3:4] + fields[8:15])  # alpha, dimensions, location, rotation_y
    score = nums[14] if len(fields) == 16 else None
    return Box(x0, y0, x1, y1, fields[0], score, clean_attributes(extra))


def _check_constant_scores(scored: list[tuple[Box, str]]) -> None:
    """A 16th field on labels is fine when it is the same everywhere (datumaro writes 1.0); else refuse."""
    if not scored:
        return
    first, first_where = scored[0]
    for box, where in scored:
        if box.score != first.score:
            raise LabelError(
                f"{where}: has a 16th field {box.score:g} where {first_where} has {first.score:g}: a "
                "confidence column, so this is detector output, not labels; import the labeled files instead"
            )
    if len(scored) == 1 and first.score != 1:
        raise LabelError(
            f"{first_where}: has 16 fields (a confidence {first.score:g}): this is detector output, not "
            "labels; import the labeled files instead"
        )


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _unlabeled_images(label_dir: Path, have: set[str]) -> list[str]:
    """Stems of images in the ``image_2/`` beside a ``label_2/`` that have no label file."""
    if label_dir.name != "label_2" or not (label_dir.parent / "image_2").is_dir():
        return []
    image_dir = label_dir.parent / "image_2"
    stems = (p.relative_to(image_dir).with_suffix("").as_posix() for p in sorted(image_dir.rglob("*"))
             if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
    return [s for s in stems if s not in have]


def read(path: Path, *, classes: Sequence[str] = (), **_: object) -> ParsedLabels:
    """Parse a KITTI label dir (dataset root with labels/ or <subset>/label_2/, the label dir, or one .txt)."""
    files = _label_files(path)
    dirs = [path.parent] if path.is_file() else _label_dirs(path)
    # One label file names one image; a folder in KITTI's own layout also lists its images without labels.
    empty = {} if path.is_file() else {
        d: _unlabeled_images(d, {f.relative_to(d).with_suffix("").as_posix() for f in files if f.is_relative_to(d)})
        for d in dirs
    }
    if not files and not any(empty.values()):
        raise LabelError(f"{path}: no .txt label files found; point --labels at the KITTI labels folder")
    parsed = ParsedLabels([])
    names: set[str] = set()
    scored: list[tuple[Box, str]] = []
    for f in files:
        root = next(d for d in dirs if f.is_relative_to(d))
        stem = f.stem if path.is_file() else f.relative_to(root).with_suffix("").as_posix()
        raw = RawImage(stem, f"{f}", by_stem=True)
        for lineno, line in enumerate(_read_lines(f), start=1):
            if not line.strip():
                continue
            where = f"{f}:{lineno}"
            box = _parse_line(line.split(), where, with_score=False)
            if box.score is not None:
                scored.append((box, where))
                box = Box(box.x0, box.y0, box.x1, box.y1, box.label, None, box.attributes)
            names.add(box.label)
            raw.boxes.append((box, where))
        parsed.images.append(raw)
    _check_constant_scores(scored)
    for d, stems in empty.items():
        parsed.images += [RawImage(s, f"{d.parent / 'image_2'}: {s!r} (no label file)", by_stem=True)
                          for s in stems]
    meta = _meta_classes(path)
    parsed.class_aliases = _aliases(names | set(meta), classes, _class_map(path))
    parsed.declared_classes = [parsed.class_aliases.get(n, n) for n in meta]
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
    anns: Sequence[ImageAnnotation], split_dir: Path, image_root: Path, names: dict[str, str],
    dirs: tuple[str, str],
) -> None:
    images, labels = split_dir / dirs[0], split_dir / dirs[1]
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    flat = flat_names(a.file_name for a in anns)
    for ann in anns:
        stem = flat[ann.file_name]
        suffix = PurePosixPath(ann.file_name).suffix
        place_image(image_root / ann.file_name, images / (stem + suffix))
        put(labels / f"{stem}.txt", "".join(f"{_line(b, names)}\n" for b in ann.boxes))


def write_training_set(
    annotations: Sequence[ImageAnnotation],
    out_dir: Path,
    *,
    image_root: Path,
    classes: Sequence[str],
    val: Sequence[ImageAnnotation] = (),
    layout: str = "kitti",
    **_: object,
) -> Path:
    """KITTI under ``out_dir`` (see the module doc; ``layout="tao"`` names the folders images/labels)."""
    dirs = LAYOUTS[layout]
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
    check_project_classes((*annotations, *val), names)
    with StagedDir(out_dir) as tmp:
        _write_split(annotations, tmp / "train", Path(image_root), names, dirs)
        if val:
            _write_split(val, tmp / "val", Path(image_root), names, dirs)
        put(tmp / "classes.txt", "".join(f"{names[c]}\n" for c in classes))
        put(tmp / MAP_FILE, json.dumps({names[c]: c for c in classes}, indent=1, ensure_ascii=False) + "\n")
        put(tmp / META_FILE, json.dumps({"labels": [names[c] for c in classes]}, ensure_ascii=False) + "\n")
    return Path(out_dir)
