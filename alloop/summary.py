"""Read-only views of a project for `alloop status` and `alloop trainers` (no lock needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alloop.project import Project, ProjectLock
from alloop.store.tags import tag_name  # not alloop.loop: that imports torch, `status` must stay fast
from alloop.trainers import available_trainers, load_trainer


def project_status(root: Path) -> dict[str, Any]:
    """Counts, classes, tags and one row per iteration, as plain data."""
    # Status must work while a step runs (WAL lets it read), so it does not take the lock.
    with Project.open(Path(root), lock=False) as project:
        store = project.store
        tags = {t.name: t for t in store.tags()}
        rows = []
        for it in store.iterations():
            tag = tags.get(tag_name(it.n))
            rows.append({
                "n": it.n, "status": it.status, "started_at": it.started_at, "finished_at": it.finished_at,
                "n_labeled": it.n_labeled, "n_train": it.n_train, "n_val": it.n_val,
                "map50": it.map50, "map": it.map, "method": it.method, "score_spec": it.score_spec,
                "selected": tag.size if tag else 0, "tag": tag.name if tag else "–",
                "export_dir": tag.export_dir if tag else None, "checkpoint": it.checkpoint,
                "timings": dict(it.timings), "stages_done": sorted(store.stages(it.n)),
                "per_class_ap50": dict(it.metrics.get("per_class_ap50", {})),
                "batch_size": it.config.get("n"),
            })
        locked_by = ProjectLock(project.root).holder()
        return {
            "project": str(project.root),
            "image_root": str(project.image_root),
            "counts": store.counts(),
            "classes": store.classes(),
            "tags": [{"name": t.name, "size": t.size, "method": t.method, "iteration": t.iteration,
                      "export_dir": t.export_dir} for t in tags.values()],
            "iterations": rows,
            "bad_images": store.bad_images(),
            "locked_by": locked_by,
            "next": _next_action(root, rows, locked_by),
        }


def _next_action(root: Path, rows: list[dict[str, Any]], locked_by: str | None) -> str | None:
    """What the user should do about an unfinished iteration or a held lock; None when nothing is pending."""
    last = rows[-1] if rows else None
    if last is not None and last["status"] == "done":
        return f"project is busy: locked by {locked_by} (add, doctor, embed or select)" if locked_by else None
    what = "init" if last is None or last["n"] == 0 else f"iteration {last['n']}"
    if locked_by:
        # The holder is alive (a dead one holds no flock): the iteration is running, not interrupted.
        return f"{what} is running ({locked_by}); wait for it to finish"
    if what == "init":
        batch = f" --n {last['batch_size']}" if last is not None and last["batch_size"] else ""
        return f"init was interrupted; rerun `alloop init {root}{batch}` to resume it"
    return f"{what} was interrupted; rerun `alloop step {root}` to resume it"


def trainer_catalog() -> dict[str, dict[str, Any]]:
    """Installed trainers with their entry point, option defaults and one line of help per option."""
    from alloop.trainers.options import describe

    out = {}
    for name, entry in sorted(available_trainers().items()):
        info = describe(load_trainer(name).Config)  # a field without a default is shown as None
        out[name] = {
            "entry_point": entry,
            "options": {o.name: o.default for o in info},
            "help": {o.name: o.help for o in info},
        }
    return out
