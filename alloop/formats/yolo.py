"""Ultralytics YOLO detection labels (https://docs.ultralytics.com/datasets/detect/).

One ``.txt`` per image, one line per object: ``class_id cx cy w h``, the centre and size normalised
by the image's width and height (0..1); an empty file means "no objects" (a background image),
a missing file means "not labeled". Class names come from ``data.yaml`` (``names:`` as a list or an
``id: name`` map), or ``classes.txt`` / ``obj.names`` (one name a line; CVAT's YOLO 1.1 export).

Layout written by :func:`write_training_set`: Ultralytics' own (it finds each label by replacing
``/images/`` with ``/labels/`` in the image path), which datumaro's ``yolo`` import also reads as is.
datumaro matches images and labels by base name only, so sub-folders are flattened
(``row_01/a.jpg`` -> ``row_01__a.jpg``; the import maps ``__`` back). Numbers are written in fixed
point (datumaro refuses ``1e-05``)::

    out/images/train/<flat name>   out/labels/train/<flat stem>.txt
    out/images/val/...             out/labels/val/...
    out/data.yaml                  (path, train, val, nc, names)

``data.yaml`` is written by hand (a few lines), and read by a small parser that understands the
``names`` shapes Ultralytics writes; PyYAML is not needed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from alloop.boxes import Box, ImageAnnotation, cxcywh_norm_to_xyxy, xyxy_to_cxcywh_norm
from alloop.errors import LabelError
from alloop.formats.records import ParsedLabels, RawImage, check_project_classes
from alloop.formats.names import flat_names
from alloop.formats.staging import StagedDir, place_image, put

_NAME_FILES = ("classes.txt", "obj.names")
_YAMLS = ("data.yaml", "dataset.yaml", "data.yml")


# -- class names -----------------------------------------------------------------------------------

def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return json.loads(text)
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text.split(" #", 1)[0].strip()


def _split_flow(body: str) -> list[str]:
    """Split a YAML flow list body on commas outside quotes."""
    items, cur, quote = [], "", ""
    for ch in body:
        if quote:
            cur += ch
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote, cur = ch, cur + ch
        elif ch == ",":
            items.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        items.append(cur)
    return [_scalar(i) for i in items]


def parse_names_yaml(text: str, source: str) -> list[str]:
    """The ``names`` of an Ultralytics dataset yaml: ``[a, b]``, ``- a`` lines, or ``0: a`` lines."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^names\s*:\s*(.*)$", line)
        if not m:
            continue
        rest = m.group(1).split(" #", 1)[0].strip()
        if rest.startswith("["):
            body = rest
            j = i
            while not body.rstrip().endswith("]") and j + 1 < len(lines):
                j += 1
                body += " " + lines[j].strip()
            return _split_flow(body.strip()[1:-1])
        if rest.startswith("{"):
            pairs = _split_flow(rest.strip()[1:-1])
            out = {}
            for p in pairs:
                k, _, v = p.partition(":")
                out[int(k.strip())] = _scalar(v)
            return [out[k] for k in sorted(out)]
        listed: list[str] = []
        mapped: dict[int, str] = {}
        for follow in lines[i + 1 :]:
            if not follow.strip() or follow.lstrip().startswith("#"):
                continue
            if not follow.startswith((" ", "\t", "-")):
                break
            item = follow.strip()
            if item.startswith("- "):
                listed.append(_scalar(item[2:]))
                continue
            k, sep, v = item.partition(":")
            if not sep or not k.strip().isdigit():
                raise LabelError(
                    f"{source}: cannot read the names entry {item!r}; write names as '0: name' lines"
                )
            mapped[int(k)] = _scalar(v)
        if mapped:
            if sorted(mapped) != list(range(len(mapped))):
                raise LabelError(
                    f"{source}: names ids {sorted(mapped)} are not 0..{len(mapped) - 1}; fix data.yaml"
                )
            return [mapped[k] for k in sorted(mapped)]
        return listed
    raise LabelError(f"{source}: has no 'names:' entry; list the class names in data.yaml")


def _find_names(path: Path) -> tuple[list[str] | None, str]:
    """Class names from a yaml or names file in ``path`` or its parent."""
    start = path if path.is_dir() else path.parent
    for folder in (start, start.parent, start.parent.parent):
        for name in _YAMLS:
            f = folder / name
            if f.is_file():
                return parse_names_yaml(_read_text(f), str(f)), str(f)
        for name in _NAME_FILES:
            f = folder / name
            if f.is_file():
                return [ln.strip() for ln in _read_text(f).splitlines() if ln.strip()], str(f)
    return None, ""


