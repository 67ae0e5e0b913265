"""`alloop export-model`: an iteration's detector as an ONNX or TorchScript file that runs without alloop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from alloop.cli.arguments import ProjectArg
from alloop.cli.output import console, esc, run


def export_model(
    project: ProjectArg,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="Model file format: onnx, torchscript (default onnx; ONNX needs pip install 'alloop[onnx]'; the tao trainer: onnx only, by TAO's own export).")] = None,
    iteration: Annotated[Optional[int], typer.Option("--iteration", "-i", help="Whose model (default: the best held-out mAP@0.5; `alloop status --models` lists them).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="The model file; FILE.json is written beside it (default: PROJECT/artifacts/models/iteration-N.onnx or .pt).")] = None,
    score_threshold: Annotated[Optional[float], typer.Option("--score-threshold", "-t", help="Boxes scoring at most this are dropped inside the model (default: the trainer's score_threshold).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the file (and its .json) when they exist.")] = False,
) -> None:
    """Export an iteration's detector (pre- and post-processing included) as ONNX or TorchScript."""
    from alloop.model import export_model as run_export

    def announce(chosen) -> None:
        console.print(f"model: {esc(chosen.reason)}", highlight=False)

    res = run(lambda: run_export(project, fmt=fmt, out=out, iteration=iteration, score_threshold=score_threshold,
                                 force=force, announce=announce))
    size = res.path.stat().st_size / 1e6
    console.print(f"[green]✓[/] {esc(res.format)} model written {esc(res.path)} ({size:.1f} MB); "
                  f"metadata {esc(res.metadata_path)}", highlight=False)
    if "preprocessing" in res.metadata:  # TAO's model: the image is prepared outside it
        console.print(f"  input: {esc(res.metadata['input']['name'])} {esc(res.metadata['input']['shape'])} BGR minus "
                      f"the mean (see the metadata); classes {esc(', '.join(res.metadata['classes']))}; "
                      f"{esc(res.metadata['runtime'])}", highlight=False)
        return
    console.print(f"  input: uint8 image (height, width, 3) RGB; outputs: boxes (x0, y0, x1, y1 pixels), labels "
                  f"(index into {esc(', '.join(res.metadata['classes']))}), scores", highlight=False)
