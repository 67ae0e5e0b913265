"""Turn :class:`ReportData` into one self-contained HTML page (jinja2, autoescaped).

Figures and thumbnails are embedded as data URIs and the page carries a Content-Security-Policy
that forbids loading anything else, so it opens offline and cannot reach the network. Every
string from the project (paths, class names, config values) goes through jinja2's autoescape.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined

from alloop.report import figures
from alloop.report.data import ReportData

log = logging.getLogger("alloop")

MAX_THUMBNAILS = 200  # the grid shows the first picks; selection.csv always lists the whole batch
IMPROVED = 0.005  # mAP changes smaller than this read as "flat"

# What each built-in selection method does, in one line for the "why these images" box.
METHOD_EXPLANATIONS = {
    "coreset": "k-center greedy (coreset): each pick is the image farthest in embedding space from every "
               "labeled or already-picked image, so the batch covers the pool",
    "coral": "uncertainty + diversity (coral): among images the current model is unsure about, each pick is "
             "the one farthest from every labeled or already-picked image",
    "random": "a uniform random sample of the unlabeled pool",
    "typiclust": "typicality (TypiClust): the pool is clustered and each pick is the most typical image of a "
                 "cluster that has the fewest labeled images, so the batch follows the pool's modes",
    "maxherding": "coverage (MaxHerding): each pick covers the most of the pool that nothing labeled or "
                  "picked covers yet, weighted by uncertainty when a model exists",
}


METHOD_HEADLINES = {
    "coreset": "Diverse: together they cover the pool",
    "coral": "Uncertain and diverse",
    "random": "A random sample (a baseline, not a choice)",
    "typiclust": "Typical: one representative per mode of the pool",
    "maxherding": "Covering: the parts of the pool nothing labeled resembles",
}


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("alloop.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.0f}%"
    env.filters["signed"] = lambda x: "" if x is None else f"{x:+.3f}"
    env.filters["seconds"] = _seconds
    return env


def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _seconds(x: float | None) -> str:
    if x is None:
        return "–"
    if x < 60:
        return f"{x:.1f} s"
    return f"{int(x // 60)} min {x % 60:.0f} s"


def explain_selection(data: ReportData) -> list[str]:
    """Plain sentences answering "why these images"."""
    s = data.summary
    if not data.batch:
        return ["No batch has been selected in this iteration yet."]
    method = _effective_method(data)
    how = METHOD_EXPLANATIONS.get(method or "", f"method {method}")
    if s.method == "auto" and method != "auto":
        how = f"auto ({data.batch_options.get('regime', '?')} regime) → {how}"
    unlabeled = s.pool - s.labeled
    out = [f"{s.selected} of {unlabeled} unlabeled images were picked by {how}."]
    sc = data.scores
    if sc is not None and len(sc.selected):
        out.append(
            f"Their median {sc.name} score is {np.median(sc.selected):.3f} against {np.median(sc.pool):.3f} "
            f"for the {len(sc.pool)} scored images (higher = the model is less sure)."
        )
    distances = [b.distance for b in data.batch if b.distance is not None]
    if distances:
        out.append(
            f"When picked, they lay a median distance of {np.median(distances):.3f} from the nearest labeled or "
            f"already-picked image (range {min(distances):.3f}–{max(distances):.3f}); "
            "larger means less like anything labeled so far."
        )
    return out


def _effective_method(data: ReportData) -> str | None:
    """The strategy that really picked the batch: auto names the one its regime chose."""
    if data.summary.method == "auto":
        return str(data.batch_options.get("strategy", "auto"))
    return data.summary.method


def selection_verdict(data: ReportData) -> str:
    """One bold line: what kind of images this batch is."""
    if not data.batch:
        return "No batch yet."
    method = _effective_method(data)
    head = METHOD_HEADLINES.get(method or "", f"Picked by {method}")
    sc = data.scores
    if sc is not None and len(sc.selected) and data.summary.method != "random":
        head += f"; the typical pick is more uncertain than {sc.selected_percentile:.0f}% of the pool"
    return head + "."


def explain_progress(data: ReportData) -> list[str]:
    """Plain sentences answering "is it improving"."""
    s = data.summary
    curve = [p for p in data.curve if p.map50 is not None]
    if not curve:
        return [data.notes.get("learning-curve", "No held-out mAP measured yet.")]
    out = []
    last = curve[-1]
    if len(curve) >= 2:
        first = curve[0]
        out.append(
            f"Held-out mAP@0.5 went from {first.map50:.3f} (iteration {first.iteration}, {first.n_labeled} labeled) "
            f"to {last.map50:.3f} (iteration {last.iteration}, {last.n_labeled} labeled)."
        )
    else:
        out.append(f"Held-out mAP@0.5 is {last.map50:.3f} with {last.n_labeled} labeled images; "
                   "the curve needs one more step to show a trend.")
    random = _random_at(data, last.n_labeled)
    if random is not None and s.map50 is not None:
        out.append(f"A random selection reached {random:.3f} at the same labeled count in simulation "
                   f"({s.map50 - random:+.3f} for this run).")
    return out


def progress_verdict(data: ReportData) -> str:
    """One bold line: is held-out mAP@0.5 going up since the last measurement?"""
    s = data.summary
    if s.map50 is None:
        return "Not measured yet."
    if s.previous_map50 is None:
        return f"First measurement: mAP@0.5 = {s.map50:.3f}."
    delta = s.map50 - s.previous_map50
    word = "Yes" if delta > IMPROVED else "No" if delta < -IMPROVED else "Flat"
    line = f"{word}: mAP@0.5 {delta:+.3f} since iteration {s.previous_iteration}"
    last = data.curve[-1] if data.curve else None
    random = _random_at(data, last.n_labeled) if last else None
    if random is not None:
        line += f", {s.map50 - random:+.3f} against random"
    return line + "."


def _random_at(data: ReportData, n_labeled: int) -> float | None:
    # The simulation's random mAP@0.5 at this labeled count, when its curve spans it.
    if not data.baseline:
        return None
    n = np.array([b.n_labeled for b in data.baseline], float)
    if not n.min() <= n_labeled <= n.max():
        return None
    return float(np.interp(n_labeled, n, [b.map50_mean for b in data.baseline]))


def render_html(data: ReportData, *, max_thumbnails: int = MAX_THUMBNAILS) -> str:
    """The report page for ``data``, figures and thumbnails embedded."""
    classes = [c.name for c in data.classes]
    shown = data.batch[:max_thumbnails]
    pick_order = {b.image_id: b.pick_order for b in data.batch}
    figs: Mapping[str, str | None] = {
        "learning_curve": _safe(figures.learning_curve, data.curve, data.baseline, data.iteration),
        "embedding_map": _safe(figures.embedding_map, data.embedding_map, pick_order) if data.embedding_map else None,
        "scores": _safe(figures.score_histogram, data.scores),
        "classes": _safe(figures.class_counts, data.classes) if any(c.labeled or c.predicted for c in data.classes)
        else None,
        "training": _safe(figures.training_curve, data.training),
    }
    thumbs = [
        {
            "item": b,
            "src": figures.thumbnail(b, classes),
            "labels": _box_summary(b.boxes),
        }
        for b in shown
    ]
    legend = [(name, figures.class_colour(k)) for k, name in enumerate(classes)]
    template = _environment().get_template("report.html.j2")
    return template.render(
        d=data,
        s=data.summary,
        figs=figs,
        thumbs=thumbs,
        hidden=len(data.batch) - len(shown),
        legend=legend,
        why=explain_selection(data),
        progress=explain_progress(data),
        verdict=progress_verdict(data),
        why_verdict=selection_verdict(data),
        colours={"pool": figures.POOL, "labeled": figures.LABELED, "selected": figures.SELECTED},
        delta50=None if data.summary.map50 is None or data.summary.previous_map50 is None
        else data.summary.map50 - data.summary.previous_map50,
        delta=None if data.summary.map is None or data.summary.previous_map is None
        else data.summary.map - data.summary.previous_map,
    )


def _safe(draw: Callable[..., str | None], *args: Any) -> str | None:
    # A figure that fails to draw (odd data, a matplotlib quirk) costs the figure, never the step.
    try:
        return draw(*args)
    except Exception as exc:  # noqa: BLE001
        log.warning("report figure %s failed: %s", draw.__name__, exc)
        return None


def _box_summary(boxes: tuple) -> str:
    counts: dict[str, int] = {}
    for b in boxes:
        counts[b.label] = counts.get(b.label, 0) + 1
    return ", ".join(f"{n}× {label}" for label, n in sorted(counts.items(), key=lambda kv: -kv[1]))


__all__ = ["MAX_THUMBNAILS", "explain_progress", "explain_selection", "progress_verdict", "render_html",
           "selection_verdict"]
