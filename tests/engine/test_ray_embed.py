"""Embedding on a real Ray cluster: the same vectors as the local engine, faults, unreadable images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alloop.embed import build_embedder
from alloop.embed.cache import UnreadableImages, cached_embeddings, load_cached_embeddings
from alloop.engine import EmbedderSpec, LocalEngine
from alloop.errors import EmbedError
from alloop.store import Store

from ..embed.conftest import make_pool

BACKBONE = {"arch": "mobilenet_v2", "weights": "none", "image_size": 32}


def embed(tmp: Path, paths, engine, name="backbone", options=BACKBONE, store=None):
    """cached_embeddings of ``paths`` (hashes sha0, sha1, ...) on ``engine``; the store and the result."""
    tmp.mkdir(parents=True, exist_ok=True)
    store = store or Store(tmp / "alloop.db", create=True)
    embedder = build_embedder(name, options, tmp / "embedder", "cpu")
    embedder.prepare(paths, progress=False)
    spec = EmbedderSpec(name, dict(options), str(tmp / "embedder"), "cpu", 0, embedder.key())
    shas = [f"sha{i}" for i in range(len(paths))]
    return store, embedder.key(), lambda: cached_embeddings(store, tmp / "emb", embedder, shas, paths, engine=engine,
                                                            spec=spec, progress=False)


def ray_engine(cluster, **kw):
    from alloop.engine.ray import RayEngine

    return RayEngine(cluster.address, **kw)


def test_ray_vectors_equal_local_and_an_unreadable_image_is_reported_alike(tmp_path, ray_cluster):
    paths = make_pool(tmp_path / "pool", n=12)
    broken = tmp_path / "pool" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    paths.insert(5, broken)
    results = {}
    for name, engine in (("local", LocalEngine()), ("ray", ray_engine(ray_cluster, workers=2))):
        store, key, run = embed(tmp_path / name, paths, engine)
        with pytest.raises(UnreadableImages) as caught:
            run()
        engine.close()
        assert [(sha, p) for sha, p, _ in caught.value.bad] == [("sha5", broken)]
        assert str(caught.value).startswith(f"{broken}: cannot decode image (")
        good = [f"sha{i}" for i in range(len(paths)) if i != 5]
        results[name] = (str(caught.value), load_cached_embeddings(store, tmp_path / name / "emb", key, good))
        store.close()
    assert results["ray"][0] == results["local"][0]
    assert results["ray"][1].shape == (12, 1280)
    np.testing.assert_allclose(results["ray"][1], results["local"][1], atol=1e-5)


def test_a_worker_that_dies_once_is_retried(tmp_path, ray_cluster, plugins_on_path):
    paths = make_pool(tmp_path / "pool", n=8)
    marker = tmp_path / "died"
    engine = ray_engine(ray_cluster, workers=1)
    store, _, run = embed(tmp_path / "ray", paths, engine, name="dying",
                          options={**BACKBONE, "crash_once": str(marker)})
    vectors, misses = run()
    engine.close()
    assert marker.exists(), "the worker did not die: the test tests nothing"
    assert misses == 8
    local_store, _, local = embed(tmp_path / "local", paths, LocalEngine())
    np.testing.assert_allclose(vectors, local()[0], atol=1e-5)
    store.close()
    local_store.close()


@pytest.mark.slow  # three actor restarts: about 40 s on 2 cores
def test_a_worker_that_keeps_dying_fails_in_one_line_and_a_rerun_does_only_the_rest(tmp_path, ray_cluster,
                                                                                    plugins_on_path):
    paths = make_pool(tmp_path / "pool", n=24)
    budget = tmp_path / "budget"
    budget.write_text("8")  # the first batch of 8 goes through, then every call dies
    options = {**BACKBONE, "budget_file": str(budget)}
    engine = ray_engine(ray_cluster, workers=1, batch_images=8)
    store, key, run = embed(tmp_path / "ray", paths, engine, name="dying", options=options)
    with pytest.raises(EmbedError) as caught:
        run()
    message = str(caught.value)
    assert message.startswith("ray engine: a worker failed embedding and its batch was retried 2 times (")
    assert message.endswith("what finished is kept, rerun the command to continue") and "\n" not in message
    assert len(store.embedding_rows(key)) == 8
    budget.unlink()
    vectors, misses = run()
    engine.close()
    assert misses == 16
    local_store, _, local = embed(tmp_path / "local", paths, LocalEngine())
    np.testing.assert_allclose(vectors, local()[0], atol=1e-5)
    store.close()
    local_store.close()
