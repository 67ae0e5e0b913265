"""The report's data as CSV and JSON beside the HTML, for users who script on it.

``selection.csv`` is the batch in pick order; the other files hold the curve, the classes, the
scores and the map. Column orders are part of the interface (tests pin them).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from alloop import atomic
from alloop.report.data import ReportData

SELECTION_COLUMNS = ("image_id", "path", "pick_order", "score", "distance")
CURVE_COLUMNS = ("iteration", "n_labeled", "map50", "map")
CLASS_COLUMNS = ("class", "labeled_boxes", "predicted_boxes", "ap50", "ap", "previous_ap50")
SCORE_COLUMNS = ("image_id", "path", "score", "selected")
MAP_COLUMNS = ("image_id", "path", "x", "y", "status")


def _csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def write_tables(data: ReportData, directory: Path) -> list[Path]:
    """Write the CSV files and report.json of ``data`` into ``directory``; return their paths."""
    # A term spec's batch adds one column per term (its share of the pick's objective) after the fixed ones.
    terms = list(dict.fromkeys(name for b in data.batch for name in b.terms))
    files: dict[str, str] = {
        "selection.csv": _csv(
            (*SELECTION_COLUMNS, *(f"term_{t}" for t in terms)),
            ((b.image_id, b.path, b.pick_order, b.score, b.distance, *(b.terms.get(t) for t in terms))
             for b in data.batch),
        ),
        "learning_curve.csv": _csv(CURVE_COLUMNS, ((p.iteration, p.n_labeled, p.map50, p.map) for p in data.curve)),
        "classes.csv": _csv(
            CLASS_COLUMNS,
            ((c.name, c.labeled, c.predicted, c.ap50, c.ap, c.previous_ap50) for c in data.classes),
        ),
    }
    if data.scores is not None:
        chosen = {b.image_id for b in data.batch}
        files["scores.csv"] = _csv(
            SCORE_COLUMNS,
            ((i, data.image_paths.get(i, ""), float(v), int(i in chosen))
             for i, v in zip(data.scores.pool_ids.tolist(), data.scores.pool.tolist())),
        )
    if data.embedding_map is not None:
        m = data.embedding_map
        files["embedding_map.csv"] = _csv(
            MAP_COLUMNS,
            ((i, data.image_paths.get(i, ""), round(float(x), 5), round(float(y), 5), s)
             for i, (x, y), s in zip(m.image_ids.tolist(), m.points.tolist(), m.status.tolist())),
        )
    written = []
    for name, text in files.items():
        atomic.write_text(directory / name, text)
        written.append(directory / name)
    atomic.write_json(directory / "report.json", report_json(data, sorted(files)))
    written.append(directory / "report.json")
    return written


def report_json(data: ReportData, files: Sequence[str] = ()) -> dict[str, Any]:
    """The report's numbers as plain JSON-ready data (no figures, no per-image rows)."""
    s = data.summary
    return _clean({
        "project": data.project_root,
        "iteration": data.iteration,
        "generated_at": data.generated_at,
        "summary": {
            "pool": s.pool, "labeled": s.labeled, "train": s.train, "val": s.val, "selected": s.selected,
            "budget_used": s.budget_used, "budget_after_batch": s.budget_after, "method": s.method,
            "score": s.score_spec, "map50": s.map50, "map": s.map, "previous_iteration": s.previous_iteration,
            "previous_map50": s.previous_map50, "previous_map": s.previous_map, "status": s.status,
        },
        "selection_options": dict(data.batch_options),
        "score": None if data.scores is None else {
            "name": data.scores.name,
            "pool_median": _median(data.scores.pool.tolist()),
            "selected_median": _median(data.scores.selected.tolist()),
            "selected_median_percentile": data.scores.selected_percentile,
            "other_scores": list(data.other_scores),
        },
        "learning_curve": [{"iteration": p.iteration, "n_labeled": p.n_labeled, "map50": p.map50, "map": p.map}
                           for p in data.curve],
        "random_baseline": [vars(b) for b in data.baseline],
        "classes": [{"class": c.name, "labeled_boxes": c.labeled, "predicted_boxes": c.predicted,
                     "ap50": c.ap50, "ap": c.ap} for c in data.classes],
        "embedding_map": None if data.embedding_map is None else {
            "method": data.embedding_map.method, "embedder": data.embedding_map.embedder,
            "points": len(data.embedding_map.points),
        },
        "timings_s": {t.stage: t.seconds for t in data.timings},
        "config": dict(data.config),
        "notes": dict(data.notes),
        "files": list(files),
    })


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def _clean(obj: Any) -> Any:
    # Strict JSON: NaN/inf become null so every JSON parser reads the file.
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


__all__ = ["CLASS_COLUMNS", "CURVE_COLUMNS", "MAP_COLUMNS", "SCORE_COLUMNS", "SELECTION_COLUMNS", "report_json",
           "write_tables"]
