"""The pool-at-once scorers equal the per-image formulas, bit for bit, on random pools (empty images too)."""

from __future__ import annotations

import numpy as np
import pytest

from alloop.boxes import Detections
from alloop.predictions import PackedDetections, load_packed, load_predictions, save_predictions
from alloop.score import score_images
from alloop.score.aggregate import clean_unit, reduce_boxes
from alloop.score.boxes import entropy, least_confidence, margin, objectness_least_confidence
from alloop.score.difficulty import MIN_BOX_SCORE, class_weights
from alloop.score.difficulty import binary_entropy as h2_bits
from alloop.score.frequency import object_count
from alloop.score.proposals import binary_entropy, regions
from alloop.score.segments import reduce_images

BOX = {"least_confidence": least_confidence, "margin": margin, "entropy": entropy,
       "objectness_least_confidence": objectness_least_confidence}


def _image(rng: np.random.Generator, k: int, n: int, proposals: bool | None) -> Detections:
    probs = rng.dirichlet(np.ones(k), n).astype(np.float32)
    if n and rng.random() < 0.3:  # now and then a broken value
        probs[rng.integers(n), rng.integers(k)] = rng.choice([np.nan, np.inf, -0.5])
    xy = rng.uniform(0, 50, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 20, (n, 2))], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    if n and rng.random() < 0.2:
        scores[rng.integers(n)] = np.nan
    po = pf = None
    if proposals:
        p = int(rng.integers(0, 30))
        po, pf = rng.uniform(0, 1, p).astype(np.float32), rng.uniform(-0.1, 1.1, p).astype(np.float32)
    return Detections(boxes, rng.integers(0, k - 1, n).astype(np.int64), scores, probs,
                      rng.uniform(0, 1, n).astype(np.float32), po, pf)


def _pool(seed: int, proposals: str) -> list[Detections]:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    has = {"all": lambda: True, "none": lambda: None, "mixed": lambda: bool(rng.random() < 0.5)}[proposals]
    # 0 to 40 boxes: empty images, and counts past numpy's 8-way unrolled sums
    return [_image(rng, k, int(rng.choice([0, 0, 1, 3, 9, 17, 40, *rng.integers(0, 40, 3)])), has())
            for _ in range(int(rng.integers(1, 120)))]


def _reference(pool: list[Detections], spec: str, quality: np.ndarray) -> np.ndarray:
    """The per-image formulas, one image at a time (the scorers before they were vectorised)."""
    name, _, how = spec.partition(":")
    if name in BOX:
        per = [clean_unit(BOX[name](d), what="") for d in pool]
        out = np.array([reduce_boxes(v, how) for v in per], np.float64)
        if how == "sum" and out.max() > 0:
            out = out / out.max()
        return clean_unit(out, what="")

    def top_mean(fn):
        regs = [regions(d) for d in pool]
        return np.array([float(np.mean(fn(o, f))) if len(o) else 0.0 for o, f in regs])

    proposal = top_mean(lambda o, f: binary_entropy(0.5 * (o + f)))
    if name == "proposal_entropy":
        return clean_unit(proposal, what="")
    if name == "detection_entropy":
        kept = np.array([float(entropy(d).mean()) if len(d) else 0.0 for d in pool])
        return clean_unit(0.5 * (kept + proposal), what="")
    if name == "object_frequency":
        counts = np.array([object_count(d, confidence_threshold=0.5) for d in pool])
        if counts.max() == counts.min():
            return np.ones(len(pool), np.float32)
        return clean_unit(0.9 + 0.1 * (counts - counts.min()) / (counts.max() - counts.min()), what="")
    assert name == "dcus"
    weights = class_weights(quality)
    sums = []
    for d in pool:
        s = np.nan_to_num(np.asarray(d.scores, np.float64), nan=0.0)
        keep = s >= MIN_BOX_SCORE
        sums.append(float((h2_bits(s[keep]) * weights[d.labels[keep]]).sum()) if keep.any() else 0.0)
    sums = np.array(sums)
    return clean_unit(sums / sums.max() if sums.max() > 0 else sums, what="")


