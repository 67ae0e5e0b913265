"""A step whose method is a term spec naming its score (issue 13 items 2 and 3), end to end."""

from __future__ import annotations

import pytest

from alloop import loop
from alloop.errors import SelectionError
from alloop.project import Project


def _queued(project_dir) -> list[str]:
    with Project.open(project_dir, lock=False) as p:
        return sorted(r.path for r in p.store.images() if r.id in p.store.queued_ids())


@pytest.mark.slow
def test_term_spec_step_uses_its_score_and_stores_each_terms_share(tmp_path, orchard, tiny_config, make_labels):
    proj = tmp_path / "proj"
    loop.init(proj, orchard / "images", n=6, config=tiny_config, progress=False)
    labels = make_labels(orchard / "annotations.json", _queued(proj), tmp_path / "round1.json")
    spec = "diversity=1, uncertainty=dcus@2, typicality=0.5"
    with pytest.raises(SelectionError, match="names score 'dcus'.*drop one"):
        loop.step(proj, labels=labels, n=4, method=spec, score="entropy:max", progress=False)
    r1 = loop.step(proj, labels=labels, n=4, method=spec, progress=False)
    with Project.open(proj, lock=False) as p:
        s = p.store
        assert s.iteration(1).score_spec == "dcus" and "dcus" in s.score_names(1)
        tag = s.tag(r1.tag)
        assert tag.method == spec and tag.options["spec"] == "diversity=1, uncertainty=dcus@2, typicality=0.5"
        terms = tag.options["terms"]
        assert set(terms) == {"diversity", "uncertainty", "typicality"}
        assert all(len(v) == 4 for v in terms.values())
        quality = s.stages(1)["evaluate"]["info"]["class_quality"]
        assert set(quality) == set(s.classes()) and all(0.0 <= q <= 1.0 for q in quality.values())
