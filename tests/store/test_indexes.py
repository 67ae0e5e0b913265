"""Every query the store runs for the loop and `alloop status` is answered from an index (issue 14)."""

from __future__ import annotations

import numpy as np

from alloop.boxes import Box, ImageAnnotation
from alloop.store import Store

# Tables with a row per iteration or class: scanning or sorting them costs nothing.
SMALL = ("tags", "t", "classes", "iterations")
# Sorts that are fine: over tags, and `alloop doctor`'s listing of embedding shards.
SORTS_ALLOWED = ("FROM tags t", "DISTINCT embedder_key")


def _workload(store: Store) -> list[str]:
    """Every SELECT the public methods send, with its parameters filled in."""
    store.add_images([(f"p{i}.jpg", f"sha{i}", 64, 48) for i in range(40)])
    store.add_classes(["apple"])
    rows = store.images()
    store.create_tag("t0", iteration=0, method="random", members=[(r.id, None, None) for r in rows[:10]])
    seen: list[str] = []
    store.conn.set_trace_callback(seen.append)
    store.write_labels([(r.id, ImageAnnotation(r.path, 64, 48, (Box(1, 1, 5, 5, "apple"),)), "train")
                        for r in rows[:8]], iteration=1, source="x")
    store.start_iteration(1, method="random", score_spec="s", config={})
    store.write_scores(1, "s", [r.id for r in rows], np.ones(len(rows)))
    store.add_embedding_rows("k", "shard-00000.npy", [r.sha256 for r in rows])
    store.finish_stage(1, "import", seconds=1.0)
    store.images(), store.images({r.id for r in rows[:5]}), store.images(state="ok"), store.bad_images(), store.classes(), store.labeled_ids(), store.labeled_ids("train")
    store.annotations(), store.annotations("val", available=True), store.label_iterations()
    store.tags(), store.tag("t0"), store.tag_members("t0"), store.queued_ids(), store.counts()
    store.iterations(), store.iteration(1), store.stages(1), store.scores(1, "s"), store.score_names(1)
    store.embedding_rows("k"), store.embedding_shards()
    store.conn.set_trace_callback(None)
    return [q for q in seen if q.lstrip().upper().startswith("SELECT")]


def test_filtered_queries_search_an_index_and_nothing_sorts(store):
    queries = _workload(store)
    assert len(queries) > 20
    for sql in queries:
        plan = [r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql)]
        where = " ".join(sql.split())[:90]
        if " WHERE " in sql:
            full_scans = [p for p in plan if p.startswith("SCAN") and "COVERING INDEX" not in p
                          and p.split()[1] not in (*SMALL, "json_each")]
            assert not full_scans, f"{where}: {plan}"
        if not any(s in sql for s in SORTS_ALLOWED):
            assert not [p for p in plan if "TEMP B-TREE" in p], f"{where}: {plan}"
