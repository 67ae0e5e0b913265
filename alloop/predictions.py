"""A detector's predictions on the pool, saved per iteration as one .npz (atomically).

Flat arrays plus offsets keep thousands of images' detections in a handful of arrays that load
in milliseconds; :func:`load_predictions` rebuilds one :class:`Detections` per image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alloop import atomic
from alloop.boxes import Detections


def _offsets(counts: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(counts, np.int64))]).astype(np.int64)


def _pack(dets: Sequence[Detections], num_classes: int, prefix: str) -> dict[str, np.ndarray]:
    offsets = _offsets([len(d) for d in dets])
    cat = lambda name, shape, dtype: (  # noqa: E731
        np.concatenate([getattr(d, name) for d in dets]).astype(dtype) if len(dets) else np.zeros(shape, dtype)
    )
    proposals: dict[str, np.ndarray] = {}
    # Candidate regions are saved only when every image has them (one detector wrote the file).
    if dets and all(d.has_proposals for d in dets):
        proposals = {
            f"{prefix}proposal_offsets": _offsets([len(d.proposal_objectness) for d in dets]),
            f"{prefix}proposal_objectness": cat("proposal_objectness", (0,), np.float32),
            f"{prefix}proposal_foreground": cat("proposal_foreground", (0,), np.float32),
        }
    return {
        **proposals,
        f"{prefix}offsets": offsets,
        f"{prefix}boxes": cat("boxes", (0, 4), np.float32).reshape(-1, 4),
        f"{prefix}labels": cat("labels", (0,), np.int64),
        f"{prefix}scores": cat("scores", (0,), np.float32),
        f"{prefix}probs": cat("probs", (0, num_classes + 1), np.float32).reshape(-1, num_classes + 1),
        f"{prefix}objectness": cat("objectness", (0,), np.float32),
    }


def _unpack(data: dict[str, np.ndarray], prefix: str) -> list[Detections]:
    off = data[f"{prefix}offsets"]
    n = len(off) - 1
    # Files written before candidate regions were recorded have none: those scores fall back.
    if f"{prefix}proposal_offsets" in data:
        poff = data[f"{prefix}proposal_offsets"]
        obj, fg = data[f"{prefix}proposal_objectness"], data[f"{prefix}proposal_foreground"]
        props = [(obj[a:b], fg[a:b]) for a, b in zip(poff[:-1], poff[1:])]
    else:
        props = [(None, None)] * n
    return [
        Detections(
            boxes=data[f"{prefix}boxes"][a:b],
            labels=data[f"{prefix}labels"][a:b],
            scores=data[f"{prefix}scores"][a:b],
            probs=data[f"{prefix}probs"][a:b],
            objectness=data[f"{prefix}objectness"][a:b],
            proposal_objectness=po,
            proposal_foreground=pf,
        )
        for (a, b), (po, pf) in zip(zip(off[:-1], off[1:]), props)
    ]


def save_predictions(
    path: Path,
    image_ids: Sequence[int],
    detections: Sequence[Detections],
    *,
    num_classes: int,
    flipped: Sequence[Detections] | None = None,
) -> None:
    """Write the detections of ``image_ids`` (and optional hflip detections) to ``path``."""
    if len(image_ids) != len(detections):
        raise ValueError(f"{len(image_ids)} ids for {len(detections)} detections")
    arrays = {"image_ids": np.asarray(image_ids, np.int64), "num_classes": np.array(num_classes)}
    arrays.update(_pack(detections, num_classes, ""))
    if flipped is not None:
        arrays.update(_pack(flipped, num_classes, "flipped_"))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic.write_bytes(path, buf.getvalue())


def load_predictions(path: Path) -> tuple[np.ndarray, list[Detections], list[Detections] | None]:
    """(image_ids, detections, flipped detections or None) as saved by :func:`save_predictions`."""
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    flipped = _unpack(data, "flipped_") if "flipped_offsets" in data else None
    return data["image_ids"], _unpack(data, ""), flipped
