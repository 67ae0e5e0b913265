"""A detector's predictions on the pool, saved per iteration as one .npz (atomically).

Flat arrays plus offsets keep thousands of images' detections in a handful of arrays that load
in milliseconds. :func:`load_packed` gives them as one :class:`PackedDetections` (the scorers work
on the flat arrays, no object per image); :func:`load_predictions` rebuilds one :class:`Detections`
per image for the readers that want them (export, report).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    # Box descriptors likewise, stored as float16 (half the bytes; cosine similarity is unchanged to ~1e-3).
    if dets and all(d.features is not None for d in dets) and len({d.features.shape[1] for d in dets}) == 1:
        proposals[f"{prefix}features"] = np.concatenate([d.features for d in dets]).astype(np.float16)
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
    features: np.ndarray | None = None  # (B, D) float16 box descriptors, when every image has them

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
            features=data.get(f"{prefix}features"),
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
        feats = None if self.features is None else self.features[a:b].astype(np.float32)
        return Detections(self.boxes[a:b], self.labels[a:b], self.scores[a:b], self.probs[a:b],
                          self.objectness[a:b], po, pf, feats)

    def __iter__(self) -> Iterator[Detections]:
        return (self[i] for i in range(len(self)))

    @property
    def counts(self) -> np.ndarray:
        """(n,) boxes per image."""
        return np.diff(self.offsets)

    def image_of_box(self) -> np.ndarray:
        """(B,) the index of the image each box belongs to."""
        return np.repeat(np.arange(len(self)), self.counts)

    def take(self, images: np.ndarray) -> PackedDetections:
        """The detections of ``images`` (indices into this pack), in that order."""
        images = np.asarray(images, np.int64)
        rows, offsets = _ranges(self.offsets, images)
        regions = {}
        if self.proposal_offsets is not None:
            prow, poff = _ranges(self.proposal_offsets, images)
            regions = {"proposal_offsets": poff, "proposal_objectness": self.proposal_objectness[prow],
                       "proposal_foreground": self.proposal_foreground[prow],
                       "has_proposals": self.has_proposals[images]}
        return PackedDetections(offsets, self.boxes[rows], self.labels[rows], self.scores[rows], self.probs[rows],
                                self.objectness[rows], **regions,
                                features=None if self.features is None else self.features[rows])

    @classmethod
    def concat(cls, parts: Sequence[PackedDetections]) -> PackedDetections:
        """One pack of several, their images one after the other (regions kept only when all have them)."""
        def offsets(key: str) -> np.ndarray:
            return _offsets(np.concatenate([np.diff(getattr(p, key)) for p in parts]))

        regions = {}
        if all(p.proposal_offsets is not None for p in parts):
            regions = {"proposal_offsets": offsets("proposal_offsets"),
                       "proposal_objectness": np.concatenate([p.proposal_objectness for p in parts]),
                       "proposal_foreground": np.concatenate([p.proposal_foreground for p in parts]),
                       "has_proposals": np.concatenate([p.has_proposals for p in parts])}
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        feats = None
        if all(p.features is not None for p in parts) and len({p.features.shape[1] for p in parts}) == 1:
            feats = cat("features")
        return cls(offsets("offsets"), cat("boxes"), cat("labels"), cat("scores"), cat("probs"), cat("objectness"),
                    **regions, features=feats)

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The arrays as :func:`save_predictions` writes them (regions only when every image has them)."""
        out = {f"{prefix}offsets": self.offsets, f"{prefix}boxes": self.boxes, f"{prefix}labels": self.labels,
               f"{prefix}scores": self.scores, f"{prefix}probs": self.probs, f"{prefix}objectness": self.objectness}
        if self.has_proposals is not None and self.has_proposals.all():
            out = {f"{prefix}proposal_offsets": self.proposal_offsets,
                   f"{prefix}proposal_objectness": self.proposal_objectness,
                   f"{prefix}proposal_foreground": self.proposal_foreground, **out}
        if self.features is not None:
            out[f"{prefix}features"] = self.features.astype(np.float16)
        return out

    def all_boxes(self) -> Detections:
        """Every image's boxes as one :class:`Detections` (for per-box functions; no regions)."""
        feats = None if self.features is None else self.features.astype(np.float32)
        return Detections(self.boxes, self.labels, self.scores, self.probs, self.objectness, features=feats)


