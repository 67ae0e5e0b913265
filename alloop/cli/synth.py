"""`alloop synth`: generate the synthetic orchard dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alloop.cli.arguments import parse_size, shown_size
from alloop.cli.output import console, esc, run
from alloop.config import ORCHARD


def synth(
    out: Annotated[Path, typer.Argument(help="Output folder: images/ and annotations.json (COCO) are written here.")],
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="Number of images.")] = ORCHARD.images,
    size: Annotated[str, typer.Option(help="Image size WIDTHxHEIGHT.")] = shown_size(ORCHARD.size),
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same dataset.")] = ORCHARD.seed,
) -> None:
    """Generate the synthetic orchard dataset (apples on foliage, COCO ground truth)."""
    from alloop.synthetic import generate_orchard

    o = run(lambda: generate_orchard(out, n, size=parse_size(size), seed=seed, progress=True))
    console.print(f"[green]✓[/] {o.n_images} images, {o.n_boxes} apples → {esc(o.images_dir)}, ground truth {esc(o.annotations)}")
