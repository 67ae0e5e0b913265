"""`alloop simulate`: prove the selection on data with known labels.

The ground truth plays the annotator. A fixed test split is held out of the pool (so every
method is measured on the same images, which no method could select); for each seed one
initial batch is drawn and copied to every method, so all methods start from the same state;
then each method runs ``rounds`` steps of ``budget_per_round`` labels (or of about ``budget_boxes``
boxes: labeling cost is per box, and every method then buys as much work). After every step the
freshly trained detector is evaluated on the test split. Output: a learning-curve table
(CSV), a plot (mean ± std over seeds), the area under each curve and the labels each method
needs to reach random sampling's final mAP.

Interrupting a simulation loses nothing: rerunning it continues every run where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomllib

from alloop import atomic, loop
from alloop.boxes import Box, ImageAnnotation
from alloop.config import SIMULATION
from alloop.curves import (
    plot_curves,
    summarise,
)
from alloop.device import resolve_device
from alloop.errors import ConfigError, LabelError, SelectionError
from alloop.evaluate import evaluate
from alloop.oracle import GroundTruthOracle
from alloop.project import Project, ProjectConfig

log = logging.getLogger("alloop")

CURVE_COLUMNS = ["method", "seed", "round", "n_labeled", "map50", "map", "n_boxes"]
# Per slice (the ground truth's per-image "scene"), when it has them: where each method's labels went
# and how the model does on that slice of the test split. Finding the rare cases is much of what
# active learning is bought for, and an overall mAP hides them.
SLICE_COLUMNS = ["method", "seed", "round", "slice", "labeled", "labeled_boxes", "test_images", "map50"]


@dataclass(frozen=True)
class MethodSpec:
    """One entry of ``--methods``: ``NAME[+KEY=VALUE...][@SCORE]``, e.g. ``auto+low_budget=1000@entropy:mean``.

    The options go into the run's ``[selection] options`` (as in alloop.toml), so one method can run
    beside itself with another setting; VALUE is read as TOML (numbers, true/false), else as text.
    """

    name: str
    options: dict[str, Any]
    score: str | None

    @classmethod
    def parse(cls, spec: str) -> MethodSpec:
        from alloop.select import selector_for

        head, at, score = spec.partition("@")
        if at and not score:
            raise ConfigError(f"--methods: {spec!r} names no score after '@' (e.g. coral@entropy:mean)")
        name, *pairs = head.split("+")
        options: dict[str, Any] = {}
        for pair in pairs:
            key, eq, raw = pair.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"--methods: {spec!r}: option {pair!r} is not KEY=VALUE (e.g. auto+low_budget=1000)")
            try:
                options[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                options[key.strip()] = raw
        try:
            known = selector_for(name).defaults
        except SelectionError as exc:  # an unknown method, refused before any run starts
            raise ConfigError(f"--methods: {exc}") from None
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"--methods: {spec!r}: {name} has no option {', '.join(unknown)}; "
                              f"its options: {', '.join(sorted(known)) or 'none'}")
        return cls(name, options, score or None)


@dataclass(frozen=True)
class SimulationPlan:
    """What to simulate. ``config`` supplies embedder/trainer/device settings for every run."""

    images: Path
    ground_truth: Path
    out: Path
    budget_per_round: int = SIMULATION.budget_per_round
    # Buy about this many boxes a round instead (estimated as `step --budget-boxes` does), so every
    # method spends about the same annotation work; budget_per_round then caps the images a round.
    budget_boxes: int | None = None
    rounds: int = SIMULATION.rounds
    # Method names, or NAME@SCORE to give one method its own uncertainty score.
    methods: tuple[str, ...] = SIMULATION.methods
    seeds: tuple[int, ...] = tuple(range(SIMULATION.seeds))
    initial: int | None = None          # size of the shared first batch (default: budget_per_round)
    init_method: str = "random"         # the shared first batch is method-neutral by default
    test_fraction: float = SIMULATION.test_fraction
    split_seed: int = 0                 # the test split does not depend on the run seeds, so runs merge
    score: str | None = None
    config: ProjectConfig | None = None
    # Slices (the ground truth's per-image "scene") the shared first batch must not contain: the
    # first model is then blind to them, as an early detector is to a scene type nobody labeled yet.
    first_batch_excludes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.budget_per_round <= 0 or self.rounds <= 0:
            raise ConfigError("--budget-per-round and --rounds must be positive")
        if self.budget_boxes is not None and (isinstance(self.budget_boxes, bool) or self.budget_boxes <= 0):
            raise ConfigError(f"--budget-boxes must be a positive number of boxes, got {self.budget_boxes!r}")
        if not self.methods or not self.seeds:
            raise ConfigError("--methods and --seeds must not be empty")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        for spec in self.methods:
            MethodSpec.parse(spec)
        if "random" not in self.methods:
            log.info("no 'random' in --methods: the comparison to random sampling is skipped")


@dataclass(frozen=True)
class SimulationResult:
    """Where the results are, and the headline numbers."""

    curves: pd.DataFrame
    summary: pd.DataFrame
    curves_csv: Path
    summary_csv: Path
    plot: Path | None
    extra: dict[str, Any] = field(default_factory=dict)


def simulate(plan: SimulationPlan, *, progress: bool = True, echo: Callable[[str], Any] = log.info) -> SimulationResult:
    """Run every (seed, method) loop, evaluating on the held-out test split after each step."""
    out = Path(plan.out)
    out.mkdir(parents=True, exist_ok=True)
    pool_dir, test_gt, pool_gt = _prepare_split(plan, out)
    oracle = GroundTruthOracle(pool_gt)
    test = _load_test(test_gt, out / "test")
    curves_csv, slices_csv = out / "curves.csv", out / "slices.csv"
    rows = pd.read_csv(curves_csv).to_dict("records") if curves_csv.exists() else []
    slice_rows = pd.read_csv(slices_csv).to_dict("records") if slices_csv.exists() else []
    pool_slices, pool_boxes = _slices(pool_gt), _box_counts(pool_gt)
    done = {(r["method"], int(r["seed"]), int(r["round"])) for r in rows}
    base_cfg = (plan.config or ProjectConfig(image_root=str(pool_dir))).with_changes(
        image_root=str(pool_dir.resolve()), val_fraction=0.0, export_formats=("coco",)
    )
    initial = plan.initial or plan.budget_per_round
    for seed in plan.seeds:
        cfg = base_cfg.with_changes(seed=seed)
        base = out / "runs" / f"seed-{seed}" / "_init"
        if not loop.is_initialised(base):
            loop.init(base, pool_dir, n=initial, method=plan.init_method, config=cfg, progress=progress)
            if plan.first_batch_excludes:
                _exclude_from_first_batch(base, pool_slices, plan.first_batch_excludes, seed)
        for method in plan.methods:
            run = out / "runs" / f"seed-{seed}" / _run_name(method)
            if not run.exists():
                shutil.copytree(base, run, ignore=shutil.ignore_patterns(".alloop.lock"))
            _set_method_options(run, MethodSpec.parse(method).options)
            _write_slices(run, pool_slices)
            for rnd in range(1, plan.rounds + 1):
                if (method, seed, rnd) in done:
                    continue
                echo(f"seed {seed} · {method} · round {rnd}/{plan.rounds}")
                if rnd == 1:
                    _share_first_model(run, [out / "runs" / f"seed-{seed}" / _run_name(m) for m in plan.methods])
                # A run cut off after its step finished but before its row was written has the
                # iteration already: measure it rather than step again (rounds stay iterations).
                iteration = rnd if _iteration_done(run, rnd) else _step_once(
                    run, oracle, rnd, plan, method, progress).iteration
                m = _evaluate_on_test(run, iteration, test)
                rows.append({"method": method, "seed": seed, "round": rnd, "n_labeled": m["n_labeled"],
                             "map50": m["map50"], "map": m["map"],
                             "n_boxes": sum(pool_boxes.get(p, 0) for p in m["labeled_paths"])})
                done.add((method, seed, rnd))
                slice_rows += [{"method": method, "seed": seed, "round": rnd, **r}
                               for r in _slice_rows(m, test, pool_slices, pool_boxes)]
                atomic.write_text(slices_csv, pd.DataFrame(slice_rows, columns=SLICE_COLUMNS).to_csv(index=False))
                atomic.write_text(curves_csv, pd.DataFrame(rows, columns=CURVE_COLUMNS).to_csv(index=False))
                echo(f"  {method} seed {seed}: {m['n_labeled']} labels ({rows[-1]['n_boxes']} boxes) → test mAP@0.5 "
                     f"{m['map50']:.3f}")
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS).sort_values(["method", "seed", "round"])
    # A box budget compares methods by the boxes they bought (their image counts differ per seed).
    by_boxes = plan.budget_boxes is not None
    summary = summarise(curves, x="n_boxes" if by_boxes else "n_labeled")
    summary_csv = out / "summary.csv"
    atomic.write_text(summary_csv, summary.to_csv(index=False))
    plot = plot_curves(curves, out / "learning_curve.png", x="n_boxes" if by_boxes else "n_labeled")
    if not by_boxes and curves["n_boxes"].notna().all():  # labeling cost is per box: the same curves in boxes
        plot_curves(curves, out / "learning_curve_boxes.png", x="n_boxes")
        atomic.write_text(out / "summary_boxes.csv", summarise(curves, x="n_boxes").to_csv(index=False))
    _share_curves(out, curves)
    slices = pd.DataFrame(slice_rows, columns=SLICE_COLUMNS)
    return SimulationResult(curves, summary, curves_csv, summary_csv, plot, extra={"slices": slices})


# -- analysis -------------------------------------------------------------------------------


def _prepare_split(plan: SimulationPlan, out: Path) -> tuple[Path, Path, Path]:
    """Split the ground truth into a test set and a pool (hard links, or copies across devices)."""
    pool_dir, test_dir = out / "pool", out / "test"
    test_gt, pool_gt = out / "test.json", out / "pool.json"
    if test_gt.exists() and pool_gt.exists() and pool_dir.is_dir():
        return pool_dir, test_gt, pool_gt
    try:
        gt = json.loads(Path(plan.ground_truth).read_text(encoding="utf-8"))
        images = gt["images"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise LabelError(f"{plan.ground_truth}: not a readable COCO ground truth ({exc}); pass a COCO JSON with --labels") from exc
    names = sorted(img["file_name"] for img in images)
    if len(names) < 4:
        raise LabelError(f"{plan.ground_truth}: only {len(names)} images; a simulation needs a pool and a test split")
    rng = random.Random(f"test-split:{plan.split_seed}")
    test_names = set(rng.sample(names, max(1, int(round(plan.test_fraction * len(names))))))
    src = Path(plan.images)
    for name in names:
        source = src / name
        if not source.exists():
            raise LabelError(f"{plan.ground_truth}: image {name!r} not found under {src}; check --images")
        target = (test_dir if name in test_names else pool_dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
    def subset(keep: set[str]) -> dict[str, Any]:
        imgs = [img for img in images if img["file_name"] in keep]
        ids = {img["id"] for img in imgs}
        return {"images": imgs, "annotations": [a for a in gt.get("annotations", []) if a["image_id"] in ids],
                "categories": gt["categories"]}

    atomic.write_json(test_gt, subset(test_names))
    atomic.write_json(pool_gt, subset(set(names) - test_names))
    return pool_dir, test_gt, pool_gt


@dataclass(frozen=True)
class _TestSet:
    paths: list[Path]
    annotations: list[ImageAnnotation]
    classes: list[str]
    slices: dict[str, str] = field(default_factory=dict)  # file name -> scene, when the ground truth says


def _load_test(test_gt: Path, test_dir: Path) -> _TestSet:
    gt = json.loads(test_gt.read_text(encoding="utf-8"))
    cats = {c["id"]: c["name"] for c in gt["categories"]}
    boxes: dict[int, list[Box]] = {}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        boxes.setdefault(a["image_id"], []).append(Box(x, y, x + w, y + h, cats[a["category_id"]]))
    anns = [ImageAnnotation(img["file_name"], img["width"], img["height"], tuple(boxes.get(img["id"], ())))
            for img in gt["images"]]
    return _TestSet([test_dir / a.file_name for a in anns], anns, [cats[k] for k in sorted(cats)],
                    _scenes(gt["images"]))


def _step_once(run: Path, oracle: GroundTruthOracle, rnd: int, plan: SimulationPlan, method: str,
               progress: bool) -> loop.StepResult:
    def annotate(project: Project, rows: Sequence[Any]) -> Path:
        return oracle.label([r.path for r in rows], run / "labels" / f"round-{rnd}.json")

    # "NAME@SCORE" runs method NAME with its own score (e.g. coral@entropy:mean beside auto).
    spec = MethodSpec.parse(method)
    # Methods that use no scores do not need the pool inference (the test-set evaluation is separate).
    return loop.step(run, labels=None, n=plan.budget_per_round, budget_boxes=plan.budget_boxes,
                     method=spec.name, score=spec.score or plan.score,
                     progress=progress, annotator=annotate, infer_pool=False)


def _set_method_options(run: Path, options: dict[str, Any]) -> None:
    """Write a method spec's options into the run's alloop.toml (``[selection] options``)."""
    if not options:
        return
    with Project.open(run) as project:
        merged = {**project.config.selection_options, **options}
        if merged != project.config.selection_options:
            project.save_config(project.config.with_changes(selection_options=merged))


def _iteration_done(run: Path, iteration: int) -> bool:
    with Project.open(run, lock=False) as project:
        it = project.store.iteration(iteration)
        return it is not None and it.status == "done"


def _evaluate_on_test(run: Path, iteration: int, test: _TestSet) -> dict[str, Any]:
    with Project.open(run, lock=False) as project:
        it = project.store.iteration(iteration)
        classes = project.store.classes()
        trainer = loop.build_trainer(project, classes, resolve_device(project.config.device))
        preds = trainer.predict(project.root / it.checkpoint, test.paths, progress=False)
        m = evaluate(test.annotations, preds, classes)
        # What was labeled when this iteration trained (later rounds may exist already).
        labeled = {i for i, n in project.store.label_iterations().items() if n <= iteration}
        paths = [r.path for r in project.store.images(labeled)]
        return {"n_labeled": len(labeled), "map50": m.map50, "map": m.map, "preds": preds,
                "classes": classes, "labeled_paths": paths}


def _box_counts(pool_gt: Path) -> dict[str, int]:
    """file name -> ground-truth boxes, to count what each labeled image cost."""
    gt = json.loads(pool_gt.read_text(encoding="utf-8"))
    per_id: dict[int, int] = {}
    for a in gt.get("annotations", []):
        per_id[a["image_id"]] = per_id.get(a["image_id"], 0) + 1
    return {img["file_name"]: per_id.get(img["id"], 0) for img in gt["images"]}


def _slice_rows(m: dict[str, Any], test: _TestSet, pool_slices: dict[str, str],
                pool_boxes: dict[str, int]) -> list[dict[str, Any]]:
    """Per slice: labeled images and boxes so far, and test mAP@0.5 on that slice's test images."""
    out = []
    for name in sorted(set(test.slices.values()) | set(pool_slices.values())):
        keep = [i for i, a in enumerate(test.annotations) if test.slices.get(a.file_name) == name]
        map50 = evaluate([test.annotations[i] for i in keep], [m["preds"][i] for i in keep], m["classes"]).map50 \
            if keep else float("nan")
        mine = [p for p in m["labeled_paths"] if pool_slices.get(p) == name]
        out.append({"slice": name, "labeled": len(mine), "labeled_boxes": sum(pool_boxes.get(p, 0) for p in mine),
                    "test_images": len(keep), "map50": map50})
    return out


