"""A model card per iteration: what the detector was trained on, how, how well, and what changed.

:func:`gather_model_card` reads the store (iterations, stages, labels) into a frozen
:class:`ModelCard`; :func:`render_markdown` writes it as Markdown; :func:`write_model_card` puts
``model_card.md`` beside the iteration's checkpoint, with ``model_card.json`` (the same data) so the
next iteration's card can say which training settings changed. The report shows the same card.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alloop import atomic
from alloop.errors import ProjectError
from alloop.loop.records import ImportInfo, TrainInfo, info_of, read_stages
from alloop.project import Project
from alloop.store import now

CARD_FILE = "model_card.md"
CARD_DATA = "model_card.json"  # beside it: the card's data, read by the next iteration's card
METRIC_NAMES = {
    "map50": "mAP@0.5 — COCO mean average precision at IoU 0.5 (pycocotools), held-out labeled images",
    "map": "mAP@[.5:.95] — COCO mean average precision over IoU 0.5:0.05:0.95, same images",
}


@dataclass(frozen=True)
class ModelCard:
    """One iteration's detector, described."""

    project: str
    iteration: int
    created_at: str
    trainer: str
    checkpoint: str | None  # relative to the project
    checkpoint_bytes: int | None
    epochs: int | None
    steps: int | None
    resumed_from: str | None
    labeled: int  # images labeled up to this iteration (train + held-out)
    train: int
    heldout: int
    new_labeled: int  # labeled images this iteration's import added
    boxes_train: Mapping[str, int]  # boxes per class in the training images
    boxes_heldout: Mapping[str, int]
    config: Mapping[str, Any]  # training settings: trainer options, seed, val_fraction, device
    map50: float | None
    map: float | None
    per_class_ap50: Mapping[str, float | None]
    per_class_ap: Mapping[str, float | None]
    previous: int | None  # the iteration before this one that trained a model
    changes: tuple[str, ...] = field(default_factory=tuple)  # what changed since ``previous``

    @property
    def card_path(self) -> str | None:
        """Where ``model_card.md`` is (relative to the project): beside the checkpoint."""
        return str(Path(self.checkpoint).parent / CARD_FILE) if self.checkpoint else None


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _recorded_config(project: Project, checkpoint: str | None) -> dict[str, Any] | None:
    """The training settings an iteration's card recorded when it was first written, if readable."""
    if not checkpoint:
        return None
    try:
        saved = json.loads(((project.root / checkpoint).parent / CARD_DATA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = saved.get("config") if isinstance(saved, dict) else None
    return dict(config) if isinstance(config, dict) else None


def _config(project: Project) -> dict[str, Any]:
    """The settings that train the next model, as alloop.toml has them now."""
    cfg = project.config
    out: dict[str, Any] = {"seed": cfg.seed, "val_fraction": cfg.val_fraction, "device": cfg.device}
    out.update({f"{cfg.trainer}.{k}": v for k, v in sorted(cfg.trainer_options.items())})
    return out


def _boxes(project: Project, iteration: int) -> tuple[int, int, int, Counter, Counter]:
    """(labeled, train, held-out, boxes per class in train, in held-out) as of ``iteration``."""
    store = project.store
    labeled_at = store.label_iterations()
    train_boxes, val_boxes = Counter({c: 0 for c in store.classes()}), Counter({c: 0 for c in store.classes()})
    n_train = n_val = 0
    for row, ann, split in store.annotations():
        if labeled_at.get(row.id, iteration + 1) > iteration:
            continue
        counter = val_boxes if split == "val" else train_boxes
        n_val, n_train = (n_val + 1, n_train) if split == "val" else (n_val, n_train + 1)
        counter.update(b.label for b in ann.boxes)
    return n_train + n_val, n_train, n_val, train_boxes, val_boxes


def gather_model_card(project: Project, iteration: int) -> ModelCard:
    """The card of ``iteration`` from the store; ProjectError when there is no such iteration."""
    card = _gather(project, iteration)
    return ModelCard(**{**asdict(card), "changes": _changes(project, card)})


def _gather(project: Project, iteration: int) -> ModelCard:
    store = project.store
    its = store.iterations()
    record = next((it for it in its if it.n == iteration), None)
    if record is None:
        known = ", ".join(str(it.n) for it in its) or "none yet"
        raise ProjectError(f"{project.root}: no iteration {iteration} (iterations: {known}); pass --iteration N")
    stages = read_stages(iteration, store.stages(iteration))
    trained = info_of(stages, "train", TrainInfo)
    imported = info_of(stages, "import", ImportInfo)
    path = project.root / record.checkpoint if record.checkpoint else None
    labeled, n_train, n_val, train_boxes, val_boxes = _boxes(project, iteration)
    metrics = record.metrics or {}
    resumed = trained.resumed_from if trained else None
    return ModelCard(
        project=project.root.resolve().name,
        iteration=iteration,
        created_at=now(),
        trainer=project.config.trainer,
        checkpoint=record.checkpoint,
        checkpoint_bytes=path.stat().st_size if path is not None and path.is_file() else None,
        epochs=trained.epochs if trained else None,
        steps=trained.steps if trained else None,
        resumed_from=project.relpath(Path(resumed)) if resumed else None,
        labeled=labeled,
        train=n_train,
        heldout=n_val,
        new_labeled=imported.new if imported else 0,
        boxes_train=dict(train_boxes),
        boxes_heldout=dict(val_boxes),
        # A card written before keeps the settings of its time; alloop.toml may have changed since.
        config=_recorded_config(project, record.checkpoint) or _config(project),
        map50=_finite(record.map50),
        map=_finite(record.map),
        per_class_ap50={k: _finite(v) for k, v in (metrics.get("per_class_ap50") or {}).items()},
        per_class_ap={k: _finite(v) for k, v in (metrics.get("per_class_ap") or {}).items()},
        previous=next((it.n for it in reversed(its) if 0 < it.n < iteration and it.checkpoint), None),
    )


def _changes(project: Project, card: ModelCard) -> tuple[str, ...]:
    """What differs from the previous model: labels, boxes, metrics, settings."""
    if card.previous is None:
        return ("First model of the project.",)
    prev = _gather(project, card.previous)
    lines = [(f"Labeled images: {prev.labeled} → {card.labeled} (+{card.labeled - prev.labeled}); "
              f"training {prev.train} → {card.train}, held-out {prev.heldout} → {card.heldout}.")]
    grown = [f"{c} {card.boxes_train.get(c, 0) - prev.boxes_train.get(c, 0):+d}"
             for c in card.boxes_train if card.boxes_train.get(c, 0) != prev.boxes_train.get(c, 0)]
    if grown:
        lines.append("Training boxes per class: " + ", ".join(grown) + ".")
    for key in ("map50", "map"):
        a, b = getattr(prev, key), getattr(card, key)
        if a is not None and b is not None:
            lines.append(f"{METRIC_NAMES[key].split(' — ')[0]}: {a:.3f} → {b:.3f} ({b - a:+.3f}).")
    if card.map50 is not None and prev.heldout != card.heldout:
        lines.append("The held-out set grew as well, so the two mAP figures are not on the same images.")
    old = _recorded_config(project, prev.checkpoint)
    if old is None:
        lines.append(f"Training settings of iteration {card.previous} were not recorded (no readable {CARD_DATA}).")
        return tuple(lines)
    diff = [f"{k}: {old.get(k)!r} → {v!r}" for k, v in card.config.items() if old.get(k) != v]
    diff += [f"{k}: {v!r} → unset" for k, v in old.items() if k not in card.config]
    lines.append("Settings changed: " + "; ".join(diff) + "." if diff else "Training settings unchanged.")
    return tuple(lines)


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def render_markdown(card: ModelCard) -> str:
    """The card as Markdown (``model_card.md``)."""
    size = f" ({card.checkpoint_bytes / 1e6:.1f} MB)" if card.checkpoint_bytes is not None else " (missing)"
    classes = sorted(set(card.boxes_train) | set(card.boxes_heldout) | set(card.per_class_ap50))
    out = [
        f"# Model card: {card.project}, iteration {card.iteration}",
        "",
        f"Detector trained by alloop's `{card.trainer}` trainer. Card written {card.created_at}.",
        "",
        "## Model",
        f"- Checkpoint: `{card.checkpoint}`{size}" if card.checkpoint else "- Checkpoint: none (training did not finish)",
        f"- Trained {card.epochs} epoch(s), {card.steps} step(s)" + (
            f", starting from `{card.resumed_from}`" if card.resumed_from else ", from the configured weights"),
        "",
        "## Data",
        f"- Labeled images: {card.labeled} ({card.new_labeled} new this iteration)",
        (f"- Training images: {card.train}; held-out images: {card.heldout} (a fixed share of each labeled batch, "
         "never trained on)"),
        "",
        "| class | training boxes | held-out boxes | AP@0.5 | AP@[.5:.95] |",
        "|---|---:|---:|---:|---:|",
        *(f"| {c} | {card.boxes_train.get(c, 0)} | {card.boxes_heldout.get(c, 0)} | "
          f"{_num(card.per_class_ap50.get(c))} | {_num(card.per_class_ap.get(c))} |" for c in classes),
        "",
        "## Metrics",
        f"- {METRIC_NAMES['map50']}: **{_num(card.map50)}**",
        f"- {METRIC_NAMES['map']}: **{_num(card.map)}**",
        "- The held-out images were picked by the selection, not at random: read these as a trend.",
        "",
        "## Training settings",
        *(f"- `{k}` = `{v}`" for k, v in card.config.items()),
        "",
        "## What changed since the previous model" + (f" (iteration {card.previous})" if card.previous else ""),
        *(f"- {line}" for line in card.changes),
        "",
    ]
    return "\n".join(out)


def write_model_card(project: Project, iteration: int, card: ModelCard | None = None) -> Path | None:
    """Write ``model_card.md`` (+ ``model_card.json``) beside the iteration's checkpoint; None when
    the iteration has no checkpoint. ``card``: one already gathered (the report's)."""
    card = card if card is not None else gather_model_card(project, iteration)
    if card.checkpoint is None:
        return None
    directory = (project.root / card.checkpoint).parent
    atomic.write_json(directory / CARD_DATA, asdict(card))
    target = directory / CARD_FILE
    atomic.write_text(target, render_markdown(card))
    return target


__all__ = ["CARD_FILE", "METRIC_NAMES", "ModelCard", "gather_model_card", "render_markdown", "write_model_card"]
