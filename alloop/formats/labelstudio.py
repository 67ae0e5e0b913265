"""Label Studio: tasks with pre-annotations out, the JSON export (rectanglelabels) back in.

Shapes follow https://labelstud.io/guide/task_format and https://labelstud.io/guide/predictions:

- export (``tasks.json``): ``[{"data": {"image": url, ...}, "predictions": [{"model_version", "score",
  "result": [{"id", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
  "original_width", "original_height", "image_rotation": 0, "value": {"x", "y", "width", "height",
  "rotation": 0, "rectanglelabels": [name]}, "score"}]}]}]`` plus ``labeling_config.xml`` (the
  project's labeling interface) and ``README.txt`` (how to serve the images);
- import (Export → JSON): the same tasks with ``annotations``; ``x, y, width, height`` are percent of
  ``original_width``/``original_height`` (top-left corner + size). JSON-MIN exports are read too, and
  so are its COCO, Pascal VOC and YOLO exports, zipped as downloaded or not
  (:mod:`alloop.formats.labelstudio_archive` maps their image names back).

Import rules (documented in the CLI help as well):
- only ``annotations`` count, never ``predictions``;
- a task with no annotation is not labeled: left out, with a warning;
- annotations with ``was_cancelled: true`` (skipped) are ignored; a task whose annotations are all
  cancelled is left out, with a warning;
- several annotations of one task: the one marked ``ground_truth`` wins, else the most recently
  updated (``updated_at``, then ``created_at``, then ``id``); a warning says which was used;
- an annotation whose ``result`` is ``[]`` means "no objects";
- ``value.rotation`` or ``image_rotation`` other than 0 is an error (alloop's boxes are axis-aligned);
- polygons, brushes, keypoints, ellipses are errors (alloop imports boxes only); classification
  results (choices, text, ratings) are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alloop.boxes import Box, percent_to_xyxy
from alloop.errors import LabelError
from alloop.formats import labelstudio_archive as archive
from alloop.formats.labelstudio_tasks import (  # the export side, re-exported: one module per direction
    CLOUD_SCHEMES,
    DOCUMENT_ROOT_ENV,
    FROM_NAME,
    LOCAL_FILES_URL,
    TO_NAME,
    batch_tasks,
    document_root,
    image_root_of,
    image_url,
    labeling_config,
    local_files_path,
    result_item,
    write_batch,
)
from alloop.formats.records import ParsedLabels, RawImage, finite_number, load_json

_REGION_TYPES = {
    "polygonlabels", "polygon", "brushlabels", "brush", "keypointlabels", "keypoint",
    "ellipselabels", "ellipse", "polylinelabels", "bitmasklabels", "magicwand",
}
_MIN_REGION_KEYS = ("polygonlabels", "brushlabels", "keypointlabels", "ellipselabels")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# -- reading ---------------------------------------------------------------------------------------

def sniff(path: Path) -> bool:
    """A JSON list whose items carry ``data`` (full export) or ``image`` (JSON-MIN), or Label Studio's COCO/VOC/YOLO."""
    if archive.kind_of(path) is not None:
        return True
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(65536).lstrip()
    return head.startswith(b"[") and (b'"data"' in head or b'"annotation_id"' in head or head == b"[]")


def _image_ref(data: object, where: str) -> str:
    if not isinstance(data, dict):
        raise LabelError(f"{where}: task 'data' must be an object holding the image URL; re-export as JSON")
    # alloop's own tasks carry the project's name: exact, whatever URL the images were served from.
    value = data.get("alloop_file") or data.get("image")
    if isinstance(value, str):
        return value
    strings = [v for v in data.values() if isinstance(v, str)]
    candidates = [v for v in strings if v.lower().split("?")[0].endswith(_IMAGE_SUFFIXES)]
    candidates += [v for v in strings if "local-files/?d=" in v and v not in candidates]
    if len(candidates) == 1:
        return candidates[0]
    raise LabelError(
        f"{where}: cannot tell which task data field is the image (keys: {', '.join(map(str, data))}); "
        "name it 'image' (<Image value=\"$image\"/>) in the labeling config"
    )


