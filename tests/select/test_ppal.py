"""PPAL: category-conditioned matching distance and k-medoids, exact against brute force, seeded,
its edge cases, and the box descriptors' way from the detector through the predictions file."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from alloop.boxes import Detections
from alloop.errors import SelectionError
from alloop.predictions import PackedDetections, load_packed, save_predictions
from alloop.select import PoolBoxes, SelectionInputs, SelectionWarning, select
from alloop.select.ppal import ccms_distances, k_medoids


def random_boxes(n: int, *, classes: int = 3, d: int = 6, seed: int = 0, empty: tuple[int, ...] = ()) -> PoolBoxes:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 7, size=n)
    counts[list(empty)] = 0
    b = int(counts.sum())
    return PoolBoxes(
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        labels=rng.integers(0, classes, size=b).astype(np.int64),
        scores=rng.uniform(0.01, 1.0, size=b).astype(np.float32),
        features=rng.normal(size=(b, d)).astype(np.float32),
    )


def brute_ccms(boxes: PoolBoxes, images, threshold: float, max_boxes: int) -> np.ndarray:
    """The definition, one pair and one box at a time."""
    def kept(i):
        a, b = boxes.offsets[i], boxes.offsets[i + 1]
        rows = [r for r in range(a, b) if boxes.scores[r] >= threshold]
        rows.sort(key=lambda r: (-float(boxes.scores[r]), r))
        return rows[:max_boxes]

    def unit(r):
        f = boxes.features[r].astype(np.float64)
        return f / np.linalg.norm(f)

    def directed(i, j):
        mine, theirs = kept(i), kept(j)
        total = sum(float(boxes.scores[r]) for r in mine)
        if total == 0:
            return 0.0
        acc = 0.0
        for r in mine:
            same = [q for q in theirs if boxes.labels[q] == boxes.labels[r]]
            m = min((1.0 - float(unit(r) @ unit(q)) for q in same), default=2.0)
            acc += float(boxes.scores[r]) * min(max(m, 0.0), 2.0)
        return acc / total

    n = len(images)
    out = np.zeros((n, n))
    for x in range(n):
        for y in range(n):
            if x != y:
                out[x, y] = 0.5 * (directed(images[x], images[y]) + directed(images[y], images[x]))
    return out


def brute_k_medoids(dist: np.ndarray, k: int, seed: int, iterations: int = 100) -> list[int]:
    n = len(dist)
    rng = np.random.default_rng(seed)
    medoids = [int(rng.integers(n))]
    while len(medoids) < k:
        gap = [min(dist[p, c] for c in medoids) if p not in medoids else -1.0 for p in range(n)]
        medoids.append(int(np.argmax(gap)))
    for _ in range(iterations):
        clusters = {c: [] for c in range(k)}
        for p in range(n):
            own = [c for c in range(k) if medoids[c] == p]
            c = own[0] if own else min(range(k), key=lambda c: (dist[p, medoids[c]], c))
            clusters[c].append(p)
        new = [min(clusters[c], key=lambda p: (sum(dist[p, q] for q in clusters[c]), clusters[c].index(p)))
               for c in range(k)]
        if new == medoids:
            break
        medoids = new
    return medoids


@pytest.mark.parametrize(("threshold", "max_boxes"), [(0.0, 32), (0.3, 32), (0.05, 2)])
def test_ccms_matches_the_definition(threshold, max_boxes):
    boxes = random_boxes(9, seed=1, empty=(4,))
    images = np.array([8, 0, 4, 3, 5, 1, 7])
    fast = ccms_distances(boxes, images, box_threshold=threshold, max_boxes=max_boxes)
    np.testing.assert_allclose(fast, brute_ccms(boxes, images, threshold, max_boxes), atol=1e-5)
    assert np.allclose(fast, fast.T) and (np.diag(fast) == 0).all() and (fast >= 0).all() and (fast <= 2).all()


def test_ccms_conditions_on_the_class():
    """Identical looking boxes of different classes are as far apart as boxes can be; empty images
    match nothing (1 from an image with boxes, 0 from another empty one)."""
    f = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], np.float32)
    boxes = PoolBoxes(np.array([0, 1, 2, 3, 3, 3]), np.array([0, 0, 1]), np.ones(3, np.float32), f)
    dist = ccms_distances(boxes, np.arange(5))
    assert dist[0, 1] == pytest.approx(0.0) and dist[0, 2] == pytest.approx(2.0)
    assert dist[0, 3] == pytest.approx(1.0) and dist[3, 4] == 0.0


def test_ccms_blocks_give_the_same_answer(monkeypatch):
    boxes = random_boxes(12, classes=2, seed=3)
    whole = ccms_distances(boxes, np.arange(12))
    monkeypatch.setattr("alloop.select.ppal._BLOCK_ELEMENTS", 7)
    np.testing.assert_allclose(ccms_distances(boxes, np.arange(12)), whole, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_medoids_matches_brute_force(seed):
    x = np.random.default_rng(seed).normal(size=(30, 3))
    dist = np.linalg.norm(x[:, None] - x[None], axis=2)
    fast, rounds = k_medoids(dist, 5, seed=seed)
    assert fast.tolist() == brute_k_medoids(dist, 5, seed) and rounds >= 1


def test_k_medoids_with_duplicates_keeps_k_distinct_medoids():
    x = np.repeat(np.array([[0.0], [5.0]]), 4, axis=0)  # two points, four copies each
    dist = np.abs(x - x.T)
    medoids, _ = k_medoids(dist, 3, seed=0)
    assert len(set(medoids.tolist())) == 3
    assert {float(x[m, 0]) for m in medoids} == {0.0, 5.0}


def inputs_for(n: int, *, seed: int = 0, labeled=(), scores=None) -> SelectionInputs:
    rng = np.random.default_rng(seed)
    flags = np.zeros(n, bool)
    flags[list(labeled)] = True
    return SelectionInputs(embeddings=None, labeled=flags,
                           scores=rng.uniform(size=n).astype(np.float32) if scores is None else scores,
                           boxes=random_boxes(n, seed=seed))


def test_ppal_picks_medoids_among_the_most_uncertain():
    inputs = inputs_for(40, labeled=(0, 1, 2))
    sel = select("ppal", 5, inputs, seed=0, ratio=2)
    pool = np.arange(3, 40)
    top = pool[np.argsort(-inputs.scores[pool], kind="stable")[:10]]
    assert set(sel.indices.tolist()) <= set(top.tolist()) and len(set(sel.indices.tolist())) == 5
    assert (np.diff(sel.scores) <= 0).all()  # most uncertain first (a box budget keeps the prefix)
    assert sel.options["candidates"] == 10 and sel.method == "ppal"
    dist = ccms_distances(inputs.boxes, top)
    medoids, _ = k_medoids(dist, 5, seed=0)
    assert sorted(sel.indices.tolist()) == sorted(top[medoids].tolist())


def test_ppal_is_deterministic_per_seed():
    inputs = inputs_for(60, seed=4)
    a = select("ppal", 6, inputs, seed=7)
    assert np.array_equal(a.indices, select("ppal", 6, inputs, seed=7).indices)
    others = {tuple(select("ppal", 6, inputs, seed=s).indices) for s in range(6)}
    assert len(others) > 1  # the seed picks k-medoids' first point


def test_ppal_edge_cases():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SelectionWarning, match="only 2 unlabeled"):
            select("ppal", 5, inputs_for(4, labeled=(0, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SelectionWarning)
        assert sorted(select("ppal", 5, inputs_for(4, labeled=(0, 1))).indices.tolist()) == [2, 3]
    # all-equal scores: the candidates are the first rows, still k distinct picks
    flat = inputs_for(20, scores=np.full(20, 0.5, np.float32))
    sel = select("ppal", 4, flat, ratio=1.5)
    assert len(set(sel.indices.tolist())) == 4 and set(sel.indices.tolist()) <= set(range(6))
    # ratio 1: the k most uncertain, no diversity left to choose
    inputs = inputs_for(20)
    assert sorted(select("ppal", 4, inputs, ratio=1).indices.tolist()) == sorted(np.argsort(-inputs.scores)[:4].tolist())


def test_ppal_refuses_what_it_cannot_use():
    inputs = inputs_for(10)
    no_boxes = SelectionInputs(None, inputs.labeled, inputs.scores)
    with pytest.raises(SelectionError, match="ppal needs predicted boxes with box features"):
        select("ppal", 2, no_boxes)
    with pytest.raises(SelectionError, match="ppal needs uncertainty scores"):
        select("ppal", 2, SelectionInputs(None, inputs.labeled, boxes=inputs.boxes))
    for option, value, message in [("ratio", 0.5, "ratio must be a number >= 1"),
                                   ("box_threshold", 1.0, r"box_threshold must be a score in \[0, 1\)"),
                                   ("max_boxes", 0, "max_boxes must be a whole number >= 1"),
                                   ("iterations", 2.5, "iterations must be a whole number >= 1")]:
        with pytest.raises(SelectionError, match=message):
            select("ppal", 2, inputs, **{option: value})
    bad = PoolBoxes(inputs.boxes.offsets[:-1], inputs.boxes.labels, inputs.boxes.scores, inputs.boxes.features)
    with pytest.raises(SelectionError, match=r"boxes.offsets must be \(11,\)"):
        select("ppal", 2, SelectionInputs(None, inputs.labeled, inputs.scores, boxes=bad))


def _dets(n: int, d: int = 4, seed: int = 0) -> Detections:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 50, size=(n, 2)).astype(np.float32)
    probs = rng.dirichlet(np.ones(3), size=n).astype(np.float32)
    return Detections(np.hstack([xy, xy + 10]), probs[:, 1:].argmax(1).astype(np.int64), probs[:, 1:].max(1),
                      probs, rng.uniform(size=n).astype(np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32),
                      rng.normal(size=(n, d)).astype(np.float32))


def test_box_features_survive_the_predictions_file(tmp_path):
    dets = [_dets(3, seed=0), _dets(0, seed=1), _dets(5, seed=2)]
    save_predictions(tmp_path / "p.npz", [7, 8, 9], dets, num_classes=2, flipped=dets)
    ids, packed, flipped = load_packed(tmp_path / "p.npz")
    assert ids.tolist() == [7, 8, 9]
    assert packed.features.shape == (8, 4) and packed.features.dtype == np.float16
    for got, want in zip(packed, dets):
        np.testing.assert_allclose(got.features, want.features, rtol=1e-3, atol=1e-3)
    assert flipped.features is not None
    part = packed.take(np.array([2, 0]))
    np.testing.assert_array_equal(part.features, np.concatenate([packed.features[3:], packed.features[:3]]))
    both = PackedDetections.concat([packed, part])
    assert both.features.shape == (16, 4)
    # above() keeps each kept box's row; one image without features drops them for the file
    kept = dets[2].above(0.5)
    np.testing.assert_array_equal(kept.features, dets[2].features[dets[2].scores >= 0.5])
    plain = Detections(*[getattr(dets[0], f) for f in ("boxes", "labels", "scores", "probs", "objectness")])
    assert PackedDetections.of([dets[0], plain]).features is None


def test_auto_can_run_ppal_from_its_low_budget_on():
    from alloop.select import inputs_read

    inputs = inputs_for(40, labeled=(0, 1, 2))
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    inputs = SelectionInputs(x / np.linalg.norm(x, axis=1, keepdims=True), inputs.labeled, inputs.scores,
                             boxes=inputs.boxes)
    later = select("auto", 5, inputs, seed=3, low_budget=2, later="ppal")
    assert later.options["regime"] == "uncertainty" and later.options["strategy"] == "ppal"
    assert later.indices.tolist() == select("ppal", 5, inputs, seed=3).indices.tolist()
    # below low_budget it is still MaxHerding: later only changes the later rounds
    early = select("auto", 5, inputs, seed=3, low_budget=10, later="ppal")
    assert early.options["strategy"] == "maxherding"
    assert "boxes" in inputs_read("auto", {"later": "ppal"}) and "boxes" not in inputs_read("auto", {})
    # box features are recorded only for the selections that reach auto's later regime
    assert "boxes" not in inputs_read("auto", {"later": "ppal"}, labeled=99)
    assert "boxes" in inputs_read("auto", {"later": "ppal", "low_budget": 50}, labeled=50)
    with pytest.raises(SelectionError, match='auto with later = "ppal" needs predicted boxes with box features'):
        select("auto", 5, SelectionInputs(inputs.embeddings, inputs.labeled, inputs.scores), low_budget=2, later="ppal")
    with pytest.raises(SelectionError, match="auto option later must be one of coral, ppal, got 'badge'"):
        select("auto", 5, inputs, later="badge")
