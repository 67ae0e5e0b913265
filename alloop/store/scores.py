"""Per-image numbers: each iteration's named scores, and the index of cached embedding rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alloop.store.connection import Database


class ScoreTables(Database):
    """``scores`` (and ``score_arrays``) and ``embedding_index``."""

    _index_writes = 0  # this connection's writes to embedding_index (data_version shows only others')
    _index: tuple[str, tuple[int, int], dict[str, tuple[str, int]]] | None = None

    def write_scores(self, iteration: int, name: str, image_ids: Sequence[int], values: np.ndarray) -> None:
        """Store one named score for many images of ``iteration`` (replacing earlier values of those images).

        One row per (iteration, score) holding the arrays (0003_score_arrays): a pool of a million
        images is one insert, not a million.
        """
        ids = np.asarray(image_ids, np.int64).reshape(-1)
        vals = np.asarray(values, np.float64).reshape(-1)
        if len(ids) != len(vals):
            raise ValueError(f"{len(ids)} image ids for {len(vals)} values of score {name!r}")
        old_ids, old_vals = self.score_array(iteration, name)
        # Earlier values first, this write's last: the last value of an image wins, sorted by image id.
        ids, vals = np.concatenate([old_ids, ids]), np.concatenate([old_vals, vals])
        uniq, from_end = np.unique(ids[::-1], return_index=True)
        vals = vals[::-1][from_end]
        with self.transaction() as c:
            c.execute("DELETE FROM scores WHERE iteration = ? AND name = ?", (iteration, name))  # merged above
            c.execute(
                "INSERT OR REPLACE INTO score_arrays (iteration, name, image_ids, score_values) VALUES (?, ?, ?, ?)",
                (iteration, name, uniq.astype("<i8").tobytes(), vals.astype("<f8").tobytes()),
            )

    def score_array(self, iteration: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(image ids int64, values float64) of score ``name`` in ``iteration``, sorted by image id."""
        row = self.conn.execute(
            "SELECT image_ids, score_values FROM score_arrays WHERE iteration = ? AND name = ?", (iteration, name)
        ).fetchone()
        ids = np.frombuffer(row[0], "<i8").astype(np.int64) if row else np.zeros(0, np.int64)
        vals = np.frombuffer(row[1], "<f8").astype(np.float64) if row else np.zeros(0, np.float64)
        # Rows an older alloop wrote one per image (before 0003); a later write folds them in.
        legacy = self.conn.execute(
            "SELECT image_id, value FROM scores WHERE iteration = ? AND name = ?", (iteration, name)
        ).fetchall()
        if legacy:
            old = np.array(legacy, np.float64).reshape(-1, 2)
            ids = np.concatenate([old[:, 0].astype(np.int64), ids])
            vals = np.concatenate([old[:, 1], vals])
        return ids, vals

    def scores(self, iteration: int, name: str) -> dict[int, float]:
        """image_id -> value of score ``name`` in ``iteration``."""
        ids, vals = self.score_array(iteration, name)
        return dict(zip(ids.tolist(), vals.tolist()))

    def score_names(self, iteration: int) -> list[str]:
        """Names of the scores stored for ``iteration``."""
        names = {r[0] for r in self.conn.execute("SELECT name FROM score_arrays WHERE iteration = ?", (iteration,))}
        names |= {r[0] for r in self.conn.execute("SELECT DISTINCT name FROM scores WHERE iteration = ?", (iteration,))}
        return sorted(names)

    def embedding_rows(self, key: str) -> dict[str, tuple[str, int]]:
        """sha256 -> (shard file, row) of every cached embedding under ``key``.

        Read once per key and kept until the index changes (this store's writes or another
        connection's): a step looks it up several times, a million rows each (callers get a copy).
        """
        version = (self.conn.execute("PRAGMA data_version").fetchone()[0], self._index_writes)
        if self._index is None or self._index[:2] != (key, version):
            rows = self.conn.execute("SELECT sha256, shard, row FROM embedding_index WHERE embedder_key = ?", (key,))
            self._index = (key, version, {r[0]: (r[1], r[2]) for r in rows})
        return dict(self._index[2])

    def embedding_shards(self) -> set[tuple[str, str]]:
        """(embedder key, shard file) of every indexed shard: what `alloop doctor` keeps."""
        return {(r[0], r[1]) for r in self.conn.execute("SELECT DISTINCT embedder_key, shard FROM embedding_index")}

    def add_embedding_rows(self, key: str, shard: str, shas: Sequence[str]) -> None:
        """Index a new shard: its i-th row is the embedding of shas[i]."""
        with self.transaction() as c:
            self._index_writes += 1
            c.executemany(
                "INSERT OR REPLACE INTO embedding_index (sha256, embedder_key, shard, row) VALUES (?, ?, ?, ?)",
                ((s, key, shard, i) for i, s in enumerate(shas)),
            )