def _pick_annotation(annotations: list, where: str, warnings: list[str]) -> dict | None:
    valid = []
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise LabelError(f"{where}: annotations[{i}] must be an object; re-export as JSON")
        if not ann.get("was_cancelled"):
            valid.append(ann)
    if not valid:
        return None
    if len(valid) == 1:
        return valid[0]
    gt = [a for a in valid if a.get("ground_truth")]
    pool = gt or valid
    def recency(a: dict) -> tuple[str, str, str]:
        return (str(a.get("updated_at") or ""), str(a.get("created_at") or ""), str(a.get("id") or ""))

    chosen = max(pool, key=recency)
    why = "marked ground truth" if gt else "most recently updated"
    warnings.append(
        f"{where}: has {len(valid)} annotations; used the {why} one (id {chosen.get('id')})"
    )
    return chosen


def _result_box(item: object, raw: RawImage, where: str) -> Box | None:
    """One result item as a Box in pixels of the declared original size (None for non-box results)."""
    if not isinstance(item, dict):
        raise LabelError(f"{where}: result items must be objects; re-export as JSON")
    kind = item.get("type")
    if kind in _REGION_TYPES:
        raise LabelError(
            f"{where}: has a {kind} region; alloop imports boxes only, draw rectangles "
            "(RectangleLabels) or delete those regions"
        )
    if kind == "rectangle":
        raise LabelError(f"{where}: rectangle without a class; use RectangleLabels so every box has a label")
    if kind != "rectanglelabels":
        return None  # choices, textarea, rating, relation...: not about boxes
    for key in ("original_width", "original_height"):
        value = item.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise LabelError(f"{where}: {key} must be a positive number, got {value!r}")
            declared = raw.width if key == "original_width" else raw.height
            if declared is not None and declared != int(value):
                raise LabelError(
                    f"{where}: {key} {value} differs from an earlier box of the same task ({declared}); "
                    "re-export the task"
                )
            if key == "original_width":
                raw.width = int(value)
            else:
                raw.height = int(value)
    image_rotation = item.get("image_rotation") or 0
    if finite_number(image_rotation, "image_rotation", where) % 360 != 0:
        raise LabelError(
            f"{where}: the image was rotated by {image_rotation} degrees while labeling; "
            "reset the image rotation in Label Studio and re-export"
        )
    value = item.get("value")
    if not isinstance(value, dict):
        raise LabelError(f"{where}: result has no 'value' object; re-export as JSON")
    x, y, w, h = (finite_number(value.get(k), f"value.{k}", where) for k in ("x", "y", "width", "height"))
    rotation = value.get("rotation") or 0
    if finite_number(rotation, "value.rotation", where) % 360 != 0:
        raise LabelError(
            f"{where}: box is rotated by {rotation} degrees; alloop needs axis-aligned boxes, "
            "set its rotation to 0 (or canRotate=\"false\" in the labeling config)"
        )
    labels = value.get("rectanglelabels")
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        raise LabelError(
            f"{where}: box must carry exactly one class in rectanglelabels, got {labels!r}; "
            "use choice=\"single\" in the labeling config"
        )
    return Box(x, y, w, h, labels[0])  # percentages for now; converted once the size is known


def _parse_full(tasks: list, source: str) -> ParsedLabels:
    parsed = ParsedLabels([])
    not_labeled, skipped = [], []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise LabelError(f"{source}: item {i} must be a task object; export the project as JSON")
        tid = task.get("id", i)
        where = f"{source}: task id {tid}"
        image = _image_ref(task.get("data"), where)
        where = f"{source}: task id {tid} (image {image!r})"
        annotations = task.get("annotations", task.get("completions"))  # 'completions': Label Studio < 1.0
        if annotations is None or annotations == []:
            not_labeled.append(str(tid))
            continue
        if not isinstance(annotations, list):
            raise LabelError(f"{where}: 'annotations' must be a list; export the project as JSON")
        ann = _pick_annotation(annotations, where, parsed.warnings)
        if ann is None:
            skipped.append(str(tid))
            continue
        where = f"{where} annotation id {ann.get('id')}"
        result = ann.get("result")
        if not isinstance(result, list):
            raise LabelError(f"{where}: 'result' must be a list; re-export as JSON")
        raw = RawImage(image, where)
        pct = []
        for j, item in enumerate(result):
            region = f" (region {item.get('id')})" if isinstance(item, dict) else ""
            item_where = f"{where} result {j}{region}"
            box = _result_box(item, raw, item_where)
            if box is not None:
                pct.append((box, item_where))
        raw.boxes = pct
        parsed.images.append(raw)
    if not_labeled:
        parsed.warnings.append(
            f"{source}: {len(not_labeled)} task(s) have no annotation and were left out as not labeled "
            f"(task ids {', '.join(not_labeled[:10])}{' ...' if len(not_labeled) > 10 else ''})"
        )
    if skipped:
        parsed.warnings.append(
            f"{source}: {len(skipped)} task(s) were skipped by the annotator (was_cancelled) and left out "
            f"(task ids {', '.join(skipped[:10])}{' ...' if len(skipped) > 10 else ''})"
        )
    return parsed


