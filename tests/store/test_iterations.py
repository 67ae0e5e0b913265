"""Iterations and their stages: the loop's progress, never entangled with the labels."""

from __future__ import annotations

import numpy as np
import pytest

from alloop.boxes import ImageAnnotation


def test_iteration_record_round_trip(store):
    store.start_iteration(1, method="coral", score_spec="entropy:max", config={"n": 5})
    store.start_iteration(1, method="other", score_spec=None, config={})  # exists: left alone
    store.update_iteration(1, status="done", map50=np.float64(0.5), metrics={"ap": np.float32(0.25)},
                           timings={"train": 1.5})
    it = store.iteration(1)
    assert (it.status, it.method, it.map50, it.config) == ("done", "coral", 0.5, {"n": 5})
    assert it.metrics == {"ap": 0.25} and it.timings == {"train": 1.5}
    assert store.iterations() == [it] and store.iteration(2) is None


def test_update_iteration_refuses_unknown_fields(store):
    store.start_iteration(0, method="random", score_spec=None, config={})
    with pytest.raises(ValueError, match="unknown iteration fields.*'n_lab'"):
        store.update_iteration(0, n_lab=3)
    assert store.iteration(0).n_labeled is None


def test_stages_record_info(store):
    store.start_iteration(0, method="random", score_spec=None, config={})
    store.finish_stage(0, "embed", seconds=1.25, info={"dim": np.int64(576)})
    assert store.stages(0)["embed"]["info"] == {"dim": 576} and store.stages(1) == {}


def test_delete_iteration_never_touches_labels(store, ids):
    store.start_iteration(1, method="coral", score_spec="entropy:max", config={})
    store.write_labels([(ids["a.jpg"], ImageAnnotation("a.jpg", 100, 80, ()), "train")], iteration=1, source="x")
    store.write_scores(1, "entropy:max", [ids["sub/b.jpg"]], np.array([0.5]))
    store.create_tag("iteration-1", iteration=1, method="coral", members=[(ids["c.jpg"], 1.0, 0.5)])
    store.finish_stage(1, "import", seconds=0.1)
    store.delete_iteration(1)
    assert store.iteration(1) is None and store.stages(1) == {} and store.tag("iteration-1") is None
    assert store.scores(1, "entropy:max") == {}
    assert store.labeled_ids() == {ids["a.jpg"]}