def _scenes(images: Sequence[dict[str, Any]]) -> dict[str, str]:
    """file name -> scene, for the COCO images that carry a "scene" (the slices of a simulation)."""
    return {img["file_name"]: img["scene"] for img in images if isinstance(img.get("scene"), str)}


def _slices(pool_gt: Path) -> dict[str, str]:
    return _scenes(json.loads(pool_gt.read_text(encoding="utf-8"))["images"])


def _exclude_from_first_batch(base: Path, slice_of: dict[str, str], excludes: Sequence[str], seed: int) -> None:
    """Redraw the shared first batch uniformly from the images outside the ``excludes`` slices."""
    unknown = sorted(set(excludes) - set(slice_of.values()))
    if unknown:
        raise ConfigError(f"--first-batch-excludes: no image of slice(s) {', '.join(unknown)} in the ground truth; "
                          f"slices: {', '.join(sorted(set(slice_of.values()))) or 'none'}")
    with Project.open(base) as project:
        store = project.store
        members = store.tag_members(loop.INIT_TAG)
        rows = [r for r in store.images(state="ok") if slice_of.get(r.path) not in set(excludes)]
        if len(rows) < len(members):
            raise ConfigError(f"--first-batch-excludes leaves {len(rows)} images for a first batch of {len(members)}")
        rng = np.random.default_rng([seed, 7])
        picked = [rows[int(i)] for i in rng.choice(len(rows), len(members), replace=False)]
        with store.transaction():
            store.delete_tag(loop.INIT_TAG)
            store.create_tag(loop.INIT_TAG, iteration=0, method="random",
                             members=[(r.id, None, None) for r in picked],
                             options={"excluded_slices": list(excludes), "seed": seed})


