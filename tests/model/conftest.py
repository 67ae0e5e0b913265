"""Projects for the model tests: one trained by the real loop (shared, read-only) and hand-built ones.

``trained_project`` runs ``alloop init`` and one ``alloop step`` on the tiny orchard with the
few-step trainer of tests/conftest.py: its checkpoint and stored pool predictions are the loop's own.
``hand_project`` fills a store through its API with iterations whose checkpoints the test chooses
(a real file, garbage, none), for the error paths that need no trained model.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alloop import loop
from alloop.oracle import GroundTruthOracle
from alloop.project import Project, ProjectConfig

TINY_TRAINER = {"model": "fasterrcnn_mobilenet_v3_large_320_fpn", "weights": "none", "epochs": 1,
                "max_steps": 2, "batch_size": 2, "min_size": 96, "max_size": 128}
TINY_EMBEDDER = {"arch": "mobilenet_v3_small", "weights": "none", "image_size": 32}


@pytest.fixture(scope="session")
def trained_project(orchard_master, tmp_path_factory) -> Path:
    """A project after init + one step (iteration 1: checkpoint, held-out mAP, pool predictions)."""
    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(orchard_master, root / "orchard")
    config = ProjectConfig(image_root=str(root / "orchard" / "images"), device="cpu", embedder="backbone",
                           embedder_options=dict(TINY_EMBEDDER), trainer="torchvision",
                           trainer_options=dict(TINY_TRAINER), export_formats=("coco",))
    loop.init(root / "proj", root / "orchard" / "images", n=8, config=config, progress=False)
    with Project.open(root / "proj", lock=False) as p:
        queued = sorted(r.path for r in p.store.images() if r.id in p.store.queued_ids())
    labels = GroundTruthOracle(root / "orchard" / "annotations.json").label(queued, root / "labels.json")
    loop.step(root / "proj", labels=labels, n=4, progress=False)
    return root / "proj"


def write_image(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    """A random RGB image of ``size`` (width, height)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def build_hand_project(root: Path, iterations: Sequence[tuple[int, bytes | None, float | None, float | None]],
                       *, trainer: str = "torchvision") -> Path:
    """A project whose iterations are ``(n, checkpoint bytes or None, map50, map)``."""
    images = root / "images"
    rows = []
    for k in range(4):
        path = write_image(images / f"img_{k}.png", (64, 48), seed=k)
        rows.append((path.name, hashlib.sha256(path.read_bytes()).hexdigest(), 64, 48))
    config = ProjectConfig(image_root=str(images), device="cpu", trainer=trainer,
                           trainer_options=dict(TINY_TRAINER) if trainer == "torchvision" else {})
    project = Project.create(root / "proj", config, lock=False)
    try:
        store = project.store
        store.add_images(rows)
        store.add_classes(["apple"])
        store.start_iteration(0, method="random", score_spec=None, config={})
        store.update_iteration(0, status="done", n_labeled=0)
        for n, blob, map50, map_ in iterations:
            store.start_iteration(n, method="random", score_spec=None, config={})
            checkpoint = None
            if blob is not None:
                path = project.checkpoint_dir(n) / "best.pt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(blob)
                checkpoint = project.relpath(path)
            store.update_iteration(n, status="done", checkpoint=checkpoint, map50=map50, map=map_,
                                   n_labeled=2 * n, n_train=n, n_val=n)
    finally:
        project.close()
    return root / "proj"


@pytest.fixture()
def hand_project(tmp_path) -> Callable[..., Path]:
    """Factory: ``hand_project([(n, blob, map50, map), ...], trainer=...)`` → project directory."""
    count = [0]

    def make(iterations, **options) -> Path:
        count[0] += 1
        return build_hand_project(tmp_path / f"hand{count[0]}", iterations, **options)

    return make


def same_detections(a_boxes, a_labels, a_scores, b_boxes, b_labels, b_scores, *, box_px: float = 0.5,
                    score_rtol: float = 1e-3) -> None:
    """Assert two detectors' outputs on one image agree box for box, in any order: each box of
    ``a`` has a box of ``b`` of the same class within ``box_px`` pixels and ``score_rtol``."""
    a_boxes, b_boxes = np.asarray(a_boxes, np.float64).reshape(-1, 4), np.asarray(b_boxes, np.float64).reshape(-1, 4)
    a_scores, b_scores = np.asarray(a_scores, np.float64), np.asarray(b_scores, np.float64)
    a_labels, b_labels = np.asarray(a_labels), np.asarray(b_labels)
    assert len(a_boxes) == len(b_boxes), f"{len(a_boxes)} boxes vs {len(b_boxes)}"
    free = np.ones(len(b_boxes), bool)
    for box, label, score in zip(a_boxes, a_labels, a_scores):
        close = (free & (b_labels == label) & (np.abs(b_boxes - box).max(axis=1) <= box_px)
                 & (np.abs(b_scores - score) <= score_rtol * np.abs(score)))
        assert close.any(), f"no match for box {box.round(2)} (class {label}, score {score:.5f})"
        free[np.flatnonzero(close)[0]] = False


@pytest.fixture()
def assert_same_detections():
    """The :func:`same_detections` check, for tests."""
    return same_detections


@pytest.fixture()
def make_image():
    """The :func:`write_image` function, for tests."""
    return write_image
