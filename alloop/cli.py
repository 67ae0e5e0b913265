"""The ``alloop`` command line: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import json
import logging
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from alloop import __version__
from alloop.errors import AlloopError, ConfigError

app = typer.Typer(
    name="alloop",
    help=(
        "Active learning for object detection, offline. Point it at raw images; it picks what to label, "
        "fine-tunes a detector on your labels, and picks the next batch.\n\n"
        "Workflow: `alloop init PROJECT --images DIR` → label the exported batch → "
        "`alloop step PROJECT --labels FILE` → label → step … ; `alloop status PROJECT` at any time."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
console = Console(stderr=False)
err_console = Console(stderr=True)

ProjectArg = Annotated[Path, typer.Argument(help="Project directory (holds alloop.toml, alloop.db, artifacts/).")]
BatchOpt = Annotated[
    int, typer.Option("--n", "-n", min=1, help="Batch size: how many NEW images to select for labeling now (not the total).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only print warnings and the final summary.")]


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )


def _parse_options(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is read as TOML (numbers, true/false, "strings", [lists]) or a bare string."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE, e.g. {flag} epochs=10")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out


def esc(value: Any) -> str:
    """``value`` as text Rich prints literally: file, class and option names may hold "[...]" (issue 19)."""
    return escape(str(value))


def _run(fn: Any) -> Any:
    """Call the library; an AlloopError becomes one line on stderr and exit code 1."""
    try:
        return fn()
    except AlloopError as exc:
        err_console.print(f"[bold red]error:[/] {esc(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err_console.print(
            "[yellow]interrupted:[/] finished stages are saved; run the same command again to resume", highlight=False
        )
        raise typer.Exit(130) from None


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(f"alloop {__version__}")
        raise typer.Exit()


@app.command()
def init(
    project: ProjectArg,
    images: Annotated[Optional[Path], typer.Option("--images", "-i", help="Folder of raw images (searched recursively for jpg/png/tif/bmp/webp).")] = None,
    n: BatchOpt = 100,
    method: Annotated[Optional[str], typer.Option(help="First-batch selection: auto (default: typiclust, the typical images of k-means clusters), typiclust, maxherding (kernel coverage), coreset (farthest points) or random.")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Comma-separated class names, in order. Default: taken from the first label file.")] = None,
    embedder: Annotated[str, typer.Option(help="Embedder: ssl (self-supervised on your images; no download), backbone, detector.")] = "ssl",
    embedder_option: Annotated[Optional[list[str]], typer.Option("--embedder-option", "-E", help="Embedder setting KEY=VALUE (repeatable), e.g. -E epochs=20.")] = None,
    trainer: Annotated[str, typer.Option(help="Detector plugin (see `alloop trainers`).")] = "torchvision",
    trainer_option: Annotated[Optional[list[str]], typer.Option("--trainer-option", "-T", help="Trainer setting KEY=VALUE (repeatable), e.g. -T epochs=20 -T weights=none.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for every random choice (selection, splits, training).")] = 0,
    export_format: Annotated[Optional[list[str]], typer.Option("--export-format", help="Batch export format(s) (repeatable): coco, labelstudio, cvat, filelist. Default: coco + labelstudio.")] = None,
    image_url_prefix: Annotated[Optional[str], typer.Option(help="URL your labeling tool fetches images from, e.g. http://localhost:8081/ (Label Studio tasks).")] = None,
    val_fraction: Annotated[float, typer.Option(help="Share of each labeled batch held out to measure mAP.")] = 0.2,
    quiet: QuietOpt = False,
) -> None:
    """Create a project: register images, embed them, select the first batch and export it for labeling.

    Rerunning an interrupted init resumes where it stopped.
    """
    from alloop import loop
    from alloop.project import ProjectConfig

    _setup_logging(quiet)

    def go() -> Any:
        cfg = ProjectConfig(
            image_root=str(images.resolve()) if images else ".",
            seed=seed,
            device=device,
            val_fraction=val_fraction,
            export_formats=tuple(export_format) if export_format else ("coco", "labelstudio"),
            image_url_prefix=image_url_prefix,
            embedder=embedder,
            embedder_options=_parse_options(embedder_option, "--embedder-option"),
            trainer=trainer,
            trainer_options=_parse_options(trainer_option, "--trainer-option"),
        )
        names = [c.strip() for c in classes.split(",") if c.strip()] if classes else []
        return loop.init(project, images, n=n, method=method, classes=names, config=cfg, progress=not quiet)

    result = _run(go)
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


@app.command()
def step(
    project: ProjectArg,
    labels: Annotated[Optional[Path], typer.Option("--labels", "-l", help="Labels of the last batch, as exported by your labeling tool.")] = None,
    label_format: Annotated[Optional[str], typer.Option("--format", "-f", help="Label format (sniffed when omitted): coco, labelstudio, cvat, cvat_xml, kitti, voc, yolo.")] = None,
    n: BatchOpt = 100,
    method: Annotated[Optional[str], typer.Option(help="Next-batch selection: auto (default: maxherding + uncertainty below 100 labeled images, then coral), coral (diversity + uncertainty), typiclust, maxherding, coreset or random.")] = None,
    score: Annotated[Optional[str], typer.Option(help="Uncertainty score NAME:AGG used by coral and stored for the report, e.g. entropy:max (see `alloop scores`).")] = None,
    clip_boxes: Annotated[bool, typer.Option(help="Clip boxes that stick out of the image (with a warning) instead of refusing the file.")] = False,
    add_classes: Annotated[bool, typer.Option(help="Accept class names the project does not know yet.")] = False,
    allow_duplicates: Annotated[bool, typer.Option(help="Drop exact duplicate boxes with a warning instead of refusing the file.")] = False,
    restart: Annotated[bool, typer.Option(help="Throw away an interrupted iteration (never its labels) and redo it from the start.")] = False,
    device: Annotated[Optional[str], typer.Option(help="Override the project's device for this step: auto, cpu, cuda, cuda:N.")] = None,
    budget_boxes: Annotated[Optional[int], typer.Option(min=1, help="Size the next batch by boxes to label, not images: the longest prefix of the pick order whose estimated boxes (the model's confident boxes, corrected by your labels' boxes per image) fit N; --n caps the images.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """After a labeling round: import labels, fine-tune, evaluate, infer, score, select and export the next batch.

    An interrupted step resumes from its last finished stage when run again.
    """
    from alloop import formats, loop

    _setup_logging(quiet)

    def go() -> Any:
        options = formats.ImportOptions(clip_boxes=clip_boxes, add_classes=add_classes, allow_duplicates=allow_duplicates)
        return loop.step(project, labels=labels, label_format=label_format, n=n, method=method, score=score,
                         import_options=options, restart=restart, progress=not quiet, device=device,
                         budget_boxes=budget_boxes)

    r = _run(go)
    for w in r.warnings:
        err_console.print(f"[yellow]warning:[/] {esc(w)}", highlight=False)
    imp = r.imported
    console.print(f"[green]✓[/] iteration {r.iteration}: labels new {imp.get('new', 0)}, corrected {imp.get('corrected', 0)}"
                  f"; trained on {r.n_train}, held out {r.n_val}")
    if r.map50 is not None:
        console.print(f"[green]✓[/] held-out mAP@0.5 = {r.map50:.3f}, mAP@[.5:.95] = {r.map:.3f} ({r.n_val} images)")
    console.print(f"[green]✓[/] selected {r.n_selected} images → tag [bold]{r.tag}[/]")
    for f in r.exports:
        console.print(f"  batch for labeling: {esc(f)}")
    if r.report:
        console.print(f"  report: {esc(r.report)}")
    if r.still_queued:
        console.print(f"[yellow]{len(r.still_queued)} images from earlier batches still wait for labels[/]")
    console.print(f"\nNext: label the batch, then `alloop step {esc(project)} --labels FILE --n {n}`")


@app.command()
def status(
    project: ProjectArg,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show iterations (labeled count, mAP, selected batch, export folder), tags and pool counts."""
    from alloop.summary import project_status

    info = _run(lambda: project_status(project))
    if as_json:
        console.print_json(json.dumps(info, default=str))
        return
    c = info["counts"]
    console.print(
        f"[bold]{esc(project)}[/]  images {c['images']}  labeled {c['labeled']} (train {c['train']}, held-out {c['val']})"
        f"  queued {c['queued']}  boxes {c['boxes']}  unreadable {c['bad_images']}"
    )
    console.print(f"classes: {esc(', '.join(info['classes'])) or '(none yet)'}")
    table = Table(title="iterations (mAP on the held-out labeled images)", title_justify="left", box=None,
                  padding=(0, 1))
    for col in ("it", "labeled", "train/val", "mAP@.5", "mAP@.5:.95", "method", "score", "picked"):
        table.add_column(col, no_wrap=True, justify="left" if col in ("method", "score") else "right")
    fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    for it in info["iterations"]:
        table.add_row(
            str(it["n"]) + ("" if it["status"] == "done" else "*"),
            str(it["n_labeled"] if it["n_labeled"] is not None else "–"),
            f"{it['n_train'] or 0}/{it['n_val'] or 0}" if it["n"] else "–",
            fmt(it["map50"]), fmt(it["map"]), esc(it["method"] or "–"), esc(it["score_spec"] or "–"),
            str(it["selected"]),
        )
    console.print(table)
    running = [it["n"] for it in info["iterations"] if it["status"] != "done"]
    if running:
        console.print(f"* iteration {running[-1]} was interrupted; rerun `alloop step {esc(project)}` to resume it")
    latest = next((it for it in reversed(info["iterations"]) if it["export_dir"]), None)
    if latest:
        console.print(f"current batch ({esc(latest['tag'])}, {latest['selected']} images): {esc(latest['export_dir'])}")
    if info["bad_images"]:
        console.print(f"[yellow]unreadable images ({len(info['bad_images'])}):[/]")
        for path, reason in info["bad_images"][:10]:
            console.print(f"  {esc(path)}: {esc(reason)}", highlight=False)


