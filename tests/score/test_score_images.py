"""score_images: specs, errors, registration of a new scorer, and the [0, 1] invariant."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alloop.boxes import Detections
from alloop.errors import ConfigError
from alloop.score import (
    DEFAULT_SCORE,
    available_scores,
    box_score,
    image_score,
    needs_flipped,
    parse_score_spec,
    score_images,
)
from alloop.score import registry
from alloop.score.registry import box_scorers, image_scorers

BOX_SCORES = ["least_confidence", "margin", "entropy", "objectness_least_confidence"]


def test_parse_specs_and_default():
    assert DEFAULT_SCORE == "detection_entropy" and parse_score_spec(DEFAULT_SCORE) == ("detection_entropy", "")
    assert parse_score_spec("entropy:mean") == ("entropy", "mean")  # the pre-issue-20 default, still there
    assert parse_score_spec("margin:topk3") == ("margin", "topk3")
    assert parse_score_spec("object_frequency") == ("object_frequency", "")
    assert parse_score_spec("tta_consistency") == ("tta_consistency", "")


def test_available_scores_lists_every_family():
    listed = available_scores()
    for name in BOX_SCORES:
        assert {f"{name}:max", f"{name}:mean", f"{name}:sum", f"{name}:topkN"} <= set(listed)
    assert "object_frequency" in listed and "tta_consistency" in listed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("entropi:max", r"unknown score 'entropi:max'.*entropy.*object_frequency, tta_consistency"),
        ("entropy", r"needs an aggregation, e\.g\. entropy:max"),
        ("entropy:median", r"'entropy:median'.*max, mean, sum or topkN"),
        ("margin:topk0", r"max, mean, sum or topkN"),
        ("object_frequency:max", r"image score and takes no aggregation"),
        ("", r"unknown score ''.*least_confidence, margin, entropy, objectness_least_confidence"),
    ],
)
def test_bad_spec_is_a_config_error_naming_the_known_ones(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_score_spec(spec)
    with pytest.raises(ConfigError, match=message):
        score_images([], [spec])


def test_needs_flipped_only_for_tta():
    assert not needs_flipped(["entropy:max", "object_frequency"])
    assert needs_flipped(["entropy:max", "tta_consistency"])
    assert not needs_flipped([])


def test_tta_without_flipped_predictions_says_how_to_get_them(make_detections):
    with pytest.raises(ConfigError, match=r"tta_consistency.*hflip=True"):
        score_images([make_detections([[0.5, 0.5]])], ["entropy:max", "tta_consistency"])


def test_bad_confidence_threshold_is_a_config_error():
    with pytest.raises(ConfigError, match="confidence threshold"):
        score_images([], ["object_frequency"], confidence_threshold=1.5)


def test_every_score_on_a_small_pool(make_detections):
    pool = [
        make_detections([[0.2, 0.5, 0.3], [0.05, 0.9, 0.05]], boxes=[[0, 0, 10, 10], [20, 0, 30, 10]]),
        Detections.empty(2),
        make_detections([[0.9, 0.05, 0.05]]),
    ]
    specs = available_scores()
    specs = [s.replace("topkN", "topk2") for s in specs]
    out = score_images(pool, specs, flipped=pool)
    assert set(out) == set(specs)
    for spec, values in out.items():
        assert values.shape == (3,) and values.dtype == np.float32, spec
        assert np.all((values >= 0) & (values <= 1)), spec
        if ":" in spec:
            assert values[1] == 0.0, spec  # no detections: the documented empty score
    np.testing.assert_allclose(out["margin:max"], [0.8, 0.0, 1 - 0.85], rtol=1e-6)
    np.testing.assert_allclose(out["least_confidence:topk2"], [(0.75 + 0.15) / 2, 0.0, 0.15], rtol=1e-5)
    np.testing.assert_array_equal(out["tta_consistency"], [0.0, 0.0, 0.0])


def test_a_new_scorer_is_one_registered_function(monkeypatch, make_detections):
    monkeypatch.setattr(registry, "_BOX_SCORES", dict(registry._BOX_SCORES))
    monkeypatch.setattr(registry, "_IMAGE_SCORES", dict(registry._IMAGE_SCORES))

    @box_score("small_box")
    def small_box(det: Detections) -> np.ndarray:
        """1 − area / 100: small boxes are hard."""
        return 1.0 - (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1]) / 100

    @image_score("box_count")
    def box_count(inputs) -> np.ndarray:
        return np.array([min(len(d), 10) / 10 for d in inputs.detections])

    det = make_detections([[0.5, 0.5], [0.5, 0.5]], boxes=[[0, 0, 10, 10], [0, 0, 5, 2]])
    out = score_images([det], ["small_box:max", "small_box:mean", "box_count"])
    np.testing.assert_allclose(out["small_box:max"], [0.9])
    np.testing.assert_allclose(out["small_box:mean"], [0.45])
    np.testing.assert_allclose(out["box_count"], [0.2])
    assert "small_box:topkN" in available_scores() and "box_count" in available_scores()
    with pytest.raises(ValueError, match="already registered"):
        box_score("entropy")(small_box)
    with pytest.raises(ValueError, match="lower-case"):
        box_score("Bad:Name")(small_box)


def test_non_finite_output_of_a_scorer_is_cleaned(monkeypatch, make_detections):
    monkeypatch.setattr(registry, "_BOX_SCORES", dict(registry._BOX_SCORES))
    box_score("broken")(lambda det: np.full(len(det), np.nan))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        out = score_images([make_detections([[0.5, 0.5]])], ["broken:max"])
    np.testing.assert_array_equal(out["broken:max"], [1.0])


# --- property: every registered score stays in [0, 1] on random distributions --------------------

_unit = st.floats(0.0, 1.0, allow_nan=False, width=32)
# Detector output is not trusted: now and then a NaN, an infinity or a negative value.
_dirty = _unit | st.sampled_from([float("nan"), float("inf"), -0.5])


@st.composite
def detections(draw, k: int) -> Detections:
    n = draw(st.integers(0, 5))
    rows = st.lists(st.lists(_dirty, min_size=k, max_size=k), min_size=n, max_size=n)
    probs = np.array(draw(rows), np.float32)
    xy = np.array(draw(st.lists(st.tuples(*[st.floats(0, 50, width=32)] * 4), min_size=n, max_size=n)))
    boxes = np.concatenate([xy[:, :2], xy[:, :2] + xy[:, 2:]], axis=1) if n else np.zeros((0, 4))
    scores = np.array(draw(st.lists(_dirty, min_size=n, max_size=n)), np.float32)
    objectness = np.array(draw(st.lists(_dirty, min_size=n, max_size=n)), np.float32)
    labels = np.zeros(n, np.int64)
    return Detections(boxes.astype(np.float32).reshape(n, 4), labels, scores, probs.reshape(n, k), objectness)


@st.composite
def pools(draw):
    k = draw(st.integers(2, 5))
    size = draw(st.integers(1, 4))
    original = [draw(detections(k)) for _ in range(size)]
    flipped = [draw(detections(k)) for _ in range(size)]
    return original, flipped


@settings(max_examples=60, deadline=None)
@given(pools(), st.sampled_from(["max", "mean", "sum", "topk2"]))
def test_every_registered_score_stays_in_unit_interval(pool, how):
    original, flipped = pool
    for name, fn in box_scorers().items():
        for det in original:
            values = fn(det)
            assert values.shape == (len(det),)
            assert np.all(np.isfinite(values) & (values >= 0) & (values <= 1)), name
    specs = [f"{name}:{how}" for name in box_scorers()] + list(image_scorers())
    out = score_images(original, specs, flipped=flipped)
    for spec, values in out.items():
        assert values.dtype == np.float32 and values.shape == (len(original),)
        assert np.all(np.isfinite(values) & (values >= 0) & (values <= 1)), spec