def _ranges(offsets: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the rows of ``images``' segments, one after the other; the offsets of those segments)."""
    starts, counts = offsets[images], offsets[images + 1] - offsets[images]
    new = _offsets(counts)
    rows = np.arange(new[-1], dtype=np.int64) - np.repeat(new[:-1] - starts, counts)
    return rows, new


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
    feats = data.get(f"{prefix}features")
    return [
        Detections(
            boxes=data[f"{prefix}boxes"][a:b],
            labels=data[f"{prefix}labels"][a:b],
            scores=data[f"{prefix}scores"][a:b],
            probs=data[f"{prefix}probs"][a:b],
            objectness=data[f"{prefix}objectness"][a:b],
            proposal_objectness=po,
            proposal_foreground=pf,
            features=None if feats is None else feats[a:b].astype(np.float32),
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
    _save(path, arrays)


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic.write_bytes(path, buf.getvalue())


def save_packed(path: Path, image_ids: np.ndarray, detections: PackedDetections, *, num_classes: int,
                flipped: PackedDetections | None = None) -> None:
    """:func:`save_predictions` from flat arrays (the same file, no object per image)."""
    if len(image_ids) != len(detections):
        raise ValueError(f"{len(image_ids)} ids for {len(detections)} detections")
    arrays = {"image_ids": np.asarray(image_ids, np.int64), "num_classes": np.array(num_classes),
              **detections.arrays()}
    if flipped is not None:
        arrays.update(flipped.arrays("flipped_"))
    _save(path, arrays)


def load_predictions(path: Path, image_ids: Iterable[int] | None = None,
                     ) -> tuple[np.ndarray, list[Detections], list[Detections] | None]:
    """(image_ids, detections, flipped detections or None) as saved by :func:`save_predictions`.

    ``image_ids``: only those images (in the file's order), so a reader that wants a batch of a
    large pool builds a hundred objects, not one per pooled image.
    """
    if image_ids is not None:
        ids, packed, flipped = load_packed(path)
        keep = np.flatnonzero(np.isin(ids, np.fromiter(image_ids, np.int64)))
        return ids[keep], list(packed.take(keep)), None if flipped is None else list(flipped.take(keep))
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


class PredictionsById(Mapping[int, Detections]):
    """Image id → :class:`Detections`, built only for the images asked for, over the flat arrays; pool
    statistics (:meth:`class_counts`, :meth:`ids_without`) come from the arrays in one pass."""

    def __init__(self, image_ids: np.ndarray, packed: PackedDetections) -> None:
        self.image_ids = np.asarray(image_ids, np.int64)
        self.packed = packed
        self._order = np.argsort(self.image_ids, kind="stable")

    def _position(self, image_id: object) -> int | None:
        if not isinstance(image_id, (int, np.integer)) or not len(self.image_ids):
            return None
        k = int(np.searchsorted(self.image_ids, image_id, sorter=self._order))
        if k < len(self._order) and self.image_ids[self._order[k]] == image_id:
            return int(self._order[k])
        return None

    def __getitem__(self, image_id: int) -> Detections:
        pos = self._position(image_id)
        if pos is None:
            raise KeyError(image_id)
        return self.packed[pos]

    def __contains__(self, image_id: object) -> bool:
        return self._position(image_id) is not None

    def __iter__(self) -> Iterator[int]:
        return iter(self.image_ids.tolist())

    def __len__(self) -> int:
        return len(self.image_ids)

    def class_counts(self, threshold: float, num_classes: int) -> np.ndarray:
        """(num_classes,) boxes scoring at least ``threshold`` per predicted class, over every image."""
        labels = np.asarray(self.packed.labels)[np.asarray(self.packed.scores) >= threshold]
        labels = labels[(labels >= 0) & (labels < num_classes)]
        return np.bincount(labels, minlength=num_classes)[:num_classes].astype(np.int64)

    def ids_without(self, threshold: float) -> np.ndarray:
        """Ids of the images with no box scoring at least ``threshold`` (:meth:`Detections.above` empty)."""
        kept = np.asarray(self.packed.scores) >= threshold
        per_image = np.bincount(self.packed.image_of_box()[kept], minlength=len(self.image_ids))
        return self.image_ids[per_image == 0]


def load_by_id(path: Path) -> PredictionsById:
    """The predictions file as an image id → Detections mapping, no object per image until asked."""
    ids, packed, _ = load_packed(path)
    return PredictionsById(ids, packed)


# ------------------------------------------------------------------------------------------------
# the infer stage's finished chunks, so that a stopped inference continues where it stopped

def chunks_dir(path: Path) -> Path:
    """Where the chunks of the predictions file ``path`` wait until the whole pool is predicted."""
    return path.with_name(path.stem + ".chunks")


def model_identity(checkpoint: Path) -> str:
    """What makes predictions "this model's": the checkpoint's content hash (a folder: names, sizes, times)."""
    from alloop.images import sha256_of

    checkpoint = Path(checkpoint)
    if checkpoint.is_file():
        return sha256_of(checkpoint)
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file())
    listing = "\n".join(f"{p.relative_to(checkpoint)}\t{p.stat().st_size}\t{p.stat().st_mtime_ns}" for p in files)
    import hashlib

    return hashlib.sha256(listing.encode()).hexdigest()


@dataclass(frozen=True)
class PredictionChunks:
    """The infer stage's finished chunks of one iteration: one small .npz per chunk of images, each
    written atomically and holding its image ids and the model that predicted them.

    A chunk of another model (the iteration was restarted and retrained) or without the flipped
    predictions a flip score needs counts as not done; :meth:`merge` writes the predictions file the
    readers know, in the pool's order, from the chunks alone.
    """

    directory: Path
    model: str
    flipped: bool

    def _files(self) -> list[Path]:
        return sorted(self.directory.glob("chunk-*.npz")) if self.directory.is_dir() else []

    def _valid(self, npz) -> bool:
        return str(npz["model"]) == self.model and (not self.flipped or "flipped_offsets" in npz.files)

    def done_ids(self) -> set[int]:
        """Image ids this model already predicted (reads each chunk's ids, not its boxes)."""
        done: set[int] = set()
        for f in self._files():
            with np.load(f) as npz:
                if self._valid(npz):
                    done.update(npz["image_ids"].tolist())
        return done

    def write(self, image_ids: Sequence[int], detections: Sequence[Detections], *, num_classes: int,
              flipped: Sequence[Detections] | None = None) -> Path:
        """One finished chunk, atomically; its name follows the last one's."""
        self.directory.mkdir(parents=True, exist_ok=True)
        files = self._files()
        seq = int(files[-1].stem.split("-")[1]) + 1 if files else 0
        arrays = {"image_ids": np.asarray(image_ids, np.int64), "model": np.array(self.model),
                  **_pack(detections, num_classes, "")}
        if flipped is not None:
            arrays.update(_pack(flipped, num_classes, "flipped_"))
        path = self.directory / f"chunk-{seq:06d}.npz"
        _save(path, arrays)
        return path

    def merge(self, image_ids: Sequence[int], out: Path, *, num_classes: int) -> int:
        """Write ``out`` with the predictions of ``image_ids`` in that order; returns its box count."""
        ids, dets, flips = [], [], []
        for f in self._files():
            with np.load(f) as npz:
                if not self._valid(npz):
                    continue
                data = {k: npz[k] for k in npz.files}
            ids.append(data["image_ids"])
            dets.append(PackedDetections._from_arrays(data, ""))
            if self.flipped:
                flips.append(PackedDetections._from_arrays(data, "flipped_"))
        wanted = np.asarray(image_ids, np.int64)
        if not ids:
            if len(wanted):
                raise ValueError(f"{self.directory}: no chunk of this model holds the {len(wanted)} images")
            save_predictions(out, [], [], num_classes=num_classes, flipped=[] if self.flipped else None)
            return 0
        every = np.concatenate(ids)
        # The last chunk that holds an image wins (a chunk is never rewritten, so all agree).
        known, first_from_end = np.unique(every[::-1], return_index=True)
        at = np.minimum(np.searchsorted(known, wanted), max(len(known) - 1, 0))
        missing = wanted[known[at] != wanted]
        if len(missing):
            raise ValueError(f"{self.directory}: {len(missing)} images have no prediction, e.g. id {missing[0]}")
        order = (len(every) - 1 - first_from_end)[at]
        packed = PackedDetections.concat(dets).take(order)
        flipped = PackedDetections.concat(flips).take(order) if self.flipped else None
        save_packed(out, wanted, packed, num_classes=num_classes, flipped=flipped)
        return len(packed.boxes)

    def clear(self) -> None:
        """Remove the chunks (once merged)."""
        for f in self._files():
            f.unlink()
        if self.directory.is_dir() and not any(self.directory.iterdir()):
            self.directory.rmdir()