@app.command()
def trainers() -> None:
    """List installed detector plugins and their options."""
    from alloop.summary import trainer_catalog

    for name, entry in _run(trainer_catalog).items():
        console.print(f"[bold]{esc(name)}[/]  ({esc(entry['entry_point'])})")
        for opt, default in entry["options"].items():
            console.print(f"    {esc(opt)} = {esc(repr(default))}", highlight=False)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder: images/ and annotations.json (COCO) are written here.")],
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="Number of images.")] = 200,
    size: Annotated[str, typer.Option(help="Image size WIDTHxHEIGHT.")] = "320x240",
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same dataset.")] = 0,
) -> None:
    """Generate the synthetic orchard dataset (apples on foliage, COCO ground truth)."""
    from alloop.synthetic import generate_orchard

    def go() -> Any:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--size {size!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
        return generate_orchard(out, n, size=(w, h), seed=seed, progress=True)

    o = _run(go)
    console.print(f"[green]✓[/] {o.n_images} images, {o.n_boxes} apples → {esc(o.images_dir)}, ground truth {esc(o.annotations)}")


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Working folder for the generated data and the demo project.")] = Path("data/demo"),
    images: Annotated[int, typer.Option(help="Pool size (synthetic orchard images).")] = 240,
    steps: Annotated[int, typer.Option(help="Labeling rounds after init.")] = 3,
    n: BatchOpt = 24,
    size: Annotated[str, typer.Option(help="Image size WIDTHxHEIGHT.")] = "320x240",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Run the whole loop on a generated orchard with the ground truth playing the annotator."""
    from alloop.demo import run_demo

    _setup_logging(quiet)
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        err_console.print(f"[bold red]error:[/] --size {esc(repr(size))}: expected WIDTHxHEIGHT")
        raise typer.Exit(1) from None
    _run(lambda: run_demo(directory, n_images=images, steps=steps, batch=n, size=(w, h), device=device,
                          progress=not quiet, echo=console.print))
    status(directory / "project", as_json=False)


@app.command()
def add(
    project: ProjectArg,
    images: Annotated[Optional[Path], typer.Option("--images", "-i", help="Folder inside the image root to scan (default: the whole root).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Register images added to the image root since init (they are embedded and considered at the next step)."""
    from alloop.project import Project
    from alloop.pool import register

    _setup_logging(quiet)

    def go() -> Any:
        with Project.open(project) as p:
            return register(p, root=images, progress=not quiet)

    r = _run(go)
    console.print(f"[green]✓[/] {r.added} new images registered ({r.known} already known)")
    for path, reason in r.bad:
        err_console.print(f"[yellow]skipped[/] {esc(path)}: {esc(reason)}", highlight=False)


@app.command()
def doctor(
    project: ProjectArg,
    repair: Annotated[bool, typer.Option(help="Apply the safe fixes: set aside missing images, re-hash changed unlabeled ones. Labels are never touched.")] = False,
) -> None:
    """Check the store against the files: missing or changed images, a moved image root, store integrity, orphaned artifacts."""
    from alloop.project import Project
    from alloop.pool import check

    def go() -> Any:
        with Project.open(project) as p:
            return check(p, repair=repair)

    r = _run(go)
    for f in r.findings:
        console.print(f"[yellow]{esc(f.kind)}[/] {esc(f.subject)}: {esc(f.detail)} → {esc(f.fix)}", highlight=False)
    for line in r.repaired:
        console.print(f"[green]repaired[/] {esc(line)}", highlight=False)
    if r.ok:
        console.print(f"[green]✓[/] {r.checked_images} images checked, store and files agree")
    else:
        raise typer.Exit(1 if not repair else 0)


@app.command()
def backup(
    project: ProjectArg,
    out: Annotated[Optional[Path], typer.Option(help="Backup file (default: artifacts/backups/alloop-<time>.db).")] = None,
) -> None:
    """Write a consistent copy of the store (safe while a step runs)."""
    from alloop.project import Project
    from alloop.store import now

    def go() -> Path:
        with Project.open(project, lock=False) as p:
            target = out or p.backups_dir() / f"alloop-{now().replace(':', '')}.db"
            p.store.backup_to(target)
            return target

    console.print(f"[green]✓[/] store copied to {esc(_run(go))}")


@app.command()
def export(
    project: ProjectArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Batch: coco, labelstudio, cvat, filelist. With --training-set: coco, kitti, yolo.")] = "coco",
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

    console.print(f"[green]✓[/] written {esc(_run(go))}")


@app.command()
def embed(
    project: ProjectArg,
    embedder: Annotated[Optional[str], typer.Option(help="Switch the project's embedder: ssl, backbone, detector.")] = None,
    embedder_option: Annotated[Optional[list[str]], typer.Option("--embedder-option", "-E", help="Embedder setting KEY=VALUE (repeatable); replaces the stored options.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Compute the pool's embeddings now (only images not cached under this embedder config)."""
    from alloop import loop

    _setup_logging(quiet)
    opts = _parse_options(embedder_option, "--embedder-option") if embedder_option else None
    key, computed = _run(lambda: loop.reembed(project, embedder=embedder, options=opts, progress=not quiet))
    console.print(f"[green]✓[/] embeddings {esc(key)}: {computed} computed, the rest from cache")


@app.command("select")
def select_cmd(
    project: ProjectArg,
    n: Annotated[Optional[int], typer.Option("--n", "-n", min=1, help="Batch size (default: the current batch's size).")] = None,
    method: Annotated[Optional[str], typer.Option(help="auto, coral, typiclust, maxherding, coreset or random.")] = None,
    score: Annotated[Optional[str], typer.Option(help="Score NAME:AGG for coral (any score stored this iteration).")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Selection option KEY=VALUE, e.g. -o alpha=0.3, -o score_threshold=0.2, -o balance=true.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Redo the current batch's selection from stored embeddings and scores, without training; re-export it."""
    from alloop import loop

    _setup_logging(quiet)
    sel = _run(lambda: loop.reselect(project, n=n, method=method, score=score,
                                     options=_parse_options(option, "--option"), progress=not quiet))
    console.print(f"[green]✓[/] {len(sel.indices)} images re-selected with {esc(sel.method)} {esc(dict(sel.options))}")


@app.command()
def simulate(
    images: Annotated[Path, typer.Option("--images", "-i", help="Folder of images with known labels.")],
    labels: Annotated[Path, typer.Option("--labels", "-l", help="Their ground truth as COCO JSON (file_name relative to --images).")],
    out: Annotated[Path, typer.Option(help="Output folder: curves.csv, summary.csv, learning_curve.png, runs/.")] = Path("simulation"),
    budget_per_round: Annotated[int, typer.Option(min=1, help="Labels bought per round (the batch size of each step).")] = 50,
    rounds: Annotated[int, typer.Option(min=1, help="Steps per run.")] = 6,
    methods: Annotated[str, typer.Option(help="Comma-separated selection methods to compare; NAME@SCORE gives one its own score, e.g. coral@entropy:mean.")] = "random,coral,auto",
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds (0..N-1); curves show mean ± std.")] = 3,
    first_batch_excludes: Annotated[Optional[str], typer.Option(help="Comma-separated scenes (the ground truth's per-image \"scene\") the shared first batch must not contain, so the first model is blind to them.")] = None,
    initial: Annotated[Optional[int], typer.Option(help="Size of the shared first batch (default: --budget-per-round).")] = None,
    test_fraction: Annotated[float, typer.Option(help="Share of the labeled images held out as the common test set.")] = 0.2,
    score: Annotated[Optional[str], typer.Option(help="Score NAME:AGG for coral (default: the project default).")] = None,
    embedder: Annotated[str, typer.Option(help="Embedder for every run.")] = "ssl",
    embedder_option: Annotated[Optional[list[str]], typer.Option("--embedder-option", "-E", help="Embedder setting KEY=VALUE.")] = None,
    trainer_option: Annotated[Optional[list[str]], typer.Option("--trainer-option", "-T", help="Trainer setting KEY=VALUE.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Compare selection methods on labeled data: ground truth as annotator, same start, learning curves vs random.

    Rerunning with the same --out continues an interrupted simulation.
    """
    from alloop.project import ProjectConfig
    from alloop.simulate import SimulationPlan
    from alloop.simulate import simulate as run_simulation

    _setup_logging(quiet)

    def go() -> Any:
        cfg = ProjectConfig(image_root=".", device=device, embedder=embedder,
                            embedder_options=_parse_options(embedder_option, "--embedder-option"),
                            trainer_options=_parse_options(trainer_option, "--trainer-option"))
        plan = SimulationPlan(images=images, ground_truth=labels, out=out, budget_per_round=budget_per_round,
                              rounds=rounds, methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                              seeds=tuple(range(seeds)), initial=initial, test_fraction=test_fraction,
                              score=score, config=cfg,
                              first_batch_excludes=tuple(x.strip() for x in (first_batch_excludes or "").split(",")
                                                         if x.strip()))
        return run_simulation(plan, progress=not quiet, echo=console.print)

    r = _run(go)
    table = Table(title="label efficiency (test mAP@0.5)")
    for col in ("method", "final mAP@.5", "AUC", "labels to match random", "of random's"):
        table.add_column(col, no_wrap=True)
    for row in r.summary.to_dict("records"):
        table.add_row(row["method"], f"{row['final_map50']:.3f} ± {row['final_map50_std']:.3f}",
                      f"{row['auc']:.3f} ± {row['auc_std']:.3f}", f"{row['labels_to_reach_random_final']:.0f}",
                      f"{row['share_of_random_labels']:.0%}")
    console.print(table)
    console.print(f"curves: {esc(r.curves_csv)}  summary: {esc(r.summary_csv)}  plot: {esc(r.plot)}")


@app.command()
def report(
    project: ProjectArg,
    iteration: Annotated[Optional[int], typer.Option("--iteration", "-i", min=0, help="Iteration to report on (0 = init). Default: the latest.")] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the report in your web browser afterwards.")] = False,
) -> None:
    """Write the selection report of an iteration: why these images, and is the model improving.

    One self-contained HTML page (works offline) plus selection.csv, learning_curve.csv, classes.csv,
    scores.csv, embedding_map.csv and report.json beside it, under artifacts/reports/iteration-N/.
    `alloop step` writes it automatically; run this to regenerate it or to report on an older iteration.
    """
    from alloop.report import write_project_report

    path = _run(lambda: write_project_report(project, iteration))
    console.print(f"[green]✓[/] report: {esc(path)}")
    if open_:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            err_console.print(f"[yellow]could not start a browser;[/] open {esc(path)} yourself", highlight=False)


@app.command()
def scores() -> None:
    """List the uncertainty scores (NAME:AGG) that --score accepts."""
    from alloop.score import DEFAULT_SCORE, available_scores

    for spec in available_scores():
        console.print(spec + ("   (default)" if spec == DEFAULT_SCORE else ""), highlight=False)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
