"""The report's pictures, each returned as a ``data:`` URI so the HTML needs no other file.

Charts are drawn with matplotlib's object API on an Agg canvas (no pyplot state, no display);
thumbnails are the selected images downscaled with PIL and the current model's boxes drawn on
top. Every function returns None when it has nothing to draw.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from alloop.images import DECODE_ERRORS, open_rgb

from alloop.report.data import BaselinePoint, BatchImage, ClassRow, CurvePoint, EmbeddingMap, ScoreDistribution

THUMB_SIZE = 160  # longest side of a thumbnail, pixels
THUMB_QUALITY = 82
DPI = 110

# One palette for the whole report (the template's CSS uses the same colours).
POOL = "#a0aec0"
LABELED = "#2b6cb0"
SELECTED = "#dd6b20"
MAP50 = "#2b6cb0"
MAP = "#2f855a"
BASELINE = "#718096"
# Box colours: bright first (they sit on photos), each drawn over a dark outline.
CLASS_COLOURS = (
    "#f6e05e", "#4fd1c5", "#f687b3", "#90cdf4", "#fbd38d", "#b794f4", "#9ae6b4", "#feb2b2", "#e2e8f0", "#f6ad55",
)
MAX_CLASSES_DRAWN = 25


def data_uri(payload: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for ``payload``."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def class_colour(index: int) -> str:
    """The colour of class ``index`` in thumbnails and legends."""
    return CLASS_COLOURS[index % len(CLASS_COLOURS)]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return data_uri(buf.getvalue(), "image/png")


def _style(ax) -> None:  # noqa: ANN001 - a matplotlib Axes
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color="#e2e8f0", linewidth=0.8)
    ax.set_axisbelow(True)


# ------------------------------------------------------------------------------------------------
# charts


def learning_curve(curve: Sequence[CurvePoint], baseline: Sequence[BaselinePoint], current: int) -> str | None:
    """mAP@0.5 and mAP@[.5:.95] against labeled images, with a simulation's random baseline (mean ± std)."""
    if not curve and not baseline:
        return None
    fig = _figure(7.6, 4.4)
    ax = fig.add_subplot()
    _style(ax)
    if baseline:
        n = np.array([b.n_labeled for b in baseline], float)
        for attr, colour, label in (("map50", MAP50, "random, mAP@0.5"), ("map", MAP, "random, mAP@[.5:.95]")):
            mean = np.array([getattr(b, f"{attr}_mean") for b in baseline])
            std = np.array([getattr(b, f"{attr}_std") for b in baseline])
            ax.fill_between(n, mean - std, mean + std, color=BASELINE, alpha=0.15, linewidth=0)
            ax.plot(n, mean, "--", color=colour, linewidth=1.3,
                    label=f"{label} (simulation, {baseline[0].seeds} seeds)")
    if curve:
        n = np.array([p.n_labeled for p in curve], float)
        for attr, colour, label in (("map50", MAP50, "mAP@0.5"), ("map", MAP, "mAP@[.5:.95]")):
            y = np.array([math.nan if getattr(p, attr) is None else getattr(p, attr) for p in curve], float)
            ax.plot(n, y, "o-", color=colour, linewidth=2.2, markersize=6, label=f"this run, {label}")
            for p, yi in zip(curve, y):
                if p.iteration == current and math.isfinite(yi):
                    ax.plot([p.n_labeled], [yi], "o", markersize=13, markerfacecolor="none",
                            markeredgecolor=SELECTED, markeredgewidth=2)
        for p in curve:
            top = max(v for v in (p.map50, p.map, 0.0) if v is not None)
            ax.annotate(f"it {p.iteration}", (p.n_labeled, top), textcoords="offset points", xytext=(0, 8),
                        ha="center", fontsize=8, color="#4a5568")
    ax.set_xlabel("labeled images")
    ax.set_ylabel("held-out mAP")
    ax.set_ylim(0, min(1.0, max(0.1, ax.get_ylim()[1] * 1.12)))
    ax.set_xlim(left=0)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return _png(fig)


def embedding_map(emb: EmbeddingMap, pick_order: Mapping[int, int]) -> str | None:
    """Scatter of the 2-D map: pool grey, labeled blue, this batch orange (first picks numbered)."""
    if emb is None or not len(emb.points):
        return None
    fig = _figure(6.0, 5.0)
    ax = fig.add_subplot()
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_color("#e2e8f0")
    pts = emb.points
    styles = (
        ("pool", dict(s=9, c=POOL, alpha=0.55, linewidths=0), "unlabeled pool"),
        ("labeled", dict(s=22, c=LABELED, alpha=0.9, linewidths=0), "labeled"),
        ("selected", dict(s=60, c=SELECTED, edgecolors="black", linewidths=0.6, marker="D"), "selected now"),
    )
    for status, kw, label in styles:
        mask = emb.status == status
        if mask.any():
            ax.scatter(pts[mask, 0], pts[mask, 1], label=f"{label} ({int(mask.sum())})", rasterized=True, **kw)
    for image_id, (x, y) in zip(emb.image_ids.tolist(), pts.tolist()):
        order = pick_order.get(image_id)
        if order is not None and order <= 20:
            ax.annotate(str(order), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color="#7b341e")
    ax.set_title(f"{emb.method} of the {emb.embedder} embeddings", fontsize=9, color="#4a5568")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return _png(fig)


