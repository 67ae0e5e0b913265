"""`alloop init`: create a project and export its first batch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from alloop.cli.arguments import BatchOpt, EngineOpt, ProjectArg, QuietOpt, RayAddressOpt, parse_options, shown_default
from alloop.cli.output import console, esc, run, setup_logging
from alloop.config import BATCH_SIZE


def init(
    project: ProjectArg,
    images: Annotated[Optional[Path], typer.Option("--images", "-i", help="Folder of raw images (searched recursively for jpg/png/tif/bmp/webp).")] = None,
    n: BatchOpt = BATCH_SIZE,
    method: Annotated[Optional[str], typer.Option(help="First-batch selection: auto (default: typiclust, the typical images of k-means clusters), typiclust, maxherding (kernel coverage), coreset (farthest points) or random.")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Comma-separated class names, in order. Default: taken from the first label file.")] = None,
    embedder: Annotated[Optional[str], typer.Option(help="Embedder: auto (ImageNet backbone when its weights are offline, else ssl), ssl (self-supervised on your images; no download), backbone, detector.", show_default=shown_default("embedder"))] = None,
    embedder_option: Annotated[Optional[list[str]], typer.Option("--embedder-option", "-E", help="Embedder setting KEY=VALUE (repeatable), e.g. -E epochs=20.")] = None,
    trainer: Annotated[Optional[str], typer.Option(help="Detector plugin (see `alloop trainers`).", show_default=shown_default("trainer"))] = None,
    trainer_option: Annotated[Optional[list[str]], typer.Option("--trainer-option", "-T", help="Trainer setting KEY=VALUE (repeatable), e.g. -T epochs=20 -T weights=none.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.", show_default=shown_default("device"))] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for every random choice (selection, splits, training).", show_default=shown_default("seed"))] = None,
    export_format: Annotated[Optional[list[str]], typer.Option("--export-format", help="Batch export format(s) (repeatable): coco, labelstudio, cvat, filelist.", show_default=shown_default("export_formats"))] = None,
    image_url_prefix: Annotated[Optional[str], typer.Option(help="URL your labeling tool fetches images from, e.g. http://localhost:8081/ (Label Studio tasks).")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="Share of each labeled batch held out to measure mAP.", show_default=shown_default("val_fraction"))] = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Create a project: register images, embed them, select the first batch and export it for labeling.

    Rerunning an interrupted init resumes where it stopped.
    """
    from alloop import loop
    from alloop.config import ProjectConfig

    setup_logging(quiet)

    def go() -> Any:
        # Options left unset stay None: the config's defaults apply.
        cfg = ProjectConfig(image_root=str(images.resolve()) if images else ".").with_changes(
            seed=seed,
            device=device,
            val_fraction=val_fraction,
            export_formats=tuple(export_format) if export_format else None,
            image_url_prefix=image_url_prefix,
            embedder=embedder,
            embedder_options=parse_options(embedder_option, "--embedder-option"),
            trainer=trainer,
            trainer_options=parse_options(trainer_option, "--trainer-option"),
            engine=engine,
            ray_address=ray_address,
        )
        names = [c.strip() for c in classes.split(",") if c.strip()] if classes else []
        return loop.init(project, images, n=n, method=method, classes=names, config=cfg, progress=not quiet)

    result = run(go)
    console.print(
        f"[green]✓[/] registered {result.n_images} images"
        + (f" ([yellow]{len(result.bad_images)} unreadable skipped[/], see `alloop status`)" if result.bad_images else "")
    )
    console.print(f"[green]✓[/] selected {result.n_selected} images → tag [bold]{result.tag}[/]")
    for f in result.exports:
        console.print(f"  batch for labeling: {esc(f)}")
    console.print(
        f"\nNext: label these images in your tool, export the labels (e.g. COCO JSON), then run\n"
        f"  alloop step {project} --labels path/to/labels.json --n {n}"
    )
