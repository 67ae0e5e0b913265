"""Shared fixtures: a tiny synthetic orchard and a project config that trains in seconds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from alloop.oracle import GroundTruthOracle
from alloop.project import ProjectConfig
from alloop.synthetic import generate_orchard

# Two cores shared with whatever else runs: one torch thread keeps tests predictable.
torch.set_num_threads(1)

TINY_TRAINER = {
    "model": "fasterrcnn_mobilenet_v3_large_320_fpn",
    "weights": "none",
    "epochs": 1,
    "max_steps": 2,
    "batch_size": 2,
    "min_size": 96,
    "max_size": 128,
}
TINY_EMBEDDER = {"arch": "mobilenet_v3_small", "weights": "none", "image_size": 32}


@pytest.fixture(scope="session")
def orchard_master(tmp_path_factory) -> Path:
    """24 generated orchard images (128x96) with COCO ground truth; build once, copy per test."""
    out = tmp_path_factory.mktemp("orchard")
    generate_orchard(out, 24, size=(128, 96), seed=7)
    return out


@pytest.fixture()
def orchard(orchard_master, tmp_path) -> Path:
    """A private copy of the tiny orchard (tests may add corrupt files to it)."""
    dst = tmp_path / "orchard"
    shutil.copytree(orchard_master, dst)
    return dst


@pytest.fixture()
def tiny_config(orchard) -> ProjectConfig:
    """A project config whose embedder and trainer take seconds on one CPU thread."""
    return ProjectConfig(
        image_root=str(orchard / "images"),
        device="cpu",
        embedder="backbone",
        embedder_options=dict(TINY_EMBEDDER),
        trainer="torchvision",
        trainer_options=dict(TINY_TRAINER),
        export_formats=("coco", "labelstudio"),
    )


def coco_subset(ground_truth: Path, file_names: list[str], out: Path) -> Path:
    """Write the ground truth of some images as a COCO file, as a labeling tool would."""
    return GroundTruthOracle(ground_truth).label(file_names, out)


@pytest.fixture()
def make_labels():
    """The coco_subset function, for tests that play the annotator."""
    return coco_subset


class SmallDisk:
    """A tmpfs of a few megabytes: a disk that really fills up (ENOSPC), and can be given more room."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def resize(self, size: str) -> None:
        """Grow (or shrink) the disk, e.g. ``resize("64m")``: the user freeing space."""
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True)


@pytest.fixture()
def small_disk(tmp_path):
    """``small_disk(size)`` mounts a tmpfs of ``size`` (e.g. "2m") under tmp_path; skips where mounting is refused."""
    mounted: list[Path] = []

    def mount(size: str) -> SmallDisk:
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command: cannot make a small disk to fill")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root; CI runs as root): {done.stderr.strip()}")
        mounted.append(path)
        return SmallDisk(path)

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
