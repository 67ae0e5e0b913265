"""`alloop predict`: an iteration's detector on new images, written for a labeling tool or a viewer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from alloop.cli.arguments import ProjectArg, QuietOpt
from alloop.cli.output import console, esc, run, setup_logging


def predict(
    project: ProjectArg,
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    iteration: Annotated[Optional[int], typer.Option("--iteration", "-i", help="Whose model (default: the best held-out mAP@0.5; `alloop status --models` lists them).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: PROJECT/artifacts/predict/iteration-N-<time>).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="Predictions file format: coco, labelstudio, yolo (default coco).")] = None,
    score_threshold: Annotated[Optional[float], typer.Option("--score-threshold", "-t", help="Keep boxes scoring above this (default: the trainer's score_threshold, low so that uncertain boxes show).")] = None,
    draw: Annotated[bool, typer.Option("--draw", help="Also write each image as a JPEG with its boxes and scores (OUT/drawn/).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace the output folder when it exists.")] = False,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N (default: the project's device).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (no progress bar).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Run an iteration's detector on new images; write its boxes as COCO, Label Studio or YOLO."""
    from alloop.model import predict as run_predict

    setup_logging(quiet or as_json)

    def announce(chosen) -> None:
        if not as_json:
            console.print(f"model: {esc(chosen.reason)}", highlight=False)

    res = run(lambda: run_predict(project, images, out, fmt=fmt, iteration=iteration, score_threshold=score_threshold,
                                  draw=draw, force=force, device=device, progress=not (quiet or as_json),
                                  announce=announce))
    p = res.predictions
    boxes = sum(len(d) for d in p.detections)
    if as_json:
        console.print_json(json.dumps({
            "iteration": p.chosen.model.iteration, "reason": p.chosen.reason, "images": len(p.images),
            "boxes": boxes, "device": p.device, "seconds": round(p.seconds, 3), "out": str(res.out_dir),
            "files": [str(f) for f in res.files]}))
        return
    console.print(f"[green]✓[/] {len(p.images)} images, {boxes} boxes in {p.seconds:.1f} s on {esc(p.device)} "
                  f"({p.images_per_second:.1f} images/s)", highlight=False)
    for f in res.files:
        console.print(f"  written {esc(f)}", highlight=False)
