"""The Ray engine: the pool's model passes as Ray Data ``map_batches`` over a cluster.

The pool's paths go out as Arrow blocks of BATCH_IMAGES rows; each block is one call of a callable
class that builds the model once per actor (one actor per worker slot: a GPU when the cluster has
GPUs, else a CPU; the model runs on that device) from a picklable spec, reads the images from the shared path, and returns the
results keyed by the path's position in the request. The driver streams them back as they finish,
in whatever order, so the caller can store each chunk as it arrives: a run that fails keeps what
finished and a rerun only does the rest.

Faults: an actor that dies (a crashed or killed worker process) is restarted and its batch retried
up to MAX_RETRIES times (Ray's actor restarts and task retries); past that the command fails with
one line naming the cause. An unreadable image is found on the worker as on the local engine
(:func:`alloop.engine.base.embed_batch`) and reported back with its reason.

Ray is imported only when this engine is used: ``pip install 'alloop[ray]'`` brings it.
"""

from __future__ import annotations

import logging
import socket
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from alloop.engine.base import (
    BATCH_IMAGES,
    EmbedChunk,
    EmbedderSpec,
    PredictChunk,
    TrainerSpec,
    embed_batch,
    pack,
    predict_batch,
    unpack,
)
from alloop.errors import AlloopError, ConfigError, EmbedError, TrainerError

log = logging.getLogger("alloop")

# How often a batch is retried on a restarted actor before the run fails.
MAX_RETRIES = 2
INSTALL_HINT = "pip install 'alloop[ray]'"


class EmbedActor:
    """One Ray actor's embedder: built once from the spec, then called per batch of paths.

    The spec travels in ``args``, a class attribute of a subclass made per run (see ``_bound``).
    """

    args: tuple[EmbedderSpec] = ()  # type: ignore[assignment]

    def __init__(self) -> None:
        (spec,) = self.args
        self.embedder = replace(spec, device=_actor_device()).build()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [Path(p) for p in batch["path"]]
        vectors, errors = embed_batch(self.embedder, paths)
        if vectors.shape[1] == 0:  # every image unreadable: one column keeps the block's schema valid
            vectors = np.zeros((len(paths), 1), np.float32)
        return {"pos": batch["pos"], "vector": vectors,
                "error": np.array([errors.get(i, "") for i in range(len(paths))], dtype=object)}


class PredictActor:
    """One Ray actor's trainer plugin: built once from the spec, then called per batch of paths."""

    args: tuple[TrainerSpec, str, bool] = ()  # type: ignore[assignment]

    def __init__(self) -> None:
        spec, checkpoint, self.hflip = self.args
        self.trainer, self.checkpoint = replace(spec, device=_actor_device()).build(), Path(checkpoint)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [Path(p) for p in batch["path"]]
        dets, errors = predict_batch(self.trainer, self.checkpoint, paths, hflip=self.hflip)
        return {"pos": batch["pos"], "detections": np.array([pack(d) for d in dets], dtype=object),
                "error": np.array([errors.get(i, "") for i in range(len(paths))], dtype=object)}


