"""Embeddings of the pool (cached by content hash): init's embed stage and what selection reads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alloop.device import resolve_device
from alloop.embed import AUTO, build_embedder, resolve_embedder
from alloop.embed.cache import UnreadableImages, cached_embeddings
from alloop.engine import EmbedderSpec, project_engine
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
    ``auto`` (the default) is the ImageNet backbone while there is no model, then, with the built-in
    torchvision trainer, the detector's own features: on two benchmark families, 2 seeds, 25 -> 150 labels,
    ``auto`` selected on them reached random's final mAP@0.5 with 66% of its labels where the backbone's
    features needed 78%, and was level with the backbone elsewhere (benchmarks/RESULTS.md, "Detector features").
    The misses run on the project's engine. Unreadable images are set aside (state ``unreadable``,
    listed by `alloop status`) and raise :class:`UnreadableImages`; a rerun goes on without them.
    """
    cfg = project.config
    if cfg.embedder == AUTO and checkpoint is not None and cfg.trainer == "torchvision":
        name, options = "detector", {}  # a trained model knows the task: select on its features
    else:
        name, options = resolve_embedder(cfg.embedder, cfg.embedder_options)
    work_dir = project.embedder_dir(cfg.embedder)
    if name == "detector" and checkpoint is not None:
        options.setdefault("checkpoint", str(checkpoint))
    elif name == "detector" and not options.get("checkpoint"):
        # No model yet (the cold start): nothing task-aware to embed with, so the first batch is chosen
        # on what `auto` picks; every later selection passes the latest checkpoint.
        name, options = resolve_embedder(AUTO, {})
        work_dir = project.embedder_dir(name)
        log.info("embedder detector: no trained model yet, so this cold start embeds with %s; "
                 "the selections after the first training use the detector's own features", name)
    embedder = build_embedder(name, options, work_dir, resolve_device(cfg.device))
    paths = [project.image_root / r.path for r in rows]
    embedder.prepare(paths, seed=cfg.seed, progress=progress)
    key = embedder.key()
    spec = EmbedderSpec(name, options, str(work_dir), cfg.device, cfg.seed, key)
    engine = project_engine(cfg)
    try:
        emb, misses = cached_embeddings(project.store, project.embeddings_dir(key), embedder,
                                        [r.sha256 for r in rows], paths, engine=engine, spec=spec, progress=progress)
    except UnreadableImages as exc:
        set_aside(project, rows, exc)
        raise
    finally:
        engine.close()
    if misses:
        log.info("embedded %d images with %s (%s) on the %s engine", misses, cfg.embedder, key, engine.name)
    return emb, key, misses


def set_aside(project: Project, rows: Sequence[ImageRow], exc: UnreadableImages) -> None:
    """Mark the images ``exc`` names unreadable (with why) so the loop leaves them out from now on."""
    bad = {sha: reason for sha, _, reason in exc.bad}
    store = project.store
    with store.transaction():
        hit = [r for r in rows if r.sha256 in bad]
        for r in hit:
            store.set_image_state(r.id, "unreadable")
        store.record_bad_images((r.path, f"cannot decode image ({bad[r.sha256]})") for r in hit)
    for r in hit:
        log.warning("skipped %s: cannot decode image (%s)", r.path, bad[r.sha256])


def embed_pool(turn: Turn, record: Record) -> EmbedInfo:
    """Embed every usable image of the pool (init's stage: the first selection reads them).

    Images that turn out unreadable are set aside and reported, and the stage goes on without them.
    """
    try:
        emb, key, misses = pool_embeddings(turn.project, turn.usable_rows(), progress=turn.progress)
    except UnreadableImages:
        emb, key, misses = pool_embeddings(turn.project, turn.usable_rows(), progress=turn.progress)
    info = EmbedInfo(embedder=key, computed=misses, dim=int(emb.shape[1]))
    record(info)
    return info
