"""`alloop simulate`: compare selection methods on labeled data (learning curves)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from alloop.cli.arguments import QuietOpt, parse_options, shown_default
from alloop.cli.output import console, esc, run, setup_logging
from alloop.config import SIMULATION


def simulate(
    images: Annotated[Path, typer.Option("--images", "-i", help="Folder of images with known labels.")],
    labels: Annotated[Path, typer.Option("--labels", "-l", help="Their ground truth as COCO JSON (file_name relative to --images).")],
    out: Annotated[Path, typer.Option(help="Output folder: curves.csv, summary.csv, learning_curve.png, runs/.")] = Path(SIMULATION.out),
    budget_per_round: Annotated[int, typer.Option(min=1, help="Labels bought per round (the batch size of each step).")] = SIMULATION.budget_per_round,
    budget_boxes: Annotated[Optional[int], typer.Option(min=1, help="Buy about this many boxes a round instead, estimated from the model's predictions as `step --budget-boxes` does (--budget-per-round then caps the images); the summary and plot then count boxes.")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Steps per run.")] = SIMULATION.rounds,
    methods: Annotated[str, typer.Option(help="Comma-separated selection methods to compare; NAME@SCORE gives one its own score (coral@entropy:mean), NAME+KEY=VALUE its own option (auto+low_budget=1000).")] = ",".join(SIMULATION.methods),
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds (0..N-1); curves show mean ± std.")] = SIMULATION.seeds,
    first_batch_excludes: Annotated[Optional[str], typer.Option(help="Comma-separated scenes (the ground truth's per-image \"scene\") the shared first batch must not contain, so the first model is blind to them.")] = None,
    initial: Annotated[Optional[int], typer.Option(help="Size of the shared first batch (default: --budget-per-round).")] = None,
    test_fraction: Annotated[float, typer.Option(help="Share of the labeled images held out as the common test set.")] = SIMULATION.test_fraction,
    score: Annotated[Optional[str], typer.Option(help="Score NAME:AGG for coral (default: the project default).")] = None,
    embedder: Annotated[Optional[str], typer.Option(help="Embedder for every run.", show_default=shown_default("embedder"))] = None,
    embedder_option: Annotated[Optional[list[str]], typer.Option("--embedder-option", "-E", help="Embedder setting KEY=VALUE.")] = None,
    trainer_option: Annotated[Optional[list[str]], typer.Option("--trainer-option", "-T", help="Trainer setting KEY=VALUE.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda.", show_default=shown_default("device"))] = None,
    quiet: QuietOpt = False,
) -> None:
    """Compare selection methods on labeled data: ground truth as annotator, same start, learning curves vs random.

    Rerunning with the same --out continues an interrupted simulation.
    """
    from alloop.config import ProjectConfig
    from alloop.simulate import SimulationPlan
    from alloop.simulate import simulate as run_simulation

    setup_logging(quiet)

    def go() -> Any:
        cfg = ProjectConfig(image_root=".").with_changes(
            device=device, embedder=embedder,
            embedder_options=parse_options(embedder_option, "--embedder-option"),
            trainer_options=parse_options(trainer_option, "--trainer-option"))
        plan = SimulationPlan(images=images, ground_truth=labels, out=out, budget_per_round=budget_per_round,
                              budget_boxes=budget_boxes,
                              rounds=rounds, methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                              seeds=tuple(range(seeds)), initial=initial, test_fraction=test_fraction,
                              score=score, config=cfg,
                              first_batch_excludes=tuple(x.strip() for x in (first_batch_excludes or "").split(",")
                                                         if x.strip()))
        return run_simulation(plan, progress=not quiet, echo=console.print)

    r = run(go)
    unit = "boxes" if budget_boxes else "labels"
    table = Table(title=f"label efficiency (test mAP@0.5{', against labeled boxes' if budget_boxes else ''})")
    for col in ("method", "final mAP@.5", "AUC", f"{unit} to match random", "of random's"):
        table.add_column(col, no_wrap=True)
    for row in r.summary.to_dict("records"):
        table.add_row(row["method"], f"{row['final_map50']:.3f} ± {row['final_map50_std']:.3f}",
                      f"{row['auc']:.3f} ± {row['auc_std']:.3f}", f"{row['labels_to_reach_random_final']:.0f}",
                      f"{row['share_of_random_labels']:.0%}")
    console.print(table)
    console.print(f"curves: {esc(r.curves_csv)}  summary: {esc(r.summary_csv)}  plot: {esc(r.plot)}")