class RayEngine:
    """Connects to the Ray cluster at ``address`` (None: the one ``ray start`` runs here, or
    $RAY_ADDRESS) on first use; ``workers`` model actors (0: one per GPU, else one per CPU), each
    call on at most ``batch_images`` images."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 0, batch_images: int = BATCH_IMAGES) -> None:
        self.address, self.workers, self.batch_images = address, workers, batch_images
        self._ray: Any = None

    def embed(self, embedder: Any, spec: EmbedderSpec, paths: Sequence[Path], *,
              progress: bool) -> Iterator[EmbedChunk]:
        """Vectors of ``paths`` from EmbedActors, chunk by chunk as batches finish."""
        for batch in self._map(EmbedActor, (spec,), paths, progress, error=EmbedError, what="embedding"):
            errors = {int(p): str(e) for p, e in zip(batch["pos"], batch["error"]) if e}
            yield EmbedChunk(batch["pos"].astype(np.int64), np.asarray(batch["vector"], np.float32), errors)

    def predict(self, trainer: Any, spec: TrainerSpec, checkpoint: Path, paths: Sequence[Path], *,
                hflip: bool, progress: bool) -> Iterator[PredictChunk]:
        """Detections of ``paths`` from PredictActors, chunk by chunk as batches finish."""
        args = (spec, str(checkpoint), hflip)
        for batch in self._map(PredictActor, args, paths, progress, error=TrainerError, what="predicting"):
            errors = {int(p): str(e) for p, e in zip(batch["pos"], batch["error"]) if e}
            dets = [None if int(p) in errors else unpack(d) for p, d in zip(batch["pos"], batch["detections"])]
            yield PredictChunk(batch["pos"].astype(np.int64), dets, errors)

    def close(self) -> None:
        """Disconnect from the cluster (the cluster itself keeps running)."""
        if self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()
        self._ray = None

    # ----------------------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._ray is not None:
            return self._ray
        try:
            import ray
        except ImportError:
            raise ConfigError(f"--engine ray needs Ray, which is not installed; {INSTALL_HINT}") from None
        where = self.address or "auto"
        _check_reachable(where)
        try:
            ray.init(address=where, logging_level=logging.WARNING, log_to_driver=False, ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"--ray-address {where}: no Ray cluster answers there ({first}); start one with "
                "`ray start --head` or set [engine] address in alloop.toml"
            ) from None
        # Ray Data's console lines (notices, and tracebacks of failures alloop reports in one line
        # itself) are noise in alloop's output; its log file under the Ray session keeps everything.
        import ray.data

        # Only Ray Data's own console handlers: the root logger's (the caller's, pytest's) stay as they are.
        shared = set(logging.getLogger().handlers)
        for handler in logging.getLogger("ray.data").handlers:
            if not isinstance(handler, logging.FileHandler) and handler not in shared:
                handler.setLevel(logging.CRITICAL)
        self._ray = ray
        return ray

    def _map(self, actor: type, args: tuple, paths: Sequence[Path], progress: bool, *,
             error: type[AlloopError], what: str) -> Iterator[dict[str, np.ndarray]]:
        if not paths:
            return
        ray = self._connect()
        import pyarrow as pa

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        workers = self.workers or gpus or max(1, int(resources.get("CPU", 1)))
        text = [str(p) for p in paths]
        # One block per model call, and at least one block per worker on a small request.
        size = max(1, min(self.batch_images, -(-len(text) // workers)))
        blocks = [pa.table({"pos": np.arange(s, min(s + size, len(text)), dtype=np.int64),
                            "path": text[s:s + size]}) for s in range(0, len(text), size)]
        with warnings.catch_warnings():
            # max_restarts/max_task_retries are only accepted as "ray_remote_args" (deprecated for 2.64).
            warnings.simplefilter("ignore")
            ds = ray.data.from_arrow(blocks).map_batches(
                _bound(actor, args),
                batch_size=size,
                batch_format="numpy",
                # One batch in flight per actor: an actor that dies takes only the batch it was running
                # with it (the inputs are paths: nothing worth prefetching into an actor).
                compute=ray.data.ActorPoolStrategy(size=min(workers, len(blocks)), max_tasks_in_flight_per_actor=1),
                num_cpus=1,
                num_gpus=1 if gpus else 0,
                max_restarts=MAX_RETRIES,
                max_task_retries=MAX_RETRIES,
            )
        log.info("%s %d images on Ray (%d %s workers)", what, len(text), workers, "GPU" if gpus else "CPU")
        try:
            # No prefetch: with one, the last finished batch waited in the iterator and was dropped when
            # a later batch failed (measured), so a rerun had to redo it.
            yield from ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)
        except Exception as exc:  # noqa: BLE001 - any Ray failure: the worker's AlloopError, else one line
            raise _as_alloop_error(exc, error, what) from None


def _check_reachable(address: str) -> None:
    """A HOST:PORT nobody listens on fails now, in one line (ray.init would retry it for minutes)."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return  # "auto", ray:// (Ray Client) and other forms: ray.init checks them itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); start one with "
            "`ray start --head` or set [engine] address in alloop.toml"
        ) from None


def _actor_device() -> str:
    """The device of this actor: the GPU Ray gave it, else the CPU (whatever the head's device is)."""
    import ray

    return "cuda" if ray.get_gpu_ids() else "cpu"


def _bound(actor: type, args: tuple) -> type:
    """A subclass of ``actor`` carrying ``args``: pickled with the class, never an object-store argument
    (Ray warns that constructor arguments in the object store can be lost for an actor restart)."""
    return type(actor.__name__, (actor,), {"args": args, "__module__": actor.__module__})


def _as_alloop_error(exc: BaseException, error: type[AlloopError], what: str) -> AlloopError:
    """The AlloopError a worker raised (its type and message), or one line on a worker that kept dying."""
    seen: BaseException | None = exc
    for _ in range(10):  # Ray wraps the worker's exception as cause, sometimes twice
        if seen is None:
            break
        cause = getattr(seen, "cause", None)  # a RayTaskError: the worker's exception is its cause
        if isinstance(cause, BaseException):
            seen = cause
            continue
        if isinstance(seen, AlloopError):
            return type(seen)(*seen.args)
        seen = seen.__cause__
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return error(
        f"ray engine: a worker failed {what} and its batch was retried {MAX_RETRIES} times "
        f"({type(exc).__name__}: {first.strip()[:200]}); what finished is kept, rerun the command to continue"
    )
