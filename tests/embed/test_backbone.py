"""The ``backbone`` embedder: torchvision classification features from a name or a local file."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
import torchvision

from alloop.embed import build_embedder
from alloop.embed.classifiers import ClassifierFeatures, hub_cache_file
from alloop.errors import EmbedError

TINY = {"arch": "mobilenet_v3_small", "weights": "none", "image_size": 32}


def test_random_weights_embed_but_warn(pool, tmp_path, caplog, check_embeddings):
    embedder = build_embedder("backbone", TINY, tmp_path / "work", "cpu")
    with caplog.at_level(logging.WARNING):
        embedder.prepare(pool)
        x = embedder.embed(pool, batch_size=5, progress=False)
    check_embeddings(x, len(pool))
    assert x.shape[1] == 576  # mobilenet_v3_small's last feature map
    assert "random" in caplog.text and "poor" in caplog.text


def test_same_config_gives_the_same_vectors_and_key(pool, tmp_path):
    # Random weights are drawn from a fixed seed, so the cache key stays true across runs.
    torch.manual_seed(0)
    a = build_embedder("backbone", TINY, tmp_path, "cpu")
    xa = a.embed(pool, progress=False)
    torch.manual_seed(1)
    b = build_embedder("backbone", TINY, tmp_path, "cpu")
    xb = b.embed(pool, batch_size=3, progress=False)
    np.testing.assert_allclose(xa, xb, atol=1e-5)
    assert a.key() == b.key()
    assert a.key() != build_embedder("backbone", {**TINY, "image_size": 48}, tmp_path, "cpu").key()


def test_local_imagenet_file_matches_loading_it_by_hand(pool, tmp_path, mobilenet_v2_file, check_embeddings):
    options = {"arch": "mobilenet_v2", "weights": str(mobilenet_v2_file), "image_size": 64}
    embedder = build_embedder("backbone", options, tmp_path, "cpu")
    embedder.prepare(pool)
    x = embedder.embed(pool[:5], batch_size=2, progress=False)
    check_embeddings(x, 5)
    assert x.shape[1] == 1280

    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(mobilenet_v2_file, map_location="cpu", weights_only=True))
    model.eval()
    from alloop.embed.stream import ImageStream

    batch = torch.stack([ImageStream(pool[:5], 64)[i][0] for i in range(5)]).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = model.features((batch - mean) / std).mean(dim=(2, 3))
    expected = (feats / feats.norm(dim=1, keepdim=True)).numpy()
    np.testing.assert_allclose(x, expected, atol=1e-4)
    assert embedder.key().startswith("backbone-")


def test_missing_weights_file_is_named(pool, tmp_path):
    missing = tmp_path / "nowhere" / "resnet18.pth"
    embedder = build_embedder("backbone", {"arch": "resnet18", "weights": str(missing)}, tmp_path, "cpu")
    with pytest.raises(EmbedError) as err:
        embedder.prepare(pool)
    assert str(missing) in str(err.value) and "does not exist" in str(err.value)


def test_weights_file_for_another_arch_is_refused(pool, tmp_path, mobilenet_v2_file):
    embedder = build_embedder("backbone", {"arch": "resnet18", "weights": str(mobilenet_v2_file)}, tmp_path, "cpu")
    with pytest.raises(EmbedError) as err:
        embedder.embed(pool[:1], progress=False)
    assert str(mobilenet_v2_file) in str(err.value) and "resnet18" in str(err.value)


def test_weights_name_not_in_hub_cache_names_the_file_and_never_downloads(pool, tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    # resnet18: mobilenet_v2's file may come from the offline weights package instead (alloop.weights)
    embedder = build_embedder("backbone", {"arch": "resnet18", "weights": "IMAGENET1K_V1"}, tmp_path, "cpu")
    with pytest.raises(EmbedError) as err:
        embedder.prepare(pool)
    message = str(err.value)
    assert str(hub / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "never downloads" in message and "local .pth" in message


def test_mobilenet_v2_by_name_reads_the_offline_package_copy(pool, tmp_path, monkeypatch, mobilenet_v2_file):
    """An empty hub cache: IMAGENET1K_V1 of mobilenet_v2 is the offline package's file, never a download."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty_hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    options = {"arch": "mobilenet_v2", "image_size": 48}
    by_name = build_embedder("backbone", {**options, "weights": "IMAGENET1K_V1"}, tmp_path / "a", "cpu")
    by_file = build_embedder("backbone", {**options, "weights": str(mobilenet_v2_file)}, tmp_path / "b", "cpu")
    np.testing.assert_allclose(
        by_name.embed(pool[:2], progress=False), by_file.embed(pool[:2], progress=False), atol=1e-6
    )


def test_weights_name_is_read_from_the_hub_cache(pool, tmp_path, monkeypatch, mobilenet_v2_file):
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    cached = hub_cache_file(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1)
    cached.parent.mkdir(parents=True)
    os.symlink(mobilenet_v2_file, cached)
    by_name = build_embedder(
        "backbone", {"arch": "mobilenet_v2", "weights": "MobileNet_V2_Weights.IMAGENET1K_V1", "image_size": 48},
        tmp_path, "cpu",
    )
    by_file = build_embedder(
        "backbone", {"arch": "mobilenet_v2", "weights": str(mobilenet_v2_file), "image_size": 48}, tmp_path, "cpu"
    )
    np.testing.assert_allclose(
        by_name.embed(pool[:4], progress=False), by_file.embed(pool[:4], progress=False), atol=1e-6
    )


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"arch": "resnet7"}, "unknown torchvision classification arch 'resnet7'"),
        ({"arch": "mobilenet_v2", "weights": "IMAGENET9K"}, "'IMAGENET9K' is neither a weights name (IMAGENET1K_V1"),
        ({"arch": "mobilenet_v2", "weights": "ResNet18_Weights.DEFAULT"}, "not for arch 'mobilenet_v2'"),
    ],
)
def test_bad_arch_or_weights_name(pool, tmp_path, options, words):
    with pytest.raises(EmbedError) as err:
        build_embedder("backbone", options, tmp_path, "cpu").prepare(pool)
    assert words in str(err.value)


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_b0", "squeezenet1_1", "convnext_tiny"])
def test_families_give_globally_pooled_vectors(arch):
    net = ClassifierFeatures(torchvision.models.get_model(arch)).eval()
    expected = {"resnet18": 512, "efficientnet_b0": 1280, "squeezenet1_1": 512, "convnext_tiny": 768}
    assert net.feature_dim(64) == expected[arch]


def _no_download(*args, **kwargs):
    raise AssertionError("a test tried to download weights")
