"""`alloop demo`: the whole loop on a generated orchard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from alloop.cli.arguments import BatchOpt, QuietOpt, parse_size, shown_default, shown_size
from alloop.cli.output import console, run, setup_logging
from alloop.cli.status import status
from alloop.config import DEMO, ORCHARD


def demo(
    directory: Annotated[Path, typer.Argument(help="Working folder for the generated data and the demo project.")] = Path(DEMO.directory),
    images: Annotated[int, typer.Option(help="Pool size (synthetic orchard images).")] = DEMO.images,
    steps: Annotated[int, typer.Option(help="Labeling rounds after init.")] = DEMO.steps,
    n: BatchOpt = DEMO.batch,
    size: Annotated[str, typer.Option(help="Image size WIDTHxHEIGHT.")] = shown_size(ORCHARD.size),
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda.", show_default=shown_default("device"))] = None,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole loop on a generated orchard with the ground truth playing the annotator."""
    from alloop.demo import run_demo

    setup_logging(quiet)
    run(lambda: run_demo(directory, n_images=images, steps=steps, batch=n, size=parse_size(size), device=device,
                         progress=not quiet, echo=console.print))
    status(directory / "project", as_json=False)
