"""COCO detection JSON (https://cocodataset.org/#format-data), plain and as CVAT's "COCO 1.0".

File shape: ``{"images": [{id, file_name, width, height}], "annotations": [{id, image_id,
category_id, bbox: [x, y, w, h], area, iscrowd}], "categories": [{id, name, supercategory}]}``.
``bbox`` is top-left plus size in absolute pixels (continuous coordinates, no +1), so the box
converts with ``xywh_to_xyxy`` and nothing else.

Semantics on import:
- an image listed in ``images`` with no annotation is labeled "no objects" (the tools list every
  image of the task and write annotations only where there are objects);
- ``iscrowd: 1`` is kept as the ``iscrowd`` attribute; CVAT's ``attributes: {"occluded": true}`` as
  ``occluded``; any other scalar attribute under its own name; ``rotation`` other than 0 is an error
  (alloop's boxes are axis-aligned);
- an annotation with only a ``segmentation`` and no ``bbox`` is an error;
- alloop's own batch file (images, no labels) is refused, so a batch cannot be "imported" by mistake
  as "every image has no objects";
- a folder is read as a COCO dataset: ``annotations/instances_<subset>.json`` (datumaro's and CVAT's
  layout, and alloop's training-set export), else every COCO ``.json`` directly inside it.

Layout written by :func:`write_training_set` (datumaro's ``coco`` import reads it as is)::

    out/annotations/instances_train.json   out/annotations/instances_val.json
    out/images/train/<file_name>           out/images/val/<file_name>   (hard links)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

from alloop import atomic
from alloop.boxes import Box, ImageAnnotation, xywh_to_xyxy, xyxy_to_xywh
from alloop.errors import LabelError
from alloop.formats.records import (
    BatchItem,
    ParsedLabels,
    RawImage,
    clean_attributes,
    finite_number,
    load_json,
    parse_json,
)
from alloop.formats.staging import StagedDir, place_image

BATCH_MARK = "alloop batch for labeling (no labels yet)"
PREANNOTATION_MARK = "alloop batch for labeling: model pre-annotations, not labels"
TRAINING_MARK = "alloop labeled set"
_CVAT_KEYS = {"occluded", "rotation", "track_id", "keyframe", "z_order"}


# -- reading ---------------------------------------------------------------------------------------

_COCO_KEY = re.compile(rb'"(images|categories)"\s*:\s*\[')  # a key holding a list, not a class called "images"


def _sniff_file(path: Path) -> bool:
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(65536).removeprefix(b"\xef\xbb\xbf").lstrip()  # UTF-8 BOM (Windows tools)
    return head.startswith(b"{") and _COCO_KEY.search(head) is not None


def _dataset_files(path: Path) -> list[Path]:
    """The COCO files of a dataset folder (see the module doc)."""
    found = sorted((path / "annotations").glob("instances_*.json"))
    return found or sorted(f for f in path.glob("*.json") if _sniff_file(f))


def sniff(path: Path) -> bool:
    """A JSON object with ``images`` and ``annotations`` or ``categories`` lists, or a folder of them."""
    if path.is_dir():
        return bool(_dataset_files(path))
    return _sniff_file(path)


def _id(value: object, what: str, where: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise LabelError(f"{where}: {what} must be an integer or string, got {value!r}; fix that record")
    return value


def _list(data: dict, key: str, source: str) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        found = "missing" if value is None else type(value).__name__
        raise LabelError(
            f"{source}: COCO file needs a {key!r} list, found {found}; export COCO instances JSON"
        )
    return value


def read(path: Path, **_: object) -> ParsedLabels:
    """Parse a COCO instances file, or a dataset folder, into raw records (validated in build_label_set)."""
    if path.is_dir():
        files = _dataset_files(path)
        if not files:
            raise LabelError(
                f"{path}: a folder with no annotations/instances_*.json and no COCO .json inside; "
                "point --labels at the COCO file or the dataset folder holding annotations/"
            )
        return merge([parse(load_json(f), str(f)) for f in files])
    return parse(load_json(path), str(path))


def merge(parts: Sequence[ParsedLabels]) -> ParsedLabels:
    """One ParsedLabels from several files of one dataset (subsets); classes in first-seen order."""
    merged = ParsedLabels([])
    for part in parts:
        merged.images += part.images
        merged.warnings += part.warnings
        merged.declared_classes += [c for c in part.declared_classes if c not in merged.declared_classes]
    return merged


def parse_text(text: str, source: str) -> ParsedLabels:
    """Parse COCO JSON text (e.g. a member of a CVAT zip)."""
    return parse(parse_json(text, source), source)


def parse(data: object, source: str) -> ParsedLabels:
    """Parse a decoded COCO object."""
    if not isinstance(data, dict):
        raise LabelError(
            f"{source}: a COCO file is a JSON object with images/annotations/categories, "
            f"found a JSON {type(data).__name__}; pick the right --format"
        )
    images = _list(data, "images", source)
    if "annotations" not in data:
        raise LabelError(
            f"{source}: has no 'annotations' list, so it says nothing about objects; "
            "export the labels (COCO instances), not an image list"
        )
    annotations = _list(data, "annotations", source)
    categories = _list(data, "categories", source)
    description = data.get("info", {}).get("description") if isinstance(data.get("info"), dict) else None
    if description == BATCH_MARK and not annotations:
        raise LabelError(
            f"{source}: this is the unlabeled batch alloop exported, not labels; label the images "
            "and import the file your labeling tool exports"
        )
    if description == PREANNOTATION_MARK and all("score" in a for a in annotations if isinstance(a, dict)):
        raise LabelError(
            f"{source}: holds only the model pre-annotations alloop exported, not labels; "
            "import them into CVAT, correct them there, and import CVAT's export"
        )

    cats: dict[int | str, str] = {}
    names: list[str] = []
    for i, cat in enumerate(categories):
        where = f"{source}: categories[{i}]"
        if not isinstance(cat, dict):
            raise LabelError(f"{where}: must be an object with id and name; fix the categories list")
        cid = _id(cat.get("id"), "category id", where)
        name = cat.get("name")
        if not isinstance(name, str) or not name.strip():
            raise LabelError(f"{where}: category {cid!r} has no name; give every category a name")
        if cid in cats:
            raise LabelError(f"{where}: category id {cid!r} is used twice; give each category its own id")
        if name in names:
            raise LabelError(f"{where}: category name {name!r} is used twice; merge those categories")
        cats[cid] = name
        names.append(name)

    raws: dict[int | str, RawImage] = {}
    for i, img in enumerate(images):
        where = f"{source}: images[{i}]"
        if not isinstance(img, dict):
            raise LabelError(f"{where}: must be an object with id, file_name, width, height")
        iid = _id(img.get("id"), "image id", where)
        file_name = img.get("file_name")
        if not isinstance(file_name, str):
            raise LabelError(f"{where}: image {iid!r} has no file_name; every image needs one")
        where = f"{source}: image {file_name!r} (id {iid})"
        if iid in raws:
            raise LabelError(f"{where}: image id {iid!r} is used twice; give each image its own id")
        size = []
        for key in ("width", "height"):
            value = img.get(key)
            if value is None or value == 0:
                size.append(None)  # some tools leave it out; the project knows the size
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LabelError(f"{where}: {key} must be a positive integer, got {value!r}; fix that image")
            else:
                size.append(value)
        raws[iid] = RawImage(file_name, where, size[0], size[1])

    seen_ann: set[int | str] = set()
    for i, ann in enumerate(annotations):
        where = f"{source}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise LabelError(f"{where}: must be an object with image_id, category_id, bbox")
        aid = ann.get("id", i)
        aid = _id(aid, "annotation id", where)
        where = f"{source}: annotation id {aid}"
        if aid in seen_ann:
            raise LabelError(f"{where}: annotation id {aid!r} is used twice; give each annotation its own id")
        seen_ann.add(aid)
        iid = ann.get("image_id")
        if iid not in raws or isinstance(iid, bool):
            raise LabelError(f"{where}: image_id {iid!r} is not in the file's images list; fix the image_id")
        raw = raws[iid]
        where = f"{source}: image {raw.name!r} annotation id {aid}"
        cid = ann.get("category_id")
        if cid not in cats or isinstance(cid, bool):
            raise LabelError(
                f"{where}: category_id {cid!r} is not in the categories list "
                f"(ids {sorted(cats, key=str)}); fix the category_id"
            )
        bbox = ann.get("bbox")
        if bbox is None:
            raise LabelError(
                f"{where}: has no bbox (segmentation only?); alloop needs boxes, export with bounding boxes"
            )
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise LabelError(
                f"{where}: bbox must be [x, y, width, height], got {bbox!r}; fix that annotation"
            )
        x, y, w, h = (finite_number(v, "bbox value", where) for v in bbox)
        extra: dict[str, object] = {}
        if ann.get("iscrowd"):
            extra["iscrowd"] = ann["iscrowd"]
        attributes = ann.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise LabelError(
                f"{where}: attributes must be an object, got {attributes!r}; fix that annotation"
            )
        for key, value in attributes.items():
            if key == "rotation":
                rot = finite_number(value, "rotation", where)
                if rot % 360 != 0:
                    raise LabelError(
                        f"{where}: box is rotated by {rot} degrees; alloop needs axis-aligned boxes, "
                        "set rotation to 0 in the labeling tool"
                    )
            elif key in ("track_id", "keyframe", "z_order"):
                continue  # CVAT bookkeeping, meaningless for one still image
            elif isinstance(value, (bool, int, float, str)):
                extra[key] = value
        x0, y0, x1, y1 = xywh_to_xyxy(x, y, w, h)
        raw.boxes.append((Box(x0, y0, x1, y1, cats[cid], attributes=clean_attributes(extra)), where))
    return ParsedLabels(list(raws.values()), declared_classes=names)


# -- writing ---------------------------------------------------------------------------------------

def _num(v: float) -> float | int:
    """Write integral floats as ints (smaller files, what the tools write); keep full precision else."""
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else float(v)


def _categories(classes: Sequence[str]) -> list[dict]:
    return [{"id": i + 1, "name": c, "supercategory": ""} for i, c in enumerate(classes)]


def _annotation(aid: int, iid: int, box: Box, cat_ids: dict[str, int], *, cvat: bool) -> dict:
    x, y, w, h = xyxy_to_xywh(box.x0, box.y0, box.x1, box.y1)
    attrs = dict(box.attributes)
    ann: dict = {
        "id": aid,
        "image_id": iid,
        "category_id": cat_ids[box.label],
        "segmentation": [],
        "area": _num(w * h),
        "bbox": [_num(x), _num(y), _num(w), _num(h)],
        "iscrowd": int(attrs.pop("iscrowd", "0") not in ("0", "")),
    }
    if cvat:
        # CVAT's COCO 1.0 writes occluded (bool) and rotation on every annotation.
        occluded = attrs.pop("occluded", "0")
        ann["attributes"] = {"occluded": occluded not in ("0", ""), "rotation": 0.0, **attrs}
    elif attrs:
        ann["attributes"] = attrs
    if box.score is not None and math.isfinite(box.score):
        ann["score"] = float(box.score)
    return ann


def _check_classes(boxes: Sequence[Box], cat_ids: dict[str, int], where: str) -> None:
    for box in boxes:
        if box.label not in cat_ids:
            raise LabelError(
                f"{where}: box class {box.label!r} is not one of the project classes "
                f"({', '.join(cat_ids)}); add the class to the project first"
            )


def document(
    images: Sequence[tuple[str, int, int, Sequence[Box]]],
    classes: Sequence[str],
    *,
    description: str,
    cvat: bool = False,
) -> dict:
    """A COCO instances object for (file_name, width, height, boxes) rows, ids from 1."""
    cat_ids = {c: i + 1 for i, c in enumerate(classes)}
    out_images, out_anns = [], []
    for iid, (file_name, width, height, boxes) in enumerate(images, start=1):
        _check_classes(boxes, cat_ids, f"image {file_name!r}")
        out_images.append(
            {"id": iid, "width": width, "height": height, "file_name": file_name, "license": 0,
             "flickr_url": "", "coco_url": "", "date_captured": 0}
        )
        for box in boxes:
            out_anns.append(_annotation(len(out_anns) + 1, iid, box, cat_ids, cvat=cvat))
    return {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": description, "url": "",
                 "version": "", "year": ""},
        "categories": _categories(classes),
        "images": out_images,
        "annotations": out_anns,
    }


def write_json(obj: object, path: Path) -> Path:
    """Write JSON atomically (NaN refused: COCO tools cannot read it); returns ``path``."""
    atomic.write_text(path, json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    return path


def write_batch(items: Sequence[BatchItem], out_dir: Path, *, classes: Sequence[str], **_: object) -> Path:
    """``batch.json`` (images and categories, no annotations) and, when the model has boxes, ``predictions.json``.

    predictions.json is in COCO's results format (``[{image_id, category_id, bbox, score}]``, ids
    matching batch.json), the model's boxes for this batch, for tools that load pre-annotations.
    With no boxes (the initial selection) none is written, and a stale one is removed:
    ``pycocotools.COCO.loadRes`` cannot load an empty results list.
    """
    doc = document([(it.file_name, it.width, it.height, ()) for it in items], classes, description=BATCH_MARK)
    cat_ids = {c: i + 1 for i, c in enumerate(classes)}
    results = []
    for iid, it in enumerate(items, start=1):
        _check_classes(it.predictions, cat_ids, f"prediction for {it.file_name!r}")
        for box in it.predictions:
            x, y, w, h = xyxy_to_xywh(box.x0, box.y0, box.x1, box.y1)
            results.append(
                {"image_id": iid, "category_id": cat_ids[box.label], "bbox": [x, y, w, h],
                 "score": float(box.score) if box.score is not None else 1.0}
            )
    predictions = out_dir / "predictions.json"
    if results:
        write_json(results, predictions)
    else:
        predictions.unlink(missing_ok=True)
    return write_json(doc, out_dir / "batch.json")


def write_training_set(
    annotations: Sequence[ImageAnnotation],
    out_dir: Path,
    *,
    image_root: Path,
    classes: Sequence[str],
    val: Sequence[ImageAnnotation] = (),
    **_: object,
) -> Path:
    """A COCO dataset under ``out_dir`` (see the module doc); returns ``annotations/instances_train.json``."""
    with StagedDir(out_dir) as tmp:
        for split, anns in (("train", annotations), ("val", val)):
            if not anns and split == "val":
                continue
            for a in anns:
                place_image(Path(image_root) / a.file_name, tmp / "images" / split / a.file_name)
            rows = [(a.file_name, a.width, a.height, a.boxes) for a in anns]
            doc = document(rows, classes, description=TRAINING_MARK)
            (tmp / "annotations").mkdir(exist_ok=True)
            (tmp / "annotations" / f"instances_{split}.json").write_text(
                json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
            )
    return Path(out_dir) / "annotations" / "instances_train.json"
