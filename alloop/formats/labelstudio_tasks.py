"""Label Studio tasks out: image URLs (local files under the document root, or a prefix such as
``s3://``), the pre-annotation results, the labeling interface and the batch's ``tasks.json``.

The reading side (Label Studio's exports back in) is :mod:`alloop.formats.labelstudio`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from alloop.boxes import Box, xyxy_to_percent
from alloop.errors import LabelError
from alloop.formats.coco import write_json
from alloop.formats.records import BatchItem

FROM_NAME = "label"
TO_NAME = "image"
DOCUMENT_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
LOCAL_FILES_URL = "/data/local-files/?d="
CLOUD_SCHEMES = ("s3://", "gs://")


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
