"""The iterations' tables: one record per turn of the loop (0 is init) and its finished stages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alloop.store.connection import Database, json_default, now


@dataclass(frozen=True)
class Iteration:
    """One turn of the loop (0 is init)."""

    n: int
    status: str
    started_at: str
    finished_at: str | None
    method: str | None
    score_spec: str | None
    n_labeled: int | None
    n_train: int | None
    n_val: int | None
    map50: float | None
    map: float | None
    checkpoint: str | None
    metrics: Mapping[str, Any]
    timings: Mapping[str, float]
    config: Mapping[str, Any]


_ITERATIONS = """SELECT n, status, started_at, finished_at, method, score_spec, n_labeled, n_train, n_val,
                        map50, map, checkpoint, metrics_json, timings_json, config_json FROM iterations"""
# The columns update_iteration may set, each with its fixed SQL assignment (mappings go to JSON).
_SETTABLE = {
    **{k: f"{k} = ?" for k in ("status", "finished_at", "method", "score_spec", "n_labeled", "n_train", "n_val",
                               "map50", "map", "checkpoint")},
    **{k: f"{k}_json = ?" for k in ("metrics", "timings", "config")},
}


class IterationTables(Database):
    """``iterations`` and ``stages``."""

    def start_iteration(self, n: int, *, method: str | None, score_spec: str | None, config: Mapping) -> None:
        """Open iteration ``n`` (status running) unless it exists."""
        with self.transaction() as c:
            c.execute(
                """INSERT OR IGNORE INTO iterations (n, status, started_at, method, score_spec, config_json)
                   VALUES (?, 'running', ?, ?, ?, ?)""",
                (n, now(), method, score_spec, json.dumps(dict(config), default=str)),
            )

    def update_iteration(self, n: int, **fields: Any) -> None:
        """Set columns of iteration ``n``; mappings go to the *_json columns."""
        bad = set(fields) - set(_SETTABLE)
        if bad:
            raise ValueError(f"unknown iteration fields {sorted(bad)}")
        if not fields:
            return
        values = [
            json.dumps(v, default=json_default) if k in ("metrics", "timings", "config") else v
            for k, v in fields.items()
        ]
        # Only the fixed assignments of _SETTABLE are joined in; every value is a parameter.
        sql = "UPDATE iterations SET " + ", ".join(_SETTABLE[k] for k in fields) + " WHERE n = ?"
        with self.transaction() as c:
            c.execute(sql, (*values, n))

    def iterations(self) -> list[Iteration]:
        """Every iteration, in order."""
        return [_iteration(r) for r in self.conn.execute(_ITERATIONS + " ORDER BY n")]

    def iteration(self, n: int) -> Iteration | None:
        """Iteration ``n`` or None."""
        row = self.conn.execute(_ITERATIONS + " WHERE n = ?", (n,)).fetchone()
        return None if row is None else _iteration(row)

    def delete_iteration(self, n: int) -> None:
        """Forget iteration ``n``'s stages, scores, tag and record — never its labels."""
        with self.transaction() as c:
            c.execute("DELETE FROM stages WHERE iteration = ?", (n,))
            c.execute("DELETE FROM scores WHERE iteration = ?", (n,))
            c.execute("DELETE FROM score_arrays WHERE iteration = ?", (n,))
            c.execute("DELETE FROM tags WHERE iteration = ? AND iteration > 0", (n,))
            c.execute("DELETE FROM iterations WHERE n = ?", (n,))

    def finish_stage(self, iteration: int, stage: str, *, seconds: float, info: Mapping | None = None) -> None:
        """Record that ``stage`` of ``iteration`` completed (call inside the stage's transaction)."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO stages (iteration, stage, finished_at, seconds, info_json) VALUES (?, ?, ?, ?, ?)",
                (iteration, stage, now(), seconds, json.dumps(dict(info or {}), default=json_default)),
            )

    def stages(self, iteration: int) -> dict[str, dict[str, Any]]:
        """Finished stages of ``iteration``: name -> {finished_at, seconds, info}."""
        return {
            r[0]: {"finished_at": r[1], "seconds": r[2], "info": json.loads(r[3])}
            for r in self.conn.execute(
                "SELECT stage, finished_at, seconds, info_json FROM stages WHERE iteration = ?", (iteration,)
            )
        }


def _iteration(r: Any) -> Iteration:
    return Iteration(*r[:12], metrics=json.loads(r[12]), timings=json.loads(r[13]), config=json.loads(r[14]))
