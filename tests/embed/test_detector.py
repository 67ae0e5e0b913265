"""The ``detector`` embedder: pooled FPN features of an alloop torchvision checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from alloop.embed import build_embedder
from alloop.errors import EmbedError
from alloop.trainers.detection_model import build_detector
from alloop.trainers.torchvision import CHECKPOINT_FORMAT, TorchvisionConfig


def save_checkpoint(path: Path, seed: int = 0) -> Path:
    """A random-weight mobile Faster R-CNN saved in the torchvision trainer's checkpoint format."""
    config = TorchvisionConfig(model="fasterrcnn_mobilenet_v3_large_320_fpn", min_size=96, max_size=128)
    torch.manual_seed(seed)
    model = build_detector(
        config.model, 2, weights=None, backbone_weights=None, trainable_backbone_layers=None, load_weights=False
    )
    torch.save(
        {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "config": dataclasses.asdict(config),
         "classes": ["apple"], "epoch": 1, "metric": None},
        path,
    )
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("detector") / "best.pt")


def test_all_levels_pooled_and_concatenated(pool, tmp_path, checkpoint, check_embeddings):
    embedder = build_embedder("detector", {"checkpoint": str(checkpoint)}, tmp_path, "cpu")
    embedder.prepare(pool)
    x = embedder.embed(pool, batch_size=5, progress=False)
    check_embeddings(x, len(pool))
    assert x.shape[1] == 3 * 256  # levels "0", "1", "pool" of the mobile FPN
    # Each level was normalised before the concatenation, so each holds a third of the norm.
    np.testing.assert_allclose(np.linalg.norm(x[:, :256], axis=1) ** 2, 1 / 3, atol=1e-5)
    assert embedder._image_size == 96  # the detector's own min_size


def test_same_checkpoint_same_vectors_and_key(pool, tmp_path, checkpoint):
    options = {"checkpoint": str(checkpoint), "image_size": 64}
    a = build_embedder("detector", options, tmp_path, "cpu")
    b = build_embedder("detector", options, tmp_path, "cpu")
    np.testing.assert_allclose(a.embed(pool, progress=False), b.embed(pool, batch_size=2, progress=False), atol=1e-5)
    assert a.key() == b.key()
    other = save_checkpoint(tmp_path / "other.pt", seed=1)
    assert build_embedder("detector", {**options, "checkpoint": str(other)}, tmp_path, "cpu").key() != a.key()


def test_chosen_levels(pool, tmp_path, checkpoint):
    embedder = build_embedder("detector", {"checkpoint": str(checkpoint), "levels": ["pool"], "image_size": 64},
                              tmp_path, "cpu")
    assert embedder.embed(pool[:3], progress=False).shape == (3, 256)


def test_unknown_level_lists_the_real_ones(pool, tmp_path, checkpoint):
    embedder = build_embedder("detector", {"checkpoint": str(checkpoint), "levels": ["p7"], "image_size": 64},
                              tmp_path, "cpu")
    with pytest.raises(EmbedError) as err:
        embedder.embed(pool[:2], progress=False)
    assert "p7" in str(err.value) and "0, 1, pool" in str(err.value)


def test_missing_or_unset_checkpoint(pool, tmp_path):
    missing = tmp_path / "runs" / "best.pt"
    with pytest.raises(EmbedError) as err:
        build_embedder("detector", {"checkpoint": str(missing)}, tmp_path, "cpu").prepare(pool)
    assert str(missing) in str(err.value)
    with pytest.raises(EmbedError, match="no checkpoint set"):
        build_embedder("detector", {}, tmp_path, "cpu").prepare(pool)


def test_not_a_detector_checkpoint(pool, tmp_path):
    bogus = tmp_path / "bogus.pt"
    torch.save({"state_dict": {}}, bogus)
    with pytest.raises(EmbedError) as err:
        build_embedder("detector", {"checkpoint": str(bogus)}, tmp_path, "cpu").prepare(pool)
    assert str(bogus) in str(err.value) and "alloop-torchvision-1" in str(err.value)
