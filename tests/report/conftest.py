"""A hand-built project for report tests: images, tags, labels, metrics, predictions, embeddings.

Nothing is trained: the store is filled through its own API the way ``alloop.loop`` fills it, with
the loop's own stage infos and tag names, so the report sees exactly the shapes a real run leaves behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alloop.boxes import Box, Detections, ImageAnnotation
from alloop.loop.records import (
    INIT_TAG,
    EmbedInfo,
    EvaluateInfo,
    ExportInfo,
    ImportInfo,
    InferInfo,
    RegisterInfo,
    ScoreInfo,
    SelectInfo,
    StepSelectInfo,
    TrainInfo,
    tag_name,
)
from alloop.predictions import save_predictions
from alloop.project import Project, ProjectConfig

EMBEDDER_KEY = "ssl-test0001"
SCORE = "entropy:max"
BATCH = 4


def _image(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> tuple[str, int, int]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return hashlib.sha256(path.read_bytes()).hexdigest(), size[0], size[1]


def _detections(rng: np.random.Generator, n: int, num_classes: int, w: int, h: int) -> Detections:
    x0 = rng.uniform(0, w / 2, n)
    y0 = rng.uniform(0, h / 2, n)
    boxes = np.stack([x0, y0, x0 + rng.uniform(4, w / 2, n), y0 + rng.uniform(4, h / 2, n)], 1).astype(np.float32)
    probs = rng.dirichlet(np.ones(num_classes + 1), n).astype(np.float32)
    labels = probs[:, 1:].argmax(1).astype(np.int64)
    scores = np.maximum(probs[np.arange(n), labels + 1], 0.55).astype(np.float32)  # above the report's 0.5
    return Detections(boxes, labels, scores, probs, 1 - probs[:, 0])


def build_project(
    root: Path,
    *,
    names: Sequence[str] | None = None,
    classes: Sequence[str] = ("apple", "pear"),
    steps: int = 2,
    embeddings: bool = True,
    predictions: bool = True,
    baseline: bool = False,
) -> Project:
    """A project with ``steps`` finished steps after init (batches of BATCH images)."""
    names = list(names or [f"img_{k:02d}.png" for k in range(16)])
    image_root = root / "images"
    rows = [(name, *_image(image_root / name, k)) for k, name in enumerate(names)]
    project = Project.create(root / "proj", ProjectConfig(image_root=str(image_root)), lock=False)
    store = project.store
    store.add_images(rows)
    store.add_classes(list(classes))
    images = store.images()
    rng = np.random.default_rng(0)

    # iteration 0: register, embed, select (coreset: distances, no scores), export
    store.start_iteration(0, method="coreset", score_spec=None, config={"n": BATCH, "method": "coreset"})
    for stage, info in (("register", RegisterInfo(images=len(images))), ("embed", EmbedInfo(embedder=EMBEDDER_KEY)),
                        ("select", SelectInfo(selected=BATCH, method="coreset")), ("export", ExportInfo())):
        store.finish_stage(0, stage, seconds=0.5, info=info.to_json())
    if embeddings:
        directory = project.embeddings_dir(EMBEDDER_KEY)
        directory.mkdir(parents=True)
        vectors = rng.normal(size=(len(images), 8)).astype(np.float32)
        np.save(directory / "shard-00000.npy", vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        store.add_embedding_rows(EMBEDDER_KEY, "shard-00000.npy", [r.sha256 for r in images])
    batch0 = images[:BATCH]
    store.create_tag(INIT_TAG, iteration=0, method="coreset",
                     members=[(r.id, float("inf") if k == 0 else 1.0 / k, None) for k, r in enumerate(batch0)])
    store.update_iteration(0, status="done", n_labeled=0, timings={"register": 0.5, "embed": 0.5})

    previous = batch0
    for it in range(1, steps + 1):
        # import the previous batch: first image held out, the rest train
        anns = []
        for k, r in enumerate(previous):
            box = Box(2, 2, r.width - 2, r.height - 2, classes[k % len(classes)])
            anns.append((r.id, ImageAnnotation(r.path, r.width, r.height, (box,)), "val" if k == 0 else "train"))
        config = {"n": BATCH, "method": "coral", "score": SCORE}
        store.start_iteration(it, method="coral", score_spec=SCORE, config=config)
        store.write_labels(anns, iteration=it, source="labels.json")
        labeled = store.labeled_ids()
        store.finish_stage(it, "import", seconds=0.1, info=ImportInfo(new=len(anns)).to_json())
        history = tuple({"epoch": float(e), "loss": 1.0 / (e + 1), "val_map50": 0.1 * e} for e in range(4))
        trained = TrainInfo(checkpoint=f"artifacts/checkpoints/iteration-{it}/model.pt", history=history)
        store.finish_stage(it, "train", seconds=12.0, info=trained.to_json())
        map50, map_ = round(0.3 + 0.15 * it, 4), round(0.15 + 0.1 * it, 4)
        per50 = {c: map50 - 0.05 * k for k, c in enumerate(classes)}
        per = {c: map_ - 0.05 * k for k, c in enumerate(classes)}
        metrics = EvaluateInfo(map50=map50, map=map_, per_class_ap50=per50, per_class_ap=per).to_json()
        store.finish_stage(it, "evaluate", seconds=1.0, info=metrics)
        store.update_iteration(it, map50=map50, map=map_, metrics=metrics, n_labeled=len(labeled),
                               n_train=len(store.labeled_ids("train")), n_val=len(store.labeled_ids("val")))
        candidates = [r for r in images if r.id not in labeled]
        if predictions:
            dets = [_detections(rng, 1 + k % 3, len(classes), r.width, r.height) for k, r in enumerate(candidates)]
            save_predictions(project.predictions_file(it), [r.id for r in candidates], dets, num_classes=len(classes))
            store.finish_stage(it, "infer", seconds=2.0, info=InferInfo(images=len(candidates)).to_json())
        values = rng.uniform(0, 1, len(candidates)).astype(np.float32)
        store.write_scores(it, SCORE, [r.id for r in candidates], values)
        store.write_scores(it, "margin:max", [r.id for r in candidates], 1 - values)
        store.finish_stage(it, "score", seconds=0.2, info=ScoreInfo(scores=(SCORE, "margin:max")).to_json())
        order = np.argsort(-values)[:BATCH]
        picked = [candidates[int(i)] for i in order]
        members = [(r.id, 0.5 - 0.1 * k, float(values[int(i)])) for k, (r, i) in enumerate(zip(picked, order))]
        store.create_tag(tag_name(it), iteration=it, method="coral", members=members,
                         options={"alpha": 0.5, "score": SCORE})
        selected = StepSelectInfo(selected=BATCH, method="coral", score=SCORE, options={"alpha": 0.5})
        store.finish_stage(it, "select", seconds=0.3, info=selected.to_json())
        store.update_iteration(it, status="done")
        previous = picked
    if baseline:
        lines = ["method,seed,n_labeled,map50,map"]
        for seed in range(3):
            for n in (4, 8, 12):
                lines.append(f"random,{seed},{n},{0.2 + 0.02 * n + 0.01 * seed},{0.1 + 0.01 * n}")
                lines.append(f"coral,{seed},{n},{0.3 + 0.02 * n},{0.2 + 0.01 * n}")
        (project.artifacts / "simulation").mkdir(parents=True)
        (project.artifacts / "simulation" / "curves.csv").write_text("\n".join(lines) + "\n")
    return project


@pytest.fixture()
def report_project(tmp_path) -> Callable[..., Project]:
    """Factory: ``report_project(**options)`` builds a project under tmp_path (see build_project)."""
    opened: list[Project] = []

    def make(**options) -> Project:
        project = build_project(tmp_path / f"p{len(opened)}", **options)
        opened.append(project)
        return project

    yield make
    for p in opened:
        p.close()
