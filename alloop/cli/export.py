"""`alloop export`: a batch for labeling, or the labeled set for training, in another format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from alloop.cli.arguments import ProjectArg
from alloop.cli.output import console, esc, run
from alloop.config import EXPORT_FORMAT
from alloop.errors import ConfigError


def export(
    project: ProjectArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Batch: coco, labelstudio, cvat, filelist. With --training-set: coco, cvat_xml, kitti, voc, yolo.")] = EXPORT_FORMAT,
    tag: Annotated[Optional[str], typer.Option(help="Which batch (default: the latest), e.g. iteration-2.")] = None,
    training_set: Annotated[bool, typer.Option("--training-set", help="Export every labeled image with its boxes (for training elsewhere, e.g. TAO/KITTI or YOLO).")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: artifacts/exports/<tag>/<format>).")] = None,
) -> None:
    """Export a batch for labeling, or the labeled set for training, in another tool's format."""
    from alloop import loop

    def go() -> Path:
        if training_set:
            if out is None:
                raise ConfigError("--training-set needs --out FOLDER")
            return loop.export_training(project, fmt=fmt, out=out)
        return loop.export(project, tag=tag, fmt=fmt, out=out)

    console.print(f"[green]✓[/] written {esc(run(go))}")
