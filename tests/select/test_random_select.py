"""Random selection: seeded, uniform over the unlabeled pool, without replacement."""

from __future__ import annotations

import numpy as np

from alloop.select import SelectionInputs, select
from alloop.select.random import random_sample


def test_same_seed_same_picks_other_seed_other_picks() -> None:
    labeled = np.zeros(200, bool)
    labeled[::3] = True
    inp = SelectionInputs(None, labeled, np.linspace(0, 1, 200))
    a, b, c = (select("random", 20, inp, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    assert a.options["seed"] == 7
    np.testing.assert_allclose(a.scores, np.linspace(0, 1, 200)[a.indices].astype(np.float32))


def test_every_pool_row_is_equally_likely() -> None:
    pool = np.arange(10, 20)
    hits = np.zeros(30)
    for seed in range(2000):
        hits[random_sample(pool, 3, seed)] += 1
    assert hits[:10].sum() == 0 and hits[20:].sum() == 0
    # 6000 draws over 10 rows: 600 expected each; 5 standard deviations is ~ +-110.
    assert np.all(np.abs(hits[10:20] - 600) < 110)