def _run_name(method: str) -> str:
    return method.replace("@", "__").replace(":", "-")


def _share_first_model(run: Path, siblings: Sequence[Path]) -> None:
    """Round 1 trains every method on the same shared first batch with the same seed: the same model.

    Copy a sibling's finished round-1 checkpoints in; the trainer recognises a complete run with the
    same data and settings (its fingerprint) and skips the training. Anything else trains as usual.
    """
    with Project.open(run, lock=False) as project:
        target = project.checkpoint_dir(1)
    if (target / "last.pt").exists():
        return
    for sibling in siblings:
        if sibling == run or not (sibling / "alloop.toml").exists():
            continue
        with Project.open(sibling, lock=False) as other:
            first = other.store.iteration(1)
            source = other.checkpoint_dir(1)
        if first is not None and first.status == "done" and (source / "last.pt").exists():
            target.mkdir(parents=True, exist_ok=True)
            for name in ("last.pt", "best.pt"):
                if (source / name).exists():
                    shutil.copy2(source / name, target / name)
            return


def _write_slices(run: Path, slice_of: dict[str, str]) -> None:
    """Give a run project the pool's slices (the ground truth's per-image "scene"), for its report."""
    target = run / "artifacts" / "simulation" / "slices.csv"
    if target.exists():
        return
    rows = list(slice_of.items())
    if rows:
        atomic.write_text(target, pd.DataFrame(rows, columns=["path", "slice"]).to_csv(index=False))


def _share_curves(out: Path, curves: pd.DataFrame) -> None:
    """Give every run project the curves, so its selection report can draw the random baseline."""
    text = curves.to_csv(index=False)
    for run in (out / "runs").glob("seed-*/*"):
        if (run / "alloop.toml").exists():
            atomic.write_text(run / "artifacts" / "simulation" / "curves.csv", text)
