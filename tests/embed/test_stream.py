"""Streaming, batched image embedding shared by all embedders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alloop.embed.stream import ImageStream, embed_images, fingerprint
from alloop.errors import EmbedError


def _mean_colour(x: torch.Tensor) -> torch.Tensor:
    # A feature network whose output is easy to predict: per-channel mean plus a constant.
    return torch.cat([x.mean(dim=(2, 3)), torch.ones((x.shape[0], 1))], dim=1)


def test_batches_do_not_change_the_result(pool, check_embeddings):
    a = embed_images(pool, _mean_colour, image_size=32, batch_size=5, device="cpu", progress=False)
    b = embed_images(pool, _mean_colour, image_size=32, batch_size=64, device="cpu", progress=False)
    check_embeddings(a, len(pool))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a.shape == (len(pool), 4)


def test_images_are_resized_whole_to_a_square(pool):
    pixels, index, error = ImageStream(pool, 48)[4]
    assert pixels.shape == (3, 48, 48) and pixels.dtype == torch.uint8
    assert index == 4 and error == ""


def test_empty_input_gives_zero_rows_of_the_right_width():
    out = embed_images([], _mean_colour, image_size=32, batch_size=4, device="cpu", progress=False)
    assert out.shape == (0, 4) and out.dtype == np.float32


def test_a_corrupt_image_is_named(pool):
    bad = pool[0].parent / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(EmbedError) as err:
        embed_images([*pool[:3], bad], _mean_colour, image_size=32, batch_size=2, device="cpu", progress=False)
    assert str(bad) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_zero_feature_is_an_error_not_a_nan_row(pool):
    with pytest.raises(EmbedError, match="zero or not finite"):
        embed_images(pool[:2], lambda x: torch.zeros((x.shape[0], 3)), image_size=32, batch_size=2,
                     device="cpu", progress=False)


def test_fingerprint_is_stable_and_order_free_for_dicts():
    assert fingerprint({"a": 1, "b": [2, 3]}, "x") == fingerprint({"b": [2, 3], "a": 1}, "x")
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert len(fingerprint("x")) == 16


def test_large_images_get_smaller_batches(pool):
    seen = []

    def features(x):
        seen.append(x.shape[0])
        return _mean_colour(x)

    out = embed_images(pool[:6], features, image_size=1024, batch_size=32, device="cpu", progress=False)
    assert out.shape == (6, 4)
    assert max(seen) == 32 * 384 * 384 // (1024 * 1024) == 4