def _read_text(f: Path) -> str:
    try:
        return f.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelError(f"{f}: not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    except OSError as e:
        raise LabelError(f"{f}: cannot read ({e.strerror}); check the path") from e


# -- reading ---------------------------------------------------------------------------------------

def _label_root(path: Path) -> Path:
    return path / "labels" if (path / "labels").is_dir() else path


def _label_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    root = _label_root(path)
    # Names files and image lists sit beside the labels, never inside a labels/ folder.
    skip = {n.lower() for n in _NAME_FILES} | {"readme.txt", "train.txt", "val.txt", "test.txt"}
    return sorted(
        p for p in root.rglob("*.txt")
        if not p.name.startswith(".") and not (p.parent == path and p.name.lower() in skip)
    )


def sniff(path: Path) -> bool:
    """A data.yaml / classes.txt next to .txt files, or .txt files whose first line is 5 numbers."""
    if not path.exists() or (path.is_file() and path.suffix.lower() != ".txt"):
        return False
    if path.is_dir() and any((path / n).is_file() for n in (*_YAMLS, *_NAME_FILES)):
        return True
    for f in _label_files(path)[:50]:
        try:
            first = next((ln for ln in f.read_text(encoding="utf-8-sig").splitlines() if ln.strip()), None)
        except (OSError, UnicodeDecodeError):
            return False
        if first is None:
            continue
        fields = first.split()
        if len(fields) != 5:
            return False
        try:
            [float(v) for v in fields]
            return True
        except ValueError:
            return False
    return False


def read(path: Path, *, classes: Sequence[str] = (), index, sizes, **_: object) -> ParsedLabels:
    """Parse a YOLO labels folder (dataset root with labels/, the labels dir, or one .txt file)."""
    files = _label_files(path)
    if not files:
        raise LabelError(f"{path}: no .txt label files found; point --labels at the YOLO labels folder")
    names, names_source = _find_names(path)
    parsed = ParsedLabels([])
    if names is None:
        if not classes:
            raise LabelError(
                f"{path}: no data.yaml or classes.txt next to the labels, and the project has no classes; "
                "add classes.txt (one class name a line)"
            )
        names = list(classes)
        parsed.warnings.append(
            f"{path}: no data.yaml or classes.txt; class ids read in the project's class order"
        )
    parsed.declared_classes = list(names)
    root = path.parent if path.is_file() else _label_root(path)
    for f in files:
        stem = f.relative_to(root).with_suffix("").as_posix()
        raw = RawImage(stem, str(f), by_stem=True)
        raw.resolved = index.resolve_stem(stem, str(f))
        width, height = sizes[raw.resolved]
        for lineno, line in enumerate(_read_text(f).splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{f}:{lineno}"
            if len(fields) != 5:
                kind = "a confidence (detector output, not labels)" if len(fields) == 6 else "polygon points"
                hint = "class cx cy w h"
                raise LabelError(
                    f"{where}: has {len(fields)} fields; YOLO detection labels have 5 ({hint})"
                    + (f", this looks like {kind}" if len(fields) > 5 else "") + "; fix that line"
                )
            try:
                cls = int(fields[0])
            except ValueError:
                raise LabelError(
                    f"{where}: class id {fields[0]!r} is not an integer; fix that line"
                ) from None
            if not 0 <= cls < len(names):
                raise LabelError(
                    f"{where}: class id {cls} is outside 0..{len(names) - 1} "
                    f"({names_source or 'the project classes'}); fix the id or the names list"
                )
            try:
                cx, cy, w, h = (float(v) for v in fields[1:])
            except ValueError:
                raise LabelError(
                    f"{where}: {' '.join(fields[1:])!r} are not numbers; fix that line"
                ) from None
            if not all(math.isfinite(v) for v in (cx, cy, w, h)):
                raise LabelError(f"{where}: non-finite value in {' '.join(fields[1:])}; fix that line")
            x0, y0, x1, y1 = cxcywh_norm_to_xyxy(cx, cy, w, h, width, height)
            raw.boxes.append((Box(x0, y0, x1, y1, names[cls]), where))
        parsed.images.append(raw)
    return parsed


# -- writing ---------------------------------------------------------------------------------------

def _yaml_str(text: str) -> str:
    """A YAML scalar: plain when safe, else double-quoted (JSON escapes are valid YAML)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ .\-]*", text) and text.strip() == text and text.lower() not in (
        "yes", "no", "true", "false", "null", "on", "off", "y", "n", "~"
    ):
        return text
    return json.dumps(text, ensure_ascii=False)


def _coord(v: float) -> str:
    """A normalised coordinate in fixed point, never ``1e-05`` (10 decimals: 1e-6 px on a 10k image)."""
    text = f"{v:.10f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _write_split(
    anns: Sequence[ImageAnnotation], out: Path, split: str, image_root: Path, ids: dict[str, int]
) -> None:
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    flat = flat_names(a.file_name for a in anns)
    for ann in anns:
        stem = flat[ann.file_name]
        place_image(image_root / ann.file_name, out / "images" / split / (stem + PurePosixPath(ann.file_name).suffix))
        lines = []
        for b in ann.boxes:
            cx, cy, w, h = xyxy_to_cxcywh_norm(b.x0, b.y0, b.x1, b.y1, ann.width, ann.height)
            lines.append(f"{ids[b.label]} {_coord(cx)} {_coord(cy)} {_coord(w)} {_coord(h)}\n")
        put(out / "labels" / split / f"{stem}.txt", "".join(lines))


def write_training_set(
    annotations: Sequence[ImageAnnotation],
    out_dir: Path,
    *,
    image_root: Path,
    classes: Sequence[str],
    val: Sequence[ImageAnnotation] = (),
    **_: object,
) -> Path:
    """Ultralytics layout under ``out_dir`` (see the module doc); returns ``data.yaml``."""
    ids = {c: i for i, c in enumerate(classes)}
    check_project_classes((*annotations, *val), ids)
    out_dir = Path(out_dir)
    with StagedDir(out_dir) as tmp:
        _write_split(annotations, tmp, "train", Path(image_root), ids)
        if val:
            _write_split(val, tmp, "val", Path(image_root), ids)
        names = "".join(f"  {i}: {_yaml_str(c)}\n" for i, c in enumerate(classes))
        val_line = "val: images/val\n" if val else "val: images/train  # no validation split was given\n"
        put(
            tmp / "data.yaml",
            "# Ultralytics YOLO dataset written by alloop\n"
            f"path: {json.dumps(str(out_dir.resolve()), ensure_ascii=False)}\n"
            "train: images/train\n"
            f"{val_line}"
            f"nc: {len(classes)}\n"
            f"names:\n{names}",
        )
    return out_dir / "data.yaml"
