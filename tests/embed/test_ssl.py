"""The ``ssl`` embedder: SimCLR / SimSiam trained on the pool with lightly, backbone saved for the trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from alloop.embed import build_embedder
from alloop.embed.ssl import CHECKPOINT_FORMAT
from alloop.errors import EmbedError

TINY = {"arch": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 4}


def test_prepare_saves_the_backbone_in_the_documented_format(pool, tmp_path, check_embeddings):
    embedder = build_embedder("ssl", TINY, tmp_path / "work", "cpu")
    embedder.prepare(pool, seed=3, progress=False)
    ckpt = torch.load(tmp_path / "work" / "ssl_backbone.pth", map_location="cpu", weights_only=True)
    assert ckpt["format"] == CHECKPOINT_FORMAT
    assert ckpt["arch"] == "resnet18" and ckpt["method"] == "simclr"
    assert ckpt["image_size"] == 32 and ckpt["epochs"] == 1 and ckpt["n_images"] == len(pool)
    assert ckpt["seed"] == 3 and len(ckpt["history"]) == 1 and np.isfinite(ckpt["history"][0])
    # The full classification model's keys, so the trainer (and anyone) can load it strictly.
    model = torchvision.models.get_model("resnet18")
    model.load_state_dict(ckpt["state_dict"], strict=True)
    # Training changed the body: it is not the random init any more.
    fresh = torchvision.models.get_model("resnet18").state_dict()
    assert not torch.equal(ckpt["state_dict"]["layer1.0.conv1.weight"], fresh["layer1.0.conv1.weight"])

    x = embedder.embed(pool, batch_size=5, progress=False)
    check_embeddings(x, len(pool))
    assert x.shape[1] == 512
    assert embedder.key().startswith("ssl-")


def test_second_prepare_is_a_no_op_and_a_new_config_retrains(pool, tmp_path):
    work = tmp_path / "work"
    first = build_embedder("ssl", TINY, work, "cpu")
    first.prepare(pool, progress=False)
    path = work / "ssl_backbone.pth"
    stamp = path.stat().st_mtime_ns

    again = build_embedder("ssl", TINY, work, "cpu")
    again.prepare(pool, progress=False)
    assert path.stat().st_mtime_ns == stamp
    assert again.key() == first.key()

    changed = build_embedder("ssl", {**TINY, "method": "simsiam"}, work, "cpu")
    changed.prepare(pool, progress=False)
    assert path.stat().st_mtime_ns != stamp
    assert torch.load(path, weights_only=True)["method"] == "simsiam"
    assert changed.key() != first.key()


def test_same_seed_same_vectors_other_seed_other_vectors(pool, tmp_path):
    def run(work, seed):
        embedder = build_embedder("ssl", TINY, tmp_path / work, "cpu")
        embedder.prepare(pool, seed=seed, progress=False)
        return embedder.embed(pool, progress=False), embedder.key()

    a, key_a = run("a", 0)
    b, key_b = run("b", 0)
    c, key_c = run("c", 1)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert key_a == key_b != key_c
    assert not np.allclose(a, c, atol=1e-3)


def test_simsiam_trains_and_embeds(pool, tmp_path, check_embeddings):
    embedder = build_embedder("ssl", {**TINY, "method": "simsiam"}, tmp_path, "cpu")
    embedder.prepare(pool, progress=False)
    check_embeddings(embedder.embed(pool, progress=False), len(pool))


def test_backbone_embedder_reads_the_ssl_file(pool, tmp_path):
    ssl = build_embedder("ssl", TINY, tmp_path / "ssl", "cpu")
    ssl.prepare(pool, progress=False)
    backbone = build_embedder(
        "backbone", {"arch": "resnet18", "weights": str(ssl.checkpoint), "image_size": 32}, tmp_path, "cpu"
    )
    np.testing.assert_allclose(backbone.embed(pool, progress=False), ssl.embed(pool, progress=False), atol=1e-5)


def test_init_from_local_imagenet_file(pool, tmp_path, mobilenet_v2_file):
    options = {**TINY, "arch": "mobilenet_v2", "init_weights": str(mobilenet_v2_file), "lr": 1e-4}
    embedder = build_embedder("ssl", options, tmp_path, "cpu")
    embedder.prepare(pool, progress=False)
    trained = torch.load(embedder.checkpoint, weights_only=True)["state_dict"]
    imagenet = torch.load(mobilenet_v2_file, weights_only=True)
    # One tiny epoch at a low lr moves the weights a little, from ImageNet, not from random.
    weight = "features.0.0.weight"
    random_init = torchvision.models.mobilenet_v2().state_dict()[weight]
    moved = (trained[weight] - imagenet[weight]).norm()
    assert 0 < moved < 0.1 * (random_init - imagenet[weight]).norm()


def test_key_and_embed_need_prepare(pool, tmp_path):
    embedder = build_embedder("ssl", TINY, tmp_path, "cpu")
    with pytest.raises(EmbedError, match="prepare"):
        embedder.key()
    with pytest.raises(EmbedError, match="prepare"):
        embedder.embed(pool, progress=False)


def test_one_image_is_too_few(pool, tmp_path):
    with pytest.raises(EmbedError, match="at least 2 images"):
        build_embedder("ssl", TINY, tmp_path, "cpu").prepare(pool[:1], progress=False)


def test_seed_option_overrides_the_loop_seed(pool, tmp_path):
    embedder = build_embedder("ssl", {**TINY, "seed": 7}, tmp_path, "cpu")
    embedder.prepare(pool, seed=0, progress=False)
    assert torch.load(embedder.checkpoint, weights_only=True)["seed"] == 7


def test_rng_state_of_the_caller_is_left_alone(pool, tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_embedder("ssl", TINY, tmp_path, "cpu").prepare(pool, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_an_unreadable_checkpoint_is_retrained(pool, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "ssl_backbone.pth").write_bytes(b"half a file")
    embedder = build_embedder("ssl", TINY, work, "cpu")
    embedder.prepare(pool, progress=False)
    assert torch.load(embedder.checkpoint, weights_only=True)["format"] == CHECKPOINT_FORMAT