def _parse_min(tasks: list, source: str) -> ParsedLabels:
    """JSON-MIN: one flat object per annotated task; box lists sit under the control's name."""
    parsed = ParsedLabels([])
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise LabelError(f"{source}: item {i} must be an object; export the project as JSON")
        tid = task.get("id", i)
        where = f"{source}: task id {tid}"
        image = _image_ref(task, where)
        where = f"{source}: task id {tid} (image {image!r})"
        raw = RawImage(image, where)
        boxes = []
        for key, value in task.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                for j, item in enumerate(value):
                    item_where = f"{where} {key}[{j}]"
                    if "rectanglelabels" in item:
                        box = _result_box({"type": "rectanglelabels", "value": item, **item}, raw, item_where)
                        boxes.append((box, item_where))
                    elif any(k in item for k in _MIN_REGION_KEYS):
                        raise LabelError(f"{item_where}: is not a box; alloop imports boxes only")
        if not boxes and "annotation_id" not in task:
            parsed.warnings.append(f"{where}: no annotation, left out as not labeled")
            continue
        raw.boxes = boxes
        parsed.images.append(raw)
    return parsed


def read(path: Path, *, index, sizes, classes: Sequence[str] = (), **options: object) -> ParsedLabels:
    """Parse a Label Studio export (JSON, JSON-MIN, or COCO/VOC/YOLO zipped or not); boxes come back in pixels."""
    kind = archive.kind_of(path)
    if kind is not None:
        return archive.read(path, kind=kind, classes=classes, index=index, sizes=sizes, **options)
    if path.is_dir() or path.suffix.lower() == ".zip":
        raise LabelError(
            f"{path}: not a Label Studio export alloop knows (JSON, JSON-MIN, COCO, Pascal VOC or YOLO); "
            "export the project with Export -> JSON and import that file"
        )
    data = load_json(path)
    source = str(path)
    if isinstance(data, dict):
        raise LabelError(
            f"{source}: holds one object, not a list of tasks; export the project with Export -> JSON"
        )
    if not isinstance(data, list):
        raise LabelError(
            f"{source}: a Label Studio export is a JSON list of tasks; export with Export -> JSON"
        )
    if data and all(
        isinstance(t, dict) and isinstance(t.get("data"), dict) and "alloop_file" in t["data"]
        and not t.get("annotations") and "id" not in t
        for t in data
    ):
        raise LabelError(
            f"{source}: is the task file alloop exported, not a Label Studio export; import it into "
            "Label Studio, label the images, then Export -> JSON and import that file"
        )
    full = any(isinstance(t, dict) and "data" in t for t in data)
    parsed = _parse_full(data, source) if full or not data else _parse_min(data, source)
    # Percent -> pixels needs each image's size: resolve names here, with the project's size.
    for raw in parsed.images:
        name = index.resolve(raw.name, raw.where)
        raw.resolved = name
        width, height = sizes[name]
        ow, oh = raw.width or width, raw.height or height
        converted = []
        for box, where in raw.boxes:
            x0, y0, x1, y1 = percent_to_xyxy(box.x0, box.y0, box.x1, box.y1, ow, oh)
            converted.append((Box(x0, y0, x1, y1, box.label), where))
        raw.boxes = converted
    return parsed


# -- writing ---------------------------------------------------------------------------------------


__all__ = [
    "CLOUD_SCHEMES", "DOCUMENT_ROOT_ENV", "FROM_NAME", "LOCAL_FILES_URL", "TO_NAME", "batch_tasks", "document_root",
    "image_root_of", "image_url", "labeling_config", "local_files_path", "read", "result_item", "sniff", "write_batch",
]
