"""Per-image numbers: each iteration's named scores, and the index of cached embedding rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alloop.store.connection import Database


class ScoreTables(Database):
    """``scores`` and ``embedding_index``."""

    def write_scores(self, iteration: int, name: str, image_ids: Sequence[int], values: np.ndarray) -> None:
        """Store one named score for many images of ``iteration`` (replacing earlier values)."""
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO scores (iteration, image_id, name, value) VALUES (?, ?, ?, ?)",
                ((iteration, int(i), name, float(v)) for i, v in zip(image_ids, values)),
            )

    def scores(self, iteration: int, name: str) -> dict[int, float]:
        """image_id -> value of score ``name`` in ``iteration``."""
        return {
            r[0]: r[1]
            for r in self.conn.execute(
                "SELECT image_id, value FROM scores WHERE iteration = ? AND name = ?", (iteration, name)
            )
        }

    def score_names(self, iteration: int) -> list[str]:
        """Names of the scores stored for ``iteration``."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT name FROM scores WHERE iteration = ? ORDER BY name", (iteration,)
        )]

    def embedding_rows(self, key: str) -> dict[str, tuple[str, int]]:
        """sha256 -> (shard file, row) of every cached embedding under ``key``."""
        return {
            r[0]: (r[1], r[2])
            for r in self.conn.execute(
                "SELECT sha256, shard, row FROM embedding_index WHERE embedder_key = ?", (key,)
            )
        }

    def embedding_shards(self) -> set[tuple[str, str]]:
        """(embedder key, shard file) of every indexed shard: what `alloop doctor` keeps."""
        return {(r[0], r[1]) for r in self.conn.execute("SELECT DISTINCT embedder_key, shard FROM embedding_index")}

    def add_embedding_rows(self, key: str, shard: str, shas: Sequence[str]) -> None:
        """Index a new shard: its i-th row is the embedding of shas[i]."""
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO embedding_index (sha256, embedder_key, shard, row) VALUES (?, ?, ?, ?)",
                ((s, key, shard, i) for i, s in enumerate(shas)),
            )
