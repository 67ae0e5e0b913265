"""The command lines that start TAO, the launcher's mounts file, and TAO's inference output read back."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from alloop import formats
from alloop.boxes import Box
from alloop.errors import TrainerError
from alloop.trainers.tao import (
    TaoConfig,
    check_mounts_file,
    detections_from_boxes,
    tao_command,
    write_mounts_file,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "tao"
FAKE = DATA / "fake_tao.py"
CLASSES = ("Apple", "Pear")


# -- commands --------------------------------------------------------------------------------------

def test_launcher_command_line():
    args = ["-e", "/p/spec.txt", "-r", "/p/results", "-k", "nvidia_tlt", "--gpus", "1"]
    assert tao_command(TaoConfig(), "train", args) == ["tao", "model", "yolo_v4", "train", *args]
    assert tao_command(TaoConfig(task_group=""), "train", args)[:3] == ["tao", "yolo_v4", "train"]
    fake = TaoConfig(launcher=[sys.executable, str(FAKE)])
    assert tao_command(fake, "inference", ["-m", "x"]) == [sys.executable, str(FAKE), "model", "yolo_v4",
                                                            "inference", "-m", "x"]


def test_docker_command_line(tmp_path):
    cfg = TaoConfig(runner="docker", docker_args=["--shm-size", "16g"])
    run = tmp_path / "run"
    cmd = tao_command(cfg, "train", ["-e", "s"], mounts=[run / "results", run, tmp_path / "models"])
    assert cmd == ["docker", "run", "--rm", "--gpus", "all", "--user", f"{os.getuid()}:{os.getgid()}",
                   "-v", f"{tmp_path / 'models'}:{tmp_path / 'models'}", "-v", f"{run}:{run}",
                   "--shm-size", "16g", "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5",
                   "yolo_v4", "train", "-e", "s"]
    two = tao_command(TaoConfig(runner="docker", gpus=2, gpu_index=[0, 1], docker_user=False), "train", [])
    assert two[3:5] == ["--gpus", '"device=0,1"'] and "--user" not in two


def test_mounts_file(tmp_path):
    path = write_mounts_file(tmp_path / "m.json", [tmp_path / "a" / "b", tmp_path / "a", tmp_path / "c"])
    doc = json.loads(path.read_text())
    assert doc["Mounts"] == [{"source": str(tmp_path / "a"), "destination": str(tmp_path / "a")},
                             {"source": str(tmp_path / "c"), "destination": str(tmp_path / "c")}]
    assert doc["DockerOptions"] == {"tty": False, "user": f"{os.getuid()}:{os.getgid()}"}


def test_a_user_mounts_file_must_cover_every_directory(tmp_path):
    (tmp_path / "proj" / "run").mkdir(parents=True)
    mine = tmp_path / "mine.json"
    no_tty = {"DockerOptions": {"tty": False}}
    elsewhere = {"Mounts": [{"source": str(tmp_path / "proj"), "destination": "/workspace"}]}
    mine.write_text(json.dumps({**elsewhere, **no_tty}))
    with pytest.raises(TrainerError, match="does not mount .*run at the same path"):
        check_mounts_file(mine, [tmp_path / "proj" / "run"])
    same = {"Mounts": [{"source": str(tmp_path / "proj"), "destination": str(tmp_path / "proj")}]}
    mine.write_text(json.dumps(same))
    with pytest.raises(TrainerError, match='"tty": false'):
        check_mounts_file(mine, [tmp_path / "proj" / "run"])
    mine.write_text(json.dumps({**same, **no_tty}))
    check_mounts_file(mine, [tmp_path / "proj" / "run"])
    with pytest.raises(TrainerError, match="no such file"):
        check_mounts_file(tmp_path / "nope.json", [tmp_path])


# -- parsing TAO's inference output ----------------------------------------------------------------

def test_parse_real_shaped_outputs_with_0_1_and_many_lines():
    found = formats.read_kitti_detections(DATA / "inference_labels", classes=CLASSES)
    sizes = {"000000": (720, 1280), "000001": (720, 1280), "000002": (640, 480)}  # (width, height)
    dets = {k: detections_from_boxes(v, CLASSES, *sizes[k]) for k, v in found.items()}
    assert len(dets["000000"]) == 0 and dets["000000"].probs.shape == (0, 3)
    one = dets["000001"]  # a single line: the converter of the tutorial read this as "no detections"
    assert len(one) == 1 and one.boxes.shape == (1, 4)
    assert np.allclose(one.boxes[0], [412.70087, 503.15866, 441.5277, 534.2118])
    assert one.labels.tolist() == [0] and np.isclose(one.scores[0], 0.9124311)
    many = dets["000002"]
    assert many.scores.tolist() == pytest.approx([0.87, 0.41263, 0.05, 0.0012345])  # highest first
    assert many.labels.tolist() == [0, 1, 0, 0]
    # Clipped to the 640x480 image: TAO's boxes may stick out.
    assert np.allclose(many.boxes[2], [300.0, 200.0, 640.0, 260.0])
    assert np.allclose(many.boxes[3], [0, 90, 22.4, 130.6])
    assert np.allclose(many.probs[:, 0], 1 - many.scores)
    assert np.allclose(many.probs[np.arange(4), many.labels + 1], many.scores)
    assert np.allclose(many.probs.sum(axis=1), 1.0) and np.array_equal(many.objectness, many.scores)
    above = detections_from_boxes(found["000002"], CLASSES, 640, 480, score_threshold=0.05)
    assert len(above) == 3


def test_hflip_boxes_are_mirrored_back():
    boxes = [Box(10.0, 5.0, 30.0, 25.0, "Pear", 0.7)]
    det = detections_from_boxes(boxes, CLASSES, 100, 50, hflip=True)
    assert np.allclose(det.boxes, [[70.0, 5.0, 90.0, 25.0]]) and det.labels.tolist() == [1]


