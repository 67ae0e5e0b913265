"""An image that registered fine but no longer decodes when embedded: set aside, reported, the rest kept."""

from __future__ import annotations

import pytest

from alloop import loop
from alloop.config import ProjectConfig
from alloop.embed.cache import UnreadableImages
from alloop.project import Project

from ..embed.conftest import make_pool


def test_an_image_broken_after_registration_is_set_aside_and_a_rerun_goes_on(tmp_path):
    pool = tmp_path / "pool"
    paths = make_pool(pool, n=6)
    config = ProjectConfig(image_root=str(pool), device="cpu", embedder="backbone",
                           embedder_options={"arch": "mobilenet_v2", "weights": "none", "image_size": 32})
    loop.init(tmp_path / "p", pool, n=2, config=config, progress=False)
    paths[3].write_bytes(b"\xff\xd8\xff\xe0 the disk ate it")
    # A new embedder config: every image is embedded again, and img03 no longer decodes.
    options = {"arch": "mobilenet_v2", "weights": "none", "image_size": 40}
    with pytest.raises(UnreadableImages, match=rf"^{paths[3]}: cannot decode image \(.*\); the other images' "
                                               r"embeddings are saved, fix or remove the file"):
        loop.reembed(tmp_path / "p", embedder="backbone", options=options, progress=False)
    with Project.open(tmp_path / "p", lock=False) as p:
        assert [r.path for r in p.store.images() if r.state != "ok"] == [paths[3].name]
        assert [path for path, _ in p.store.bad_images()] == [paths[3].name]
    key, computed = loop.reembed(tmp_path / "p", progress=False)
    assert computed == 0  # the five readable images were stored by the failed run
    with Project.open(tmp_path / "p", lock=False) as p:
        assert len(p.store.embedding_rows(key)) == 5
