"""Random selection: the baseline every active-learning curve is compared against."""

from __future__ import annotations

import numpy as np

from alloop.select.base import Selection, SelectionInputs, make_selection


def random_sample(pool: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k rows drawn uniformly without replacement from ``pool`` (numpy PCG64 seeded by ``seed``)."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.asarray(pool, dtype=np.int64), size=int(k), replace=False, shuffle=True)


def run_random(
    k: int, inputs: SelectionInputs, pool: np.ndarray, *, seed: int = 0, device: str = "cpu"
) -> Selection:
    """The ``random`` selector: uniform over the unlabeled pool; distances are not computed (nan)."""
    picks = random_sample(pool, k, seed)
    return make_selection("random", picks, None, inputs.scores, {"seed": seed})
