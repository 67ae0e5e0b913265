"""The README's FiftyOne snippet, run: FiftyOne's own COCO parsers read a batch, its predictions and a
training set as alloop writes them (issue 16).

FiftyOne is not in the test extra: it brings about 80 packages, and its ``fiftyone-db`` package
downloads a MongoDB server from outside PyPI while it installs (silently failing offline). The parsers
used here need no database. ``pip install fiftyone`` beside alloop runs this test (it passed with
fiftyone 1.22.1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alloop.boxes import Box, ImageAnnotation
from alloop.formats import BatchItem, export_batch, export_training_set

fouc = pytest.importorskip(
    "fiftyone.utils.coco",
    reason="fiftyone is not installed (not in the test extra: ~80 packages and a MongoDB download); "
    "pip install fiftyone to run this test",
)

CLASSES = ("apple", "leaf", "pear")
ANNS = [
    ImageAnnotation("row 01/äpfel 1.jpg", 60, 40, (Box(1.5, 2.25, 12.0, 10.25, "apple"),)),
    ImageAnnotation("row_02/b.png", 50, 30, ()),
]


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    from PIL import Image

    root = tmp_path / "images"
    for a in ANNS:
        (root / a.file_name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (a.width, a.height)).save(root / a.file_name)
    return root


def test_batch_and_predictions(tmp_path, image_root) -> None:
    items = [BatchItem(a.file_name, image_root / a.file_name, a.width, a.height, (Box(2, 3, 20, 15, "leaf", 0.8),))
             for a in ANNS]
    batch = export_batch("coco", items, tmp_path / "batch", classes=CLASSES).parent
    # -- the README snippet --
    info, classes, supercategories, images, annotations = fouc.load_coco_detection_annotations(
        f"{batch}/batch.json")
    predictions = {}
    for pred in json.load(open(f"{batch}/predictions.json")):
        obj = fouc.COCOObject.from_anno_dict(pred)
        img = images[obj.image_id]
        predictions.setdefault(img["file_name"], []).append(
            obj.to_detection((img["width"], img["height"]), classes_map=classes))
    # --
    assert classes == {1: "apple", 2: "leaf", 3: "pear"}
    assert sorted(predictions) == sorted(a.file_name for a in ANNS)
    det = predictions["row 01/äpfel 1.jpg"][0]
    assert (det.label, det.confidence) == ("leaf", 0.8)
    assert det.bounding_box == pytest.approx([2 / 60, 3 / 40, 18 / 60, 12 / 40])


def test_training_set(tmp_path, image_root) -> None:
    out = tmp_path / "train"
    export_training_set("coco", ANNS, out, image_root=image_root, classes=CLASSES)
    importer = fouc.COCODetectionDatasetImporter(data_path=f"{out}/images/train",
                                                 labels_path=f"{out}/annotations/instances_train.json")
    with importer:
        found = {Path(path).relative_to(out / "images" / "train").as_posix(): label
                 for path, _, label in importer}
    assert sorted(found) == sorted(a.file_name for a in ANNS)
    dets = found["row 01/äpfel 1.jpg"]["detections"].detections
    assert [d.label for d in dets] == ["apple"]
    assert dets[0].bounding_box == pytest.approx([1.5 / 60, 2.25 / 40, 10.5 / 60, 8.0 / 40])
    assert found["row_02/b.png"] == {}  # labeled, no objects
