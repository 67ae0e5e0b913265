"""The embedder registry: entry points, unknown names, options tables."""

from __future__ import annotations

import pytest

from alloop.embed import available_embedders, build_embedder, load_embedder
from alloop.embed.backbone import BackboneEmbedder
from alloop.embed.base import Embedder
from alloop.embed.detector import DetectorEmbedder
from alloop.embed.ssl import SSLEmbedder
from alloop.errors import ConfigError, EmbedError


def test_builtins_are_registered_through_entry_points():
    found = available_embedders()
    assert found["ssl"] == "alloop.embed.ssl:SSLEmbedder"
    assert found["backbone"] == "alloop.embed.backbone:BackboneEmbedder"
    assert found["detector"] == "alloop.embed.detector:DetectorEmbedder"
    assert load_embedder("ssl") is SSLEmbedder
    assert load_embedder("backbone") is BackboneEmbedder
    assert load_embedder("detector") is DetectorEmbedder


def test_unknown_embedder_lists_installed_ones():
    with pytest.raises(EmbedError) as err:
        load_embedder("clip")
    message = str(err.value)
    assert "unknown embedder 'clip'" in message
    assert "backbone, detector, ssl" in message
    assert "alloop.embedders" in message


def test_build_embedder_makes_a_protocol_instance(tmp_path):
    embedder = build_embedder("backbone", {"arch": "resnet18", "weights": "none", "image_size": 32}, tmp_path, "cpu")
    assert isinstance(embedder, Embedder)
    assert embedder.config.arch == "resnet18" and embedder.config.weights is None
    assert embedder.name == "backbone"


def test_unknown_option_names_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_embedder("ssl", {"epoch": 3}, tmp_path, "cpu")
    assert "epoch" in str(err.value) and "epochs" in str(err.value) and "[embedder.options] (embedder ssl)" in str(err.value)


@pytest.mark.parametrize(
    ("name", "options", "words"),
    [
        ("ssl", {"method": "byol"}, "simclr, simsiam"),
        ("ssl", {"batch_size": 1}, "batch_size must be an integer >= 2"),
        ("backbone", {"image_size": 8}, "image_size must be an integer >= 16"),
        ("backbone", {"pool": "max"}, "pool must be 'avg'"),
        ("detector", {"levels": []}, "levels must name at least one"),
    ],
)
def test_bad_option_values_are_config_errors(tmp_path, name, options, words):
    with pytest.raises(ConfigError) as err:
        build_embedder(name, options, tmp_path, "cpu")
    assert words in str(err.value)
