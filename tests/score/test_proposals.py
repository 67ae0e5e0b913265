"""Scores that see missed objects: candidate regions, not just kept boxes (issue 20)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from alloop.boxes import Detections
from alloop.predictions import load_predictions, save_predictions
from alloop.score import EMPTY_IMAGE_SCORE, score_images
from alloop.score.proposals import TOP_REGIONS, binary_entropy, regions

MISS_AWARE = ("proposal_entropy", "detection_entropy")


def with_regions(det: Detections, objectness, foreground) -> Detections:
    return dataclasses.replace(det, proposal_objectness=np.asarray(objectness, np.float32),
                               proposal_foreground=np.asarray(foreground, np.float32))


@pytest.fixture
def blind_and_confident(make_detections):
    """Image 0: no kept box, but the RPN is sure of objects the box head calls background.
    Image 1: three confident, correct boxes; its regions are those boxes and clear background."""
    blind = with_regions(Detections.empty(1), [0.9, 0.85, 0.8, 0.7], [0.03, 0.02, 0.04, 0.02])
    confident = with_regions(make_detections([[0.02, 0.98]] * 3), [0.97, 0.96, 0.95, 0.05], [0.98, 0.98, 0.97, 0.01])
    return [blind, confident]


@pytest.mark.parametrize("spec", MISS_AWARE)
def test_an_image_the_detector_is_blind_on_scores_above_a_confident_one(blind_and_confident, spec):
    v = score_images(blind_and_confident, [spec])[spec]
    assert v[0] > v[1]


def test_the_old_convention_keeps_its_name_and_value(blind_and_confident):
    # entropy:mean reads only kept boxes: an image with none is "certain" (Lightly's convention).
    v = score_images(blind_and_confident, ["entropy:mean"])["entropy:mean"]
    assert v[0] == EMPTY_IMAGE_SCORE == 0.0
    assert v[1] == pytest.approx(float(binary_entropy(np.float64(0.98))), abs=1e-6)


def test_proposal_entropy_is_the_vote_entropy_of_rpn_and_box_head():
    det = with_regions(Detections.empty(1), [0.8, 0.1], [0.2, 0.1])
    v = score_images([det], ["proposal_entropy"])["proposal_entropy"][0]
    assert v == pytest.approx((binary_entropy(0.5) + binary_entropy(0.1)) / 2, abs=1e-6)


def test_detection_entropy_averages_kept_box_entropy_and_proposal_entropy(make_detections):
    det = with_regions(make_detections([[0.5, 0.5], [0.9, 0.1]]), [0.8, 0.1], [0.2, 0.1])
    v = score_images([det], ["detection_entropy", "entropy:mean", "proposal_entropy"])
    assert v["detection_entropy"][0] == pytest.approx(0.5 * (v["entropy:mean"][0] + v["proposal_entropy"][0]), abs=1e-6)


def test_only_the_top_regions_by_objectness_count():
    o = np.concatenate([np.full(TOP_REGIONS, 0.9), np.full(40, 0.01)])
    f = np.concatenate([np.full(TOP_REGIONS, 0.0), np.full(40, 0.0)])
    det = with_regions(Detections.empty(1), o[::-1], f)  # any order in, highest objectness read
    got_o, got_f = regions(det)
    assert len(got_o) == TOP_REGIONS and np.all(got_o == np.float32(0.9))


def test_an_image_with_no_regions_at_all_scores_zero():
    det = with_regions(Detections.empty(1), [], [])
    for spec, v in score_images([det], list(MISS_AWARE)).items():
        assert v[0] == 0.0, spec


def test_without_recorded_regions_the_kept_boxes_are_read(make_detections):
    # TAO or an old prediction file: regions come from the kept boxes (objectness, 1 - p_bg).
    low = make_detections([[0.9, 0.1], [0.85, 0.15]], objectness=[0.9, 0.8])
    sure = make_detections([[0.01, 0.99]], objectness=[0.99])
    v = score_images([low, sure, Detections.empty(1)], ["proposal_entropy"])
    assert v["proposal_entropy"][0] > v["proposal_entropy"][1]
    assert v["proposal_entropy"][2] == 0.0


def test_non_finite_region_values_count_as_no_evidence():
    det = with_regions(Detections.empty(1), [np.nan, np.inf, 0.5], [0.5, np.nan, 0.5])
    v = score_images([det], list(MISS_AWARE))
    assert all(np.isfinite(x[0]) and 0.0 <= x[0] <= 1.0 for x in v.values())


def test_regions_must_come_in_pairs():
    with pytest.raises(ValueError, match="both or neither"):
        dataclasses.replace(Detections.empty(1), proposal_objectness=np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"\(P,\) alike"):
        with_regions(Detections.empty(1), [0.1, 0.2], [0.1])


def test_regions_survive_the_prediction_file_and_above(tmp_path, blind_and_confident):
    path = tmp_path / "p.npz"
    save_predictions(path, [7, 9], blind_and_confident, num_classes=1)
    ids, dets, _ = load_predictions(path)
    assert ids.tolist() == [7, 9]
    for a, b in zip(blind_and_confident, dets):
        np.testing.assert_array_equal(a.proposal_objectness, b.proposal_objectness)
        np.testing.assert_array_equal(a.proposal_foreground, b.proposal_foreground)
        np.testing.assert_array_equal(a.above(0.5).proposal_objectness, a.proposal_objectness)


def test_a_prediction_file_without_regions_loads_with_none(tmp_path, make_detections):
    path = tmp_path / "old.npz"
    save_predictions(path, [1], [make_detections([[0.3, 0.7]])], num_classes=1)
    with np.load(path) as npz:
        assert not any(name.startswith("proposal_") for name in npz.files)
    _, dets, _ = load_predictions(path)
    assert dets[0].proposal_objectness is None and not dets[0].has_proposals
