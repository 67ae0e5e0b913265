"""Per-image reductions over flat per-box arrays, without a Python loop over images.

The pool's boxes lie in one array, image i's in rows ``offsets[i]:offsets[i+1]``. Images are grouped
by their number of boxes k: the boxes of all images holding k of them form one (images, k) matrix, and
a reduction along its rows is the reduction each image would do on its own boxes — the same numpy
operation on the same values in the same order, so the results equal the per-image ones exactly
(a segmented ``np.add.reduceat`` sums in another order and can differ in the last bit). A pool has few
distinct box counts (a detector keeps at most ~100 boxes), so this is a handful of numpy calls
whatever the number of images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np


def by_count(offsets: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(image indices, their (images, k) box rows) for each box count k > 0 of ``offsets``."""
    offsets = np.asarray(offsets, np.int64)
    counts = np.diff(offsets)
    order = np.argsort(counts, kind="stable")
    ordered = counts[order]
    for group in np.split(order, np.flatnonzero(np.diff(ordered)) + 1):
        if len(group) and counts[group[0]] > 0:
            yield group, offsets[group][:, None] + np.arange(counts[group[0]])


def reduce_images(values: np.ndarray, offsets: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], *,
                  empty: float = 0.0, dtype: type = np.float64) -> np.ndarray:
    """(n_images,) ``fn`` applied to each image's row of ``values`` (``fn``: (images, k) → (images,));
    an image without boxes gets ``empty``."""
    values = np.asarray(values)
    out = np.full(len(offsets) - 1, empty, dtype)
    for images, rows in by_count(offsets):
        out[images] = fn(values[rows])
    return out


def offsets_of(image_index: np.ndarray, n_images: int) -> np.ndarray:
    """Offsets of boxes sorted by image, from each box's image index (images may have none)."""
    counts = np.bincount(np.asarray(image_index, np.int64), minlength=n_images)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


__all__ = ["by_count", "offsets_of", "reduce_images"]
