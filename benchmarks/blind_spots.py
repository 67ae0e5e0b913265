"""Blind spots: does an uncertainty score see the images where an early detector misses everything?

Issue 20's failure, measured directly and cheaply (one early model per seed, no full learning curve):
train the round-1 detector on a random first batch, predict the rest of the pool, and for every score
report, per scene, its mean and the share of images scoring exactly 0, how well it ranks images by
the ground-truth objects the model missed (Spearman), and what share of the top-``budget`` picks
falls in the scene the first model is blind to (against that scene's share of the pool).

    python benchmarks/blind_spots.py --family cultivars --seeds 3
    python benchmarks/blind_spots.py --family orchard --seeds 3 --json out.json

Same detector settings as benchmarks/label_efficiency.py (ImageNet mobilenet_v2 FPN from the offline
weights package when installed, 6 epochs capped at 60 steps, 320x240 images).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torchvision.ops import box_iou

from alloop.boxes import Box, ImageAnnotation
from alloop.demo import offline_imagenet_backbone
from alloop.score import score_images
from alloop.synthetic import FAMILIES, generate_orchard
from alloop.trainers.base import Example
from alloop.trainers.torchvision import TorchvisionConfig, TorchvisionTrainer

# The scene each family's first model is blind to (small objects in clutter).
HARD_SCENE = {"orchard": "far_canopy", "cultivars": "cluttered_canopy"}
SCORES = ("entropy:mean", "entropy:max", "proposal_entropy", "detection_entropy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", choices=sorted(FAMILIES), default="cultivars")
    p.add_argument("--pool", type=int, default=240, help="synthetic images")
    p.add_argument("--first", type=int, default=25, help="size of the random first batch")
    p.add_argument("--budget", type=int, default=25, help="picks per score for the share of the hard scene")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--blind", action="store_true",
                   help="draw the first batch outside the hard scene, so the first model has never seen it")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--max-steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("bench-blind-spots"))
    p.add_argument("--json", type=Path, help="write the figures here")
    return p.parse_args(argv)


def load_gt(path: Path) -> tuple[list[dict], dict[int, list[Box]], list[str]]:
    gt = json.loads(path.read_text())
    cats = {c["id"]: c["name"] for c in gt["categories"]}
    boxes: dict[int, list[Box]] = {}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        boxes.setdefault(a["image_id"], []).append(Box(x, y, x + w, y + h, cats[a["category_id"]]))
    return gt["images"], boxes, [cats[k] for k in sorted(cats)]


def missed(gt: list[Box], det, threshold: float = 0.5) -> int:
    """Ground-truth boxes no kept detection of score >= threshold overlaps at IoU >= 0.5."""
    kept = det.boxes[det.scores >= threshold]
    if not gt:
        return 0
    if len(kept) == 0:
        return len(gt)
    g = np.array([[b.x0, b.y0, b.x1, b.y1] for b in gt], np.float32)
    return int((box_iou(torch.from_numpy(g), torch.from_numpy(kept)).max(dim=1).values < 0.5).sum())


def run_seed(args, seed: int, images: list[dict], gt: dict[int, list[Box]], classes: list[str], root: Path) -> dict:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    if args.blind:  # the hard scene goes last: the first batch holds none of it
        order = np.concatenate([[i for i in order if images[i]["scene"] != HARD_SCENE[args.family]],
                                [i for i in order if images[i]["scene"] == HARD_SCENE[args.family]]])
    first, rest = order[: args.first], order[args.first:]
    cfg: dict = {"epochs": args.epochs, "batch_size": 4, "min_size": 240, "max_size": 320,
                 "early_stopping_patience": None, "max_steps": args.max_steps}
    backbone = offline_imagenet_backbone()
    if backbone is not None:
        cfg.update({"model": "fasterrcnn_mobilenet_v2_fpn", "backbone_weights": str(backbone)})
    trainer = TorchvisionTrainer(TorchvisionConfig(**cfg), classes, "cpu")

    def example(i: int) -> Example:
        img = images[i]
        return Example(root / img["file_name"], ImageAnnotation(img["file_name"], img["width"], img["height"],
                                                                tuple(gt.get(img["id"], ()))))

    result = trainer.train([example(i) for i in first], [], args.out / f"ckpt-{args.family}-{int(args.blind)}-{args.max_steps}-{seed}", seed=seed, progress=False)
    dets = trainer.predict(result.checkpoint, [root / images[i]["file_name"] for i in rest], progress=False)
    values = score_images(dets, SCORES)
    scenes = np.array([images[i]["scene"] for i in rest])
    n_missed = np.array([missed(gt.get(images[i]["id"], []), d) for i, d in zip(rest, dets)])
    hard = HARD_SCENE[args.family]
    out = {"seed": seed, "pool_share_hard": float(np.mean(scenes == hard)),
           "kept_boxes_per_image": {s: float(np.mean([len(d.above(0.5)) for d, sc in zip(dets, scenes) if sc == s]))
                                    for s in sorted(set(scenes))},
           "scores": {}}
    for spec, v in values.items():
        top = np.argsort(-v, kind="stable")[: args.budget]
        out["scores"][spec] = {
            "spearman_vs_missed": float(spearmanr(v, n_missed).statistic),
            "top_share_hard": float(np.mean(scenes[top] == hard)),
            "per_scene_mean": {s: float(v[scenes == s].mean()) for s in sorted(set(scenes))},
            "zero_share_hard": float(np.mean(v[scenes == hard] == 0)),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = args.out / f"data-{args.family}"
    if not (data / "annotations.json").exists():
        generate_orchard(data, args.pool, size=(320, 240), seed=1234, family=args.family)
    images, gt, classes = load_gt(data / "annotations.json")
    runs = []
    for seed in range(args.seeds):
        runs.append(run_seed(args, seed, images, gt, classes, data / "images"))
        print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    hard = HARD_SCENE[args.family]
    print(f"\nfamily {args.family}{' (first batch without the hard scene)' if args.blind else ''}: hard scene {hard}, {runs[0]['pool_share_hard']:.0%} of the pool; "
          f"kept boxes (score >= 0.5) per image, seed 0: {runs[0]['kept_boxes_per_image']}")
    print(f"{'score':<20} {'spearman vs missed':>20} {'hard share of top':>18} {'hard scoring 0':>15}")
    for spec in SCORES:
        rho = [r["scores"][spec]["spearman_vs_missed"] for r in runs]
        share = [r["scores"][spec]["top_share_hard"] for r in runs]
        zero = [r["scores"][spec]["zero_share_hard"] for r in runs]
        print(f"{spec:<20} {np.mean(rho):>12.2f} ± {np.std(rho):.2f} {np.mean(share):>10.0%} ± {np.std(share):.0%}"
              f" {np.mean(zero):>14.0%}")
    print(f"\n{(time.perf_counter() - t0) / 60:.1f} min on {platform.machine()}, torch threads {args.threads}")
    if args.json:
        args.json.write_text(json.dumps({"family": args.family, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
