"""alloop's YOLO training set, read by Ultralytics' own dataset code (issue 16: "in Ultralytics' layout").

Ultralytics is not in the test extra: it wants ``opencv-python`` beside datumaro's
``opencv-python-headless`` (two packages for one ``cv2``). ``pip install ultralytics`` runs this test;
it passed with ultralytics 8.4.190.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alloop.boxes import Box, ImageAnnotation
from alloop.formats import export_training_set

pytest.importorskip("ultralytics", reason="ultralytics is not installed (not in the test extra: it "
                    "conflicts with datumaro's headless OpenCV); pip install ultralytics to run this test")

TRAIN = [
    ImageAnnotation("row 01/äpfel 1.jpg", 60, 40, (Box(1.5, 2.25, 12.0, 10.25, "apple"), Box(0, 0, 60, 40, "leaf"))),
    ImageAnnotation("row_02/b.png", 50, 30, ()),
]
VAL = [ImageAnnotation("flat.jpg", 64, 48, (Box(3, 4, 8, 10, "apple"),))]


def test_ultralytics_reads_the_yolo_export(tmp_path, monkeypatch) -> None:
    from PIL import Image

    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "config"))  # its settings file, not ~/.config
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    root = tmp_path / "images"
    for a in (*TRAIN, *VAL):
        (root / a.file_name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (a.width, a.height), (100, 120, 90)).save(root / a.file_name)
    data_yaml = export_training_set("yolo", TRAIN, tmp_path / "out", image_root=root,
                                   classes=("apple", "leaf", "pear"), val=VAL)
    data = check_det_dataset(str(data_yaml), autodownload=False)
    assert data["names"] == {0: "apple", 1: "leaf", 2: "pear"} and data["nc"] == 3
    for split, anns in (("train", TRAIN), ("val", VAL)):
        ds = YOLODataset(img_path=data[split], data=data, task="detect", augment=False, imgsz=64, cache=False)
        got = {Path(lab["im_file"]).name: lab for lab in ds.labels}
        assert sorted(got) == sorted(Path(a.file_name.replace("/", "__")).name for a in anns)
        for a in anns:
            lab = got[a.file_name.replace("/", "__")]
            assert lab["shape"] == (a.height, a.width)
            # Ultralytics keeps normalised centre boxes; back to pixels to compare.
            boxes = [c for cx, cy, w, h in lab["bboxes"].tolist()
                     for c in ((cx - w / 2) * a.width, (cy - h / 2) * a.height, (cx + w / 2) * a.width,
                               (cy + h / 2) * a.height)]
            assert boxes == pytest.approx([c for b in a.boxes for c in (b.x0, b.y0, b.x1, b.y1)], abs=0.01)
            assert [int(c) for c in lab["cls"].ravel()] == [("apple", "leaf").index(b.label) for b in a.boxes]
