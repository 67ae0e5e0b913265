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

import math
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from alloop.boxes import Box, percent_to_xyxy, xyxy_to_percent
from alloop.errors import LabelError
from alloop.formats import labelstudio_archive as archive
from alloop.formats.coco import write_json
from alloop.formats.records import BatchItem, ParsedLabels, RawImage, finite_number, load_json

FROM_NAME = "label"
TO_NAME = "image"
_REGION_TYPES = {
    "polygonlabels", "polygon", "brushlabels", "brush", "keypointlabels", "keypoint",
    "ellipselabels", "ellipse", "polylinelabels", "bitmasklabels", "magicwand",
}
_MIN_REGION_KEYS = ("polygonlabels", "brushlabels", "keypointlabels", "ellipselabels")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DOCUMENT_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
LOCAL_FILES_URL = "/data/local-files/?d="
CLOUD_SCHEMES = ("s3://", "gs://")


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

def image_root_of(item: BatchItem) -> Path:
    """The image root an item's absolute path implies (path minus its relative file_name)."""
    parts = PurePosixPath(item.file_name).parts
    root = Path(item.path)
    for _ in parts:
        root = root.parent
    return root


def document_root(explicit: str | Path | None = None) -> Path:
    """Label Studio's local-files document root: ``explicit``, else $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, else ``/``.

    ``/`` is Label Studio's own default when the variable is unset.
    """
    value = explicit if explicit is not None else os.environ.get(DOCUMENT_ROOT_ENV) or "/"
    return Path(os.path.abspath(os.path.expanduser(str(value))))


def local_files_path(path: Path, root: Path) -> str | None:
    """``path`` relative to the document root as ``?d=`` wants it (posix), or None when outside it."""
    absolute = Path(os.path.abspath(path))
    try:
        rel = absolute.relative_to(root)
    except ValueError:
        return None
    return rel.as_posix()


def image_url(item: BatchItem, prefix: str | None, root: Path | None = None) -> str:
    """The URL Label Studio loads the image from.

    With a prefix: ``prefix/<file_name>``; ``s3://`` and ``gs://`` prefixes are left unescaped (Label
    Studio signs them through the project's cloud storage). Without one: Label Studio local storage,
    ``/data/local-files/?d=<image path under the document root>``. The whole path under the
    document root goes into the URL, so two projects whose folders share a name never share URLs.
    An image outside the document root falls back to the path under ``/`` (Label Studio's default root).
    """
    if prefix:
        if prefix.startswith(CLOUD_SCHEMES):
            return prefix.rstrip("/") + "/" + item.file_name
        return prefix.rstrip("/") + "/" + quote(item.file_name)
    rel = local_files_path(item.path, root or document_root())
    if rel is None:
        rel = local_files_path(item.path, Path("/"))
    return LOCAL_FILES_URL + quote(rel)


def result_item(box: Box, width: int, height: int, rid: str) -> dict:
    """One rectanglelabels result (percent of the original image), as Label Studio writes it."""
    x, y, w, h = xyxy_to_percent(box.x0, box.y0, box.x1, box.y1, width, height)
    item = {
        "id": rid,
        "type": "rectanglelabels",
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [box.label]},
    }
    if box.score is not None and math.isfinite(box.score):
        item["score"] = float(box.score)
    return item


def labeling_config(classes: Sequence[str]) -> str:
    """The Label Studio labeling interface for the project's classes (boxes can't be rotated).

    Never without a ``<Label>``: nobody could draw a box in such a project.
    """
    if not classes:
        raise LabelError(
            "the project has no classes, so Label Studio would offer no label to draw; "
            "give them to init with --classes, e.g. --classes apple,leaf"
        )
    labels = "\n".join(f"    <Label value={quoteattr(c)}/>" for c in classes)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" canRotate="false">\n'
        f"{labels}\n"
        "  </RectangleLabels>\n"
        "</View>\n"
    )


def batch_tasks(
    items: Sequence[BatchItem],
    *,
    classes: Sequence[str],
    model_version: str | None = None,
    image_url_prefix: str | None = None,
    root: Path | None = None,
) -> list[dict]:
    """One Label Studio task per item: the image URL, alloop's name for it, the model's boxes as a prediction."""
    known = set(classes)
    tasks = []
    for i, it in enumerate(items):
        data: dict = {"image": image_url(it, image_url_prefix, root), "alloop_file": it.file_name}
        if it.score is not None and math.isfinite(it.score):
            data["alloop_score"] = float(it.score)
        task: dict = {"data": data}
        if it.predictions or model_version is not None:
            for box in it.predictions:
                if box.label not in known:
                    raise LabelError(
                        f"prediction for {it.file_name!r}: class {box.label!r} is not a project class "
                        f"({', '.join(classes)}); add it to the project first"
                    )
            result = [result_item(b, it.width, it.height, f"a{i}p{j}") for j, b in enumerate(it.predictions)]
            scores = [b.score for b in it.predictions if b.score is not None and math.isfinite(b.score)]
            prediction: dict = {"model_version": model_version or "alloop", "result": result}
            if scores:
                prediction["score"] = sum(scores) / len(scores)
            task["predictions"] = [prediction]
        tasks.append(task)
    return tasks


def write_batch(
    items: Sequence[BatchItem],
    out_dir: Path,
    *,
    classes: Sequence[str],
    model_version: str | None = None,
    image_url_prefix: str | None = None,
    **_: object,
) -> Path:
    """``tasks.json`` + ``labeling_config.xml`` + ``README.txt``; returns tasks.json.

    A project without classes gets no labeling_config.xml (a config without ``<Label>`` lets nobody
    draw a box); its README says how to give the classes.
    """
    tasks = batch_tasks(items, classes=classes, model_version=model_version, image_url_prefix=image_url_prefix)
    config_file = out_dir / "labeling_config.xml"
    if classes:
        config_file.write_text(labeling_config(classes), encoding="utf-8")
        step1 = "1. Create a project; Settings -> Labeling Interface -> Code: paste labeling_config.xml.\n"
    else:
        config_file.unlink(missing_ok=True)
        step1 = ("1. The project has no classes yet, so there is no labeling_config.xml: Label Studio needs "
                 "its labels. Create the project with `alloop init ... --classes apple,leaf`.\n")
    image_root = image_root_of(items[0]) if items else Path("<image root>")
    if image_url_prefix:
        serve = (
            f"Serve the image root so that {image_url_prefix.rstrip('/')}/<file> is each image, e.g. "
            f"`cd {image_root} && python -m http.server <port>`."
        )
    else:
        root = document_root()
        if items and local_files_path(items[0].path, root) is None:
            root = Path("/")
        serve = (
            "Image URLs point at Label Studio local storage: start Label Studio with "
            f"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true {DOCUMENT_ROOT_ENV}={root} and add a Local "
            f"Storage with the absolute path {image_root} (or let `alloop labelstudio push` do all of this, "
            f"or re-export with an image URL prefix and serve {image_root} with `python -m http.server`)."
        )
    (out_dir / "README.txt").write_text(
        "Label Studio batch written by alloop.\n"
        f"{step1}"
        f"2. {serve}\n"
        "3. Import tasks.json. The model's boxes appear as predictions: correct them, then Submit.\n"
        "4. Export (JSON, JSON-MIN, COCO, Pascal VOC or YOLO; the zip as it downloads), and give that file "
        "to `alloop step --labels <file>`.\n",
        encoding="utf-8",
    )
    return write_json(tasks, out_dir / "tasks.json")
