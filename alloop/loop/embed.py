"""Embeddings of the pool (cached by content hash): init's embed stage and what selection reads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alloop.device import resolve_device
from alloop.embed import build_embedder
from alloop.embed.cache import cached_embeddings
from alloop.loop.records import EmbedInfo
from alloop.loop.runner import Record, Turn
from alloop.project import Project
from alloop.store import ImageRow

log = logging.getLogger("alloop")


def pool_embeddings(
    project: Project, rows: Sequence[ImageRow], *, progress: bool, checkpoint: Path | None = None
) -> tuple[np.ndarray, str, int]:
    """(N, D) embeddings of ``rows`` with the project's embedder, its cache key, and how many were computed.

    The ``detector`` embedder uses ``checkpoint`` (the latest trained model) unless its options name one.
    """
    cfg = project.config
    options = dict(cfg.embedder_options)
    if cfg.embedder == "detector" and checkpoint is not None:
        options.setdefault("checkpoint", str(checkpoint))
    embedder = build_embedder(cfg.embedder, options, project.embedder_dir(cfg.embedder), resolve_device(cfg.device))
    paths = [project.image_root / r.path for r in rows]
    embedder.prepare(paths, seed=cfg.seed, progress=progress)
    key = embedder.key()
    emb, misses = cached_embeddings(
        project.store, project.embeddings_dir(key), embedder, [r.sha256 for r in rows], paths, progress=progress
    )
    if misses:
        log.info("embedded %d images with %s (%s)", misses, cfg.embedder, key)
    return emb, key, misses


def embed_pool(turn: Turn, record: Record) -> EmbedInfo:
    """Embed every usable image of the pool (init's stage: the first selection reads them)."""
    emb, key, misses = pool_embeddings(turn.project, turn.usable_rows(), progress=turn.progress)
    info = EmbedInfo(embedder=key, computed=misses, dim=int(emb.shape[1]))
    record(info)
    return info