SPECS = [f"{b}:{how}" for b in BOX for how in ("max", "mean", "sum", "topk3")] + [
    "proposal_entropy", "detection_entropy", "object_frequency", "dcus"]


@pytest.mark.parametrize("proposals", ["all", "none", "mixed"])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_vectorised_scores_equal_the_per_image_formulas(seed, proposals):
    pool = _pool(seed, proposals)
    quality = np.random.default_rng(seed).uniform(0, 1, pool[0].probs.shape[1] - 1)
    out = score_images(pool, SPECS, class_quality=quality)
    for spec in SPECS:
        np.testing.assert_array_equal(out[spec], _reference(pool, spec, quality), err_msg=spec)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_scores_from_the_packed_file_equal_scores_from_per_image_objects(tmp_path):
    pool = _pool(3, "all")
    path = tmp_path / "p.npz"
    save_predictions(path, list(range(len(pool))), pool, num_classes=pool[0].probs.shape[1] - 1)
    _, packed, flipped = load_packed(path)
    _, listed, _ = load_predictions(path)
    assert isinstance(packed, PackedDetections) and flipped is None and len(packed) == len(pool)
    a, b = score_images(packed, SPECS), score_images(listed, SPECS)
    for spec in SPECS:
        np.testing.assert_array_equal(a[spec], b[spec], err_msg=spec)
    for i in (0, len(pool) - 1, -1):  # the packed form is still a sequence of per-image detections
        np.testing.assert_array_equal(packed[i].probs, pool[i].probs)


def test_reduce_images_gives_empty_images_the_empty_value():
    values = np.array([3.0, 1.0, 2.0, 5.0])
    offsets = np.array([0, 0, 3, 3, 4, 4])  # images 0, 2 and 4 have no boxes
    np.testing.assert_array_equal(reduce_images(values, offsets, lambda m: m.max(axis=1), empty=-1.0),
                                  [-1.0, 3.0, -1.0, 5.0, -1.0])
    np.testing.assert_array_equal(reduce_images(np.zeros(0), np.array([0, 0]), lambda m: m.sum(axis=1)), [0.0])


def test_load_predictions_of_some_images_only(tmp_path):
    pool = _pool(5, "mixed")
    path = tmp_path / "p.npz"
    ids = [10 * i for i in range(len(pool))]
    save_predictions(path, ids, pool, num_classes=pool[0].probs.shape[1] - 1, flipped=pool)
    all_ids, every, _ = load_predictions(path)
    want = {ids[-1], ids[0], 99999}  # an id the file lacks is left out
    got_ids, some, flipped = load_predictions(path, want)
    assert got_ids.tolist() == [ids[0], ids[-1]] and len(some) == len(flipped) == 2
    for got, ref in zip(some, [every[0], every[-1]]):
        for name in ("boxes", "labels", "scores", "probs", "objectness"):
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))


def test_predictions_by_id_pool_statistics_equal_the_per_image_ones(tmp_path):
    from alloop.predictions import load_by_id

    pool = _pool(7, "none")
    path = tmp_path / "p.npz"
    ids = [3 * i + 1 for i in range(len(pool))][::-1]  # ids not in order
    save_predictions(path, ids, pool, num_classes=pool[0].probs.shape[1] - 1)
    by_id = load_by_id(path)
    assert len(by_id) == len(pool) and list(by_id) == ids and 2 not in by_id and "x" not in by_id
    np.testing.assert_array_equal(by_id[ids[4]].probs, pool[4].probs)
    k = pool[0].probs.shape[1] - 1
    expected = sum(np.bincount(d.labels[d.scores >= 0.5], minlength=k)[:k] for d in pool)
    np.testing.assert_array_equal(by_id.class_counts(0.5, k), expected)
    empty = {i for i, d in zip(ids, pool) if len(d.above(0.3)) == 0}
    assert set(by_id.ids_without(0.3).tolist()) == empty and empty
