"""`alloop step`: import a labeled batch, train, score, select and export the next one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from alloop.cli.arguments import EngineOpt, ProjectArg, QuietOpt, RayAddressOpt
from alloop.cli.output import console, esc, print_step_result, run, setup_logging
from alloop.config import BATCH_SIZE


def step(
    project: ProjectArg,
    labels: Annotated[Optional[Path], typer.Option("--labels", "-l", help="Labels of the last batch, as exported by your labeling tool.")] = None,
    source: Annotated[Optional[str], typer.Option("--from", help="Take the labels from a live tool instead of a file: labelstudio (the annotations submitted in the Label Studio project `alloop labelstudio push` linked; $LABEL_STUDIO_URL, $LABEL_STUDIO_API_KEY).")] = None,
    label_format: Annotated[Optional[str], typer.Option("--format", "-f", help="Label format (sniffed when omitted): coco, labelstudio, cvat, cvat_xml, kitti, voc, yolo.")] = None,
    n: Annotated[Optional[int], typer.Option("--n", "-n", min=1, help=f"Batch size: how many NEW images to select for labeling now (not the total). Default {BATCH_SIZE}; an interrupted step resumes with its own unless --n is given.")] = None,
    method: Annotated[Optional[str], typer.Option(help="Next-batch selection: auto (default: maxherding + uncertainty below 100 labeled images, then coral), coral (diversity + uncertainty), ppal (uncertain candidates, then box-level diversity; pair with --score dcus), typiclust, maxherding, coreset or random.")] = None,
    score: Annotated[Optional[str], typer.Option(help="Uncertainty score NAME:AGG used by coral and stored for the report, e.g. entropy:max (see `alloop scores`).")] = None,
    clip_boxes: Annotated[bool, typer.Option(help="Clip boxes that stick out of the image (with a warning) instead of refusing the file.")] = False,
    add_classes: Annotated[bool, typer.Option(help="Accept class names the project does not know yet.")] = False,
    allow_duplicates: Annotated[bool, typer.Option(help="Drop exact duplicate boxes with a warning instead of refusing the file.")] = False,
    voc_origin: Annotated[Optional[int], typer.Option(min=0, max=1, help="Pascal VOC pixel origin for every file: 0 (corners, as datumaro, CVAT, LabelImg and Label Studio write) or 1 (1-based pixel indices). Default: 1 for files whose <source> names PASCAL VOC, else 0.")] = None,
    restart: Annotated[bool, typer.Option(help="Throw away an interrupted iteration (never its labels) and redo it from the start.")] = False,
    device: Annotated[Optional[str], typer.Option(help="Override the project's device for this step: auto, cpu, cuda, cuda:N.")] = None,
    budget_boxes: Annotated[Optional[int], typer.Option(min=1, help="Size the next batch by boxes to label, not images: the longest prefix of the pick order whose estimated boxes (the model's confident boxes, corrected by your labels' boxes per image) fit N; --n caps the images.")] = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """After a labeling round: import labels, fine-tune, evaluate, infer, score, select and export the next batch.

    An interrupted step resumes from its last finished stage when run again.
    """
    from alloop import formats, loop

    setup_logging(quiet)

    def go() -> Any:
        options = formats.ImportOptions(clip_boxes=clip_boxes, add_classes=add_classes, allow_duplicates=allow_duplicates,
                                        voc_origin=voc_origin)
        if source is not None:
            from alloop.errors import ConfigError
            from alloop.labelstudio.sync import connection_for, step_from_labelstudio

            if source != "labelstudio":
                raise ConfigError(f"--from {source}: unknown; live label sources: labelstudio")
            if labels is not None:
                raise ConfigError("--labels and --from labelstudio exclude each other; give one of them")
            return step_from_labelstudio(project, connection_for(project), n=n, method=method, score=score,
                                         import_options=options, restart=restart, progress=not quiet,
                                         device=device, budget_boxes=budget_boxes, engine=engine,
                                         ray_address=ray_address)[1]
        return loop.step(project, labels=labels, label_format=label_format, n=n, method=method, score=score,
                         import_options=options, restart=restart, progress=not quiet, device=device,
                         budget_boxes=budget_boxes, engine=engine, ray_address=ray_address)

    r = run(go)
    print_step_result(r)
    if r.pool_exhausted and not r.still_queued:
        console.print(f"[green]✓[/] all images labeled; final model at {esc(r.checkpoint)}")
        return
    console.print(f"[green]✓[/] selected {r.n_selected} images → tag [bold]{r.tag}[/]")
    for f in r.exports:
        console.print(f"  batch for labeling: {esc(f)}")
    if r.report:
        console.print(f"  report: {esc(r.report)}")
    if r.still_queued:
        console.print(f"[yellow]{len(r.still_queued)} images from earlier batches still wait for labels[/]")
    if source == "labelstudio":
        console.print(f"\nNext: `alloop labelstudio push {esc(project)}` sends the new batch to Label Studio")
    else:
        console.print(f"\nNext: label the batch, then `alloop step {esc(project)} --labels FILE --n {r.batch_size}`")
