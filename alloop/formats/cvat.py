"""CVAT "COCO 1.0": model boxes out as pre-annotations, CVAT's COCO export back in.

CVAT's COCO export (https://docs.cvat.ai/docs/dataset_management/formats/format-coco/) is a zip::

    taskname.zip/
    ├── images/<subset>/...            (only with "Save images")
    └── annotations/instances_<subset>.json

Its JSON is plain COCO plus ``licenses``/``info`` and, per annotation, ``attributes: {"occluded":
false, "rotation": 0.0, ...}``. Upload accepts the bare ``.json`` or such a zip. alloop reads the
zip, the unpacked folder or the JSON (the COCO reader does the parsing), and writes a batch as:

- ``instances_default.json``: the batch's images with the current model's boxes as annotations
  (each with ``score``); CVAT "Upload annotations" → "COCO 1.0" loads them as shapes to correct;
- ``labels.json``: the task's labels for CVAT's raw label editor (``[{"name": ..., "attributes": []}]``);
- ``images.txt``: the absolute paths of the batch's images, to create the task from;
- ``README.txt``: the steps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from alloop import atomic
from alloop.errors import LabelError
from alloop.formats import coco
from alloop.formats.records import BatchItem, ParsedLabels, read_member, zip_members

_INSTANCES = re.compile(r"(^|/)annotations/instances_[^/]*\.json$")


def _instance_members(path: Path) -> list[str]:
    return sorted(n for n in zip_members(path) if _INSTANCES.search(n))


def sniff(path: Path) -> bool:
    """A CVAT COCO zip, or an export folder with annotations/instances_*.json."""
    if path.is_dir():
        return bool(list(path.glob("annotations/instances_*.json")))
    if path.suffix.lower() == ".zip" and path.is_file():
        try:
            return bool(_instance_members(path))
        except LabelError:
            return False
    return False


def read(path: Path, **_: object) -> ParsedLabels:
    """Parse a CVAT COCO 1.0 export: zip, unpacked folder, or one instances JSON."""
    source = str(path)
    if path.is_dir():
        files = sorted(path.glob("annotations/instances_*.json"))
        if not files:
            raise LabelError(
                f"{source}: no annotations/instances_*.json inside; export from CVAT as COCO 1.0"
            )
        return coco.merge([coco.read(f) for f in files])
    if path.suffix.lower() == ".zip":
        members = _instance_members(path)
        if not members:
            raise LabelError(
                f"{source}: zip has no annotations/instances_*.json; export from CVAT as COCO 1.0 "
                "(or pass --format cvat_xml for a 'CVAT for images' export)"
            )
        parts = []
        for name in members:
            data = read_member(path, name)
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as e:
                raise LabelError(f"{source}!{name}: not UTF-8 JSON; download the export again") from e
            parts.append(coco.parse_text(text, f"{source}!{name}"))
        return coco.merge(parts)
    return coco.read(path)


def write_batch(items: Sequence[BatchItem], out_dir: Path, *, classes: Sequence[str], **_: object) -> Path:
    """CVAT COCO 1.0 pre-annotations for the batch, plus labels, image list and steps."""
    has_predictions = any(it.predictions for it in items)
    doc = coco.document(
        [(it.file_name, it.width, it.height, it.predictions) for it in items],
        classes,
        description=coco.PREANNOTATION_MARK if has_predictions else coco.BATCH_MARK,
        cvat=True,
    )
    coco.write_json([{"name": c, "attributes": []} for c in classes], out_dir / "labels.json")
    atomic.write_text(out_dir / "images.txt", "".join(f"{it.path}\n" for it in items))
    steps = [
        "CVAT batch written by alloop.",
        "1. Create a task; Labels -> Raw: paste labels.json.",
        "2. Add the images listed in images.txt (zip them keeping their paths relative to the image "
        "root, or use a connected share), so CVAT's image names match the project's.",
    ]
    if has_predictions:
        steps.append(
            "3. Actions -> Upload annotations -> COCO 1.0 -> instances_default.json (the model's boxes)."
        )
    else:
        steps.append("3. (No model yet: nothing to pre-annotate.)")
    steps.append(
        "4. Label, then Actions -> Export task dataset -> COCO 1.0 (or CVAT for images 1.1) and give "
        "the zip to `alloop step --labels <zip>`."
    )
    atomic.write_text(out_dir / "README.txt", "\n".join(steps) + "\n")
    return coco.write_json(doc, out_dir / "instances_default.json")
