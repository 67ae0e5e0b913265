"""A detector's predictions on the pool, saved per iteration as one .npz (atomically).

Flat arrays plus offsets keep thousands of images' detections in a handful of arrays that load
in milliseconds. :func:`load_packed` gives them as one :class:`PackedDetections` (the scorers work
on the flat arrays, no object per image); :func:`load_predictions` rebuilds one :class:`Detections`
per image for the readers that want them (export, report).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PackedDetections(Sequence[Detections]):
    """Many images' detections as flat arrays: image i's boxes are rows ``offsets[i]:offsets[i+1]``.

    A sequence of :class:`Detections` (one built on demand per index) for code that walks images,
    and the flat arrays for code that works on every box at once (the scorers).
    ``proposal_offsets`` and the proposal arrays index the candidate regions the same way; they are
    None when no image has them, and ``has_proposals`` says per image whether its detector
    reported them (an image without counts as having none recorded, not as "zero regions").
    """

    offsets: np.ndarray  # (n+1,) int64
    boxes: np.ndarray  # (B, 4) float32
    labels: np.ndarray  # (B,) int64
    scores: np.ndarray  # (B,) float32
    probs: np.ndarray  # (B, C+1) float32
    objectness: np.ndarray  # (B,) float32
    proposal_offsets: np.ndarray | None = None  # (n+1,) int64
    proposal_objectness: np.ndarray | None = None  # (P,) float32
    proposal_foreground: np.ndarray | None = None  # (P,) float32
    has_proposals: np.ndarray | None = None  # (n,) bool

    @classmethod
    def of(cls, dets: Sequence[Detections], num_classes: int | None = None) -> PackedDetections:
        """Pack a list of per-image detections (returned as is when already packed)."""
        if isinstance(dets, PackedDetections):
            return dets
        if num_classes is None:
            num_classes = dets[0].probs.shape[1] - 1 if len(dets) else 0
        data = _pack(dets, num_classes, "")
        has = np.array([d.has_proposals for d in dets], bool)
        if has.any() and not has.all():  # _pack saves regions only when every image has them
            data.update({
                "proposal_offsets": _offsets([len(d.proposal_objectness) if d.has_proposals else 0 for d in dets]),
                "proposal_objectness": _cat([d.proposal_objectness for d in dets if d.has_proposals]),
                "proposal_foreground": _cat([d.proposal_foreground for d in dets if d.has_proposals]),
            })
        return cls._from_arrays(data, "", has if has.any() else None)

    @classmethod
    def _from_arrays(cls, data: dict[str, np.ndarray], prefix: str, has: np.ndarray | None = None) -> PackedDetections:
        off = np.asarray(data[f"{prefix}offsets"], np.int64)
        poff = data.get(f"{prefix}proposal_offsets")
        if poff is not None and has is None:
            has = np.ones(len(off) - 1, bool)
        return cls(
            offsets=off, boxes=data[f"{prefix}boxes"], labels=data[f"{prefix}labels"],
            scores=data[f"{prefix}scores"], probs=data[f"{prefix}probs"], objectness=data[f"{prefix}objectness"],
            proposal_offsets=None if poff is None else np.asarray(poff, np.int64),
            proposal_objectness=data.get(f"{prefix}proposal_objectness"),
            proposal_foreground=data.get(f"{prefix}proposal_foreground"),
            has_proposals=has,
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"image {i} of {n}")
        i %= n
        a, b = self.offsets[i], self.offsets[i + 1]
        po = pf = None
        if self.has_proposals is not None and self.has_proposals[i]:
            pa, pb = self.proposal_offsets[i], self.proposal_offsets[i + 1]
            po, pf = self.proposal_objectness[pa:pb], self.proposal_foreground[pa:pb]
        return Detections(self.boxes[a:b], self.labels[a:b], self.scores[a:b], self.probs[a:b],
                          self.objectness[a:b], po, pf)

    def __iter__(self) -> Iterator[Detections]:
        return (self[i] for i in range(len(self)))

    @property
    def counts(self) -> np.ndarray:
        """(n,) boxes per image."""
        return np.diff(self.offsets)

    def image_of_box(self) -> np.ndarray:
        """(B,) the index of the image each box belongs to."""
        return np.repeat(np.arange(len(self)), self.counts)

    def all_boxes(self) -> Detections:
        """Every image's boxes as one :class:`Detections` (for per-box functions; no regions)."""
        return Detections(self.boxes, self.labels, self.scores, self.probs, self.objectness)


def _cat(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


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


def load_packed(path: Path) -> tuple[np.ndarray, PackedDetections, PackedDetections | None]:
    """(image_ids, detections, flipped or None) as flat arrays: no object per image (the scorers' path)."""
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    flipped = PackedDetections._from_arrays(data, "flipped_") if "flipped_offsets" in data else None
    return data["image_ids"], PackedDetections._from_arrays(data, ""), flipped
