"""A new --labels for an unfinished iteration that already imported is refused with the fix (issue 19 item 3)."""

from __future__ import annotations

import importlib
import json
import os
import time

import pytest

from alloop import loop
from alloop.errors import LabelError
from alloop.project import Project


@pytest.mark.slow
def test_another_or_changed_label_file_after_import_is_refused(tmp_path, orchard, tiny_config, make_labels,
                                                                monkeypatch, queued_paths, store_dump):
    proj = tmp_path / "proj"
    loop.init(proj, orchard / "images", n=6, config=tiny_config, progress=False)
    queued = queued_paths(proj)
    first = make_labels(orchard / "annotations.json", queued, tmp_path / "first.json")
    train = importlib.import_module("alloop.loop.train")

    def out_of_memory(*args, **kwargs):
        raise MemoryError("training ran out of memory")

    monkeypatch.setattr(train, "previous_checkpoint", out_of_memory)
    with pytest.raises(MemoryError):
        loop.step(proj, labels=first, n=3, progress=False)
    monkeypatch.undo()
    before = store_dump(proj)

    fixed = make_labels(orchard / "annotations.json", queued, tmp_path / "fixed.json")
    with pytest.raises(LabelError, match=r"fixed.json: iteration 1 already imported .*first.json.*--restart"):
        loop.step(proj, labels=fixed, n=3, progress=False)
    doc = json.loads(first.read_text())
    doc["annotations"] = doc["annotations"][:-1]
    first.write_text(json.dumps(doc))
    later = time.time() + 5  # edited well after the import
    os.utime(first, (later, later))
    with pytest.raises(LabelError, match=r"first.json: changed since iteration 1 imported it.*--restart"):
        loop.step(proj, labels=first, n=3, progress=False)
    assert store_dump(proj) == before

    r = loop.step(proj, labels=fixed, n=3, restart=True, progress=False)
    assert r.iteration == 1 and r.resumed_stages == () and r.n_selected == 3
    with Project.open(proj, lock=False) as p:
        assert p.store.iteration(1).config["labels"] == str(fixed)