def score_histogram(scores: ScoreDistribution | None) -> str | None:
    """Share of the pool vs share of the batch per score bin: a good batch sits to the right."""
    if scores is None or not len(scores.pool):
        return None
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    _style(ax)
    both = np.concatenate([scores.pool, scores.selected]).astype(np.float64)
    # Scores live in [0, 1]; a fixed axis keeps iterations comparable and ties readable.
    lo, hi = min(0.0, float(np.nanmin(both))), max(1.0, float(np.nanmax(both)))
    bins = np.linspace(lo, hi, 26)
    weights = np.full(len(scores.pool), 1 / len(scores.pool))
    ax.hist(scores.pool, bins=bins, weights=weights, color=POOL, alpha=0.8, label=f"scored pool ({len(scores.pool)})")
    if len(scores.selected):
        ax.hist(scores.selected, bins=bins, weights=np.full(len(scores.selected), 1 / len(scores.selected)),
                color=SELECTED, alpha=0.75, label=f"selected now ({len(scores.selected)})")
        ax.axvline(float(np.median(scores.selected)), color=SELECTED, linestyle="--", linewidth=1.4)
    ax.axvline(float(np.median(scores.pool)), color="#4a5568", linestyle="--", linewidth=1.2)
    ax.set_xlabel(f"{scores.name} (higher = more uncertain); dashed = median")
    ax.set_ylabel("share of images")
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def class_counts(rows: Sequence[ClassRow]) -> str | None:
    """Labeled boxes vs confidently predicted boxes per class (horizontal bars)."""
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: (r.labeled, r.predicted), reverse=True)[:MAX_CLASSES_DRAWN]
    fig = _figure(6.0, max(2.2, 0.9 + 0.42 * len(rows)))
    ax = fig.add_subplot()
    _style(ax)
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r.labeled for r in rows], height=0.38, color=LABELED, label="labeled boxes")
    ax.barh(y + 0.2, [r.predicted for r in rows], height=0.38, color=SELECTED, alpha=0.8,
            label="predicted boxes in the pool (score ≥ 0.5)")
    ax.set_yticks(y, [_short(r.name) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("boxes")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _png(fig)


def training_curve(history: Sequence[Mapping[str, float]]) -> str | None:
    """Training loss per epoch (and validation mAP when the trainer measured it)."""
    epochs = [h for h in history if "loss" in h]
    if not epochs:
        return None
    fig = _figure(6.0, 2.8)
    ax = fig.add_subplot()
    _style(ax)
    x = [h.get("epoch", i) for i, h in enumerate(epochs)]
    ax.plot(x, [h["loss"] for h in epochs], "o-", color="#4a5568", markersize=4, label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    val = [(xi, h["val_map50"]) for xi, h in zip(x, epochs) if _finite(h.get("val_map50"))]
    if val:
        ax2 = ax.twinx()
        ax2.plot([v[0] for v in val], [v[1] for v in val], "s--", color=MAP50, markersize=4, label="val mAP@0.5")
        ax2.set_ylabel("val mAP@0.5", color=MAP50)
        ax2.set_ylim(0, 1)
        ax2.spines[["top"]].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    return _png(fig)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(float(x))


def _short(name: str, limit: int = 28) -> str:
    # Class names are user data: escape "$" so matplotlib never reads them as mathtext.
    name = name if len(name) <= limit else name[: limit - 1] + "…"
    return name.replace("$", r"\$")


# ------------------------------------------------------------------------------------------------
# thumbnails


def thumbnail(item: BatchImage, classes: Sequence[str], size: int = THUMB_SIZE) -> str:
    """The image downscaled to ``size`` px on its longest side, the model's boxes drawn, as a JPEG data URI."""
    try:
        img = open_rgb(item.file, size * 2)  # JPEG: decode at a reduced scale, much faster
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
    except DECODE_ERRORS:
        return _placeholder(item, size)
    draw = ImageDraw.Draw(img)
    sx = img.width / max(item.width, 1)
    sy = img.height / max(item.height, 1)
    index = {name: k for k, name in enumerate(classes)}
    for box in item.boxes:
        colour = class_colour(index.get(box.label, len(classes)))
        xy = (box.x0 * sx, box.y0 * sy, box.x1 * sx, box.y1 * sy)
        x0, y0, x1, y1 = xy
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        # A one-pixel coloured line between two dark ones stays visible on any background.
        draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline="#1a202c", width=3)
        draw.rectangle(xy, outline=colour, width=1)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    return data_uri(buf.getvalue(), "image/jpeg")


def _placeholder(item: BatchImage, size: int) -> str:
    # A grey tile instead of a broken <img>: the image was moved or is unreadable now.
    ratio = item.height / item.width if item.width else 0.75
    img = Image.new("RGB", (size, max(1, int(size * ratio))), "#cbd5e0")
    ImageDraw.Draw(img).text((8, 8), "image missing", fill="#2d3748")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return data_uri(buf.getvalue(), "image/png")


__all__ = [
    "class_colour", "class_counts", "data_uri", "embedding_map", "learning_curve", "score_histogram",
    "thumbnail", "training_curve",
]
