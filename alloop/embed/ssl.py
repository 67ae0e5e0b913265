"""``ssl``: a backbone trained self-supervised on the pool itself with lightly (what lightly-magic did).

``prepare`` trains a torchvision classification arch with SimCLR (Chen et al. 2020: NT-Xent over two
augmented views) or SimSiam (Chen & He 2021: negative cosine between one view's prediction and the
other's stop-gradient projection), using lightly's transforms, heads and losses. Nothing is
downloaded: it starts from random weights unless ``init_weights`` names ImageNet weights or a file.

The trained backbone is saved as ``work_dir/ssl_backbone.pth``::

    {"format": "alloop-ssl-1", "arch": ..., "state_dict": <full torchvision classification model's
     state dict; the classifier head stays at its random init>, "method": ..., "image_size": ...,
     "epochs": ..., "n_images": ..., "seed": ..., "config": {...}, "config_hash": ...,
     "history": [mean loss per epoch], "weights_sha256": <digest of the state dict's tensors>}

so ``torchvision.models.get_model(arch).load_state_dict(ckpt["state_dict"])`` works with strict keys,
and the torchvision trainer can start its detector backbone from it (transfer from the user's own
unlabeled images). A second ``prepare`` with the same config (and seed) is a no-op; a different
pool with the same config is not retrained (the backbone still embeds new images fine).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from alloop import atomic
from alloop.embed.classifiers import ClassifierFeatures, check_arch, load_classifier
from alloop.embed.stream import PREPROCESS_VERSION, embed_images, fingerprint
from alloop.images import DECODE_ERRORS, open_rgb
from alloop.errors import EmbedError

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "ssl_backbone.pth"
CHECKPOINT_FORMAT = "alloop-ssl-1"
METHODS = ("simclr", "simsiam")


@dataclass(frozen=True)
class SSLConfig:
    """Options of the ``ssl`` embedder. Defaults are sized for a ~700-image pool on 2 CPU cores.

    resnet18 at 64 px trains ~40 s per epoch of 700 images on 2 (shared) CPU cores, so the default
    20 epochs take ~14 min; 96 px costs ~1.5x more; mobilenet_v3_small is up to ~2x faster (then
    decoding and augmenting the views is the bottleneck) but less proven for SSL from scratch
    (benchmarks/RESULTS.md, "Embeddings"). On a GPU, raise ``epochs`` (lightly's recipes use 100+)
    and ``image_size``.
    """

    method: str = "simclr"  # "simclr" | "simsiam"
    arch: str = "resnet18"  # any torchvision classification model name
    image_size: int = 64  # training crops and embedding input, square pixels
    epochs: int = 5  # ~41 s an epoch for 700 images at 64 px on 2 CPU cores (benchmarks/RESULTS.md)
    batch_size: int = 64
    lr: float | None = None  # SGD learning rate; None: 0.06 * batch_size / 128 (lightly's benchmarks)
    # None: random init (nothing to download); else a torchvision weights name in the hub cache
    # or a local .pth (ImageNet or another ssl_backbone.pth)
    init_weights: str | None = None
    seed: int | None = None  # None: the seed ``prepare`` is given (the project's)
    num_workers: int = 0  # DataLoader workers decoding and augmenting images

    def __post_init__(self) -> None:
        if isinstance(self.init_weights, str) and self.init_weights.strip().lower() in ("", "none", "random"):
            object.__setattr__(self, "init_weights", None)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name, low in (("image_size", 32), ("epochs", 1), ("batch_size", 2), ("num_workers", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")

    @property
    def learning_rate(self) -> float:
        """The SGD learning rate actually used."""
        return float(self.lr) if self.lr is not None else 0.06 * self.batch_size / 128


class SSLEmbedder:
    """Self-supervised backbone trained on the pool (SimCLR or SimSiam, via lightly)."""

    name: ClassVar[str] = "ssl"
    Config: ClassVar[type] = SSLConfig

    def __init__(self, config: SSLConfig, work_dir: Path, device: str):
        self.config = config
        self.work_dir = Path(work_dir)
        self.device = device
        self._checkpoint_sha: str | None = None
        self._seed: int | None = None
        self._net: ClassifierFeatures | None = None

    @property
    def checkpoint(self) -> Path:
        """The trained backbone file, ``work_dir/ssl_backbone.pth``."""
        return self.work_dir / CHECKPOINT_NAME

    def prepare(self, images: Sequence[Path], *, seed: int = 0, progress: bool = True) -> None:
        """Train on ``images`` and save the backbone; a no-op when a checkpoint of this config exists."""
        check_arch(self.config.arch)
        seed = self.config.seed if self.config.seed is not None else seed
        config_hash = self._config_hash(seed)
        if self._trained_with(config_hash):
            log.info("ssl: %s already trained with this config; not retraining", self.checkpoint)
        else:
            paths = [Path(p) for p in images]
            if len(paths) < 2:
                raise EmbedError(
                    f"ssl training needs at least 2 images, got {len(paths)}; add images to the pool"
                )
            self._train(paths, seed, config_hash, progress)
        self._seed = seed
        # The weights' own digest, stored at save time: the file's bytes also hold the temp name
        # torch.save wrote it under, so two identical trainings would hash differently.
        self._checkpoint_sha = str(_read_checkpoint(self.checkpoint)["weights_sha256"])
        self._net = None

    def key(self) -> str:
        """'ssl-' + hash of (config, seed, the trained checkpoint's sha256). Valid after :meth:`prepare`."""
        if self._checkpoint_sha is None:
            raise EmbedError("ssl embedder: call prepare() (train on the pool) before key() or embed()")
        cfg = asdict(self.config)
        cfg["seed"] = self._seed
        return "ssl-" + fingerprint(cfg, self._checkpoint_sha, PREPROCESS_VERSION)

    def embed(self, images: Sequence[Path], *, batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """(N, D) float32, rows L2-normalised: the trained backbone's pooled features at ``image_size``."""
        if self._checkpoint_sha is None:
            raise EmbedError("ssl embedder: call prepare() (train on the pool) before key() or embed()")
        if self._net is None:
            ckpt = _read_checkpoint(self.checkpoint)
            with torch.random.fork_rng(devices=[]):  # the init is overwritten; keep the caller's RNG
                model = torchvision.models.get_model(ckpt["arch"], weights=None)
            model.load_state_dict(ckpt["state_dict"])
            self._net = ClassifierFeatures(model).to(self.device, memory_format=torch.channels_last).eval()
        return embed_images(
            images,
            self._net,
            image_size=self.config.image_size,
            batch_size=batch_size,
            device=self.device,
            num_workers=self.config.num_workers,
            progress=progress,
            desc=f"embed ssl-{self.config.method}",
        )

    def _trained_with(self, config_hash: str) -> bool:
        if not self.checkpoint.is_file():
            return False
        try:
            return _read_checkpoint(self.checkpoint).get("config_hash") == config_hash
        except EmbedError as exc:  # unreadable or foreign: it is ours to replace
            log.warning("ssl: %s; retraining", exc)
            return False

    def _config_hash(self, seed: int) -> str:
        cfg = asdict(self.config)
        cfg["seed"] = seed
        return fingerprint(cfg, CHECKPOINT_FORMAT)

    def _train(self, paths: list[Path], seed: int, config_hash: str, progress: bool) -> None:
        cfg = self.config
        dev = torch.device(self.device)
        started = time.perf_counter()
        with _seeded(seed, dev):
            model = load_classifier(cfg.arch, cfg.init_weights, warn_random=False, init_seed=seed)
            body = ClassifierFeatures(model)
            feat_dim = body.feature_dim(cfg.image_size)
            method = _METHODS[cfg.method](feat_dim, cfg.image_size)
            body.to(dev).train()
            method.to(dev).train()
            params = list(body.parameters()) + list(method.parameters())
            optimizer = torch.optim.SGD(params, lr=cfg.learning_rate, momentum=0.9, weight_decay=5e-4)
            batch = min(cfg.batch_size, len(paths))
            loader = DataLoader(
                _Views(paths, method.transform, min_side=2 * cfg.image_size),
                batch_size=batch,
                shuffle=True,
                drop_last=True,  # a last batch of 1 breaks BatchNorm and contrastive losses
                num_workers=cfg.num_workers,
                generator=torch.Generator().manual_seed(seed),
                pin_memory=dev.type == "cuda",
            )
            steps = cfg.epochs * len(loader)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
            history: list[float] = []
            bar = tqdm(
                total=steps, desc=f"ssl {cfg.method} {cfg.arch}", unit="step", disable=None if progress else True
            )
            with bar:
                for epoch in range(cfg.epochs):
                    total = 0.0
                    for views, index, errors in loader:
                        for i, err in zip(index.tolist(), errors):
                            if err:
                                raise EmbedError(
                                    f"{paths[i]}: cannot decode image ({err}); run `alloop doctor` to find it"
                                )
                        loss = method.loss(body, [v.to(dev, non_blocking=True) for v in views])
                        if not torch.isfinite(loss):
                            raise EmbedError(
                                f"ssl training diverged (loss {loss.item()}) in epoch {epoch + 1}; "
                                f"lower lr (now {cfg.learning_rate})"
                            )
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        scheduler.step()
                        total += loss.item()
                        bar.update(1)
                        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
                    history.append(total / len(loader))
            # Only the body was trained; the saved state dict is the full classification model's so
            # that get_model(arch).load_state_dict(...) is strict. The head keeps its random init.
            full = torchvision.models.get_model(cfg.arch, weights=None)
        body_state = {k: v.detach().cpu() for k, v in body.model.state_dict().items()}
        result = full.load_state_dict(body_state, strict=False)
        if result.unexpected_keys:
            raise EmbedError(
                f"ssl: trained {cfg.arch} has keys {result.unexpected_keys[:3]} torchvision does not"
            )
        payload: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "arch": cfg.arch,
            "state_dict": full.state_dict(),
            "method": cfg.method,
            "image_size": cfg.image_size,
            "epochs": cfg.epochs,
            "n_images": len(paths),
            "seed": seed,
            "config": asdict(cfg),
            "config_hash": config_hash,
            "history": history,
            "weights_sha256": state_digest(full.state_dict()),
        }
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(self.checkpoint) as tmp:
            torch.save(payload, tmp)
        log.info(
            "ssl: saved %s (final loss %.4f, %.0f s)",
            self.checkpoint,
            history[-1],
            time.perf_counter() - started,
        )


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """Hex SHA-256 of a state dict's names, dtypes, shapes and values (independent of file layout)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        message = f"{path}: cannot read the ssl checkpoint ({exc}); delete it to retrain"
        raise EmbedError(message.replace("\n", " ")) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "weights_sha256" not in ckpt:
        raise EmbedError(
            f"{path} is not an alloop ssl checkpoint ({CHECKPOINT_FORMAT}); delete it to retrain"
        )
    return ckpt


class _Views(Dataset):
    """Two (or more) augmented views of each image, with its index and an error ('' when fine)."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Any], list[torch.Tensor]], min_side: int):
        self.paths = list(paths)
        self.transform = transform
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], int, str]:
        try:
            img = open_rgb(self.paths[index], self.min_side)
        except DECODE_ERRORS as exc:
            blank = Image.new("RGB", (self.min_side, self.min_side))
            return self.transform(blank), index, f"{exc}".replace("\n", " ") or type(exc).__name__
        return self.transform(img), index, ""


class _SimCLR(nn.Module):
    """SimCLR: NT-Xent (temperature 0.5) between projections of two views (Chen et al., ICML 2020)."""

    def __init__(self, feat_dim: int, image_size: int):
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        from lightly.transforms import SimCLRTransform

        self.head = SimCLRProjectionHead(feat_dim, 512, 128)
        self.criterion = NTXentLoss(temperature=0.5)
        self.transform = SimCLRTransform(input_size=image_size)

    def loss(self, body: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
        z0, z1 = (self.head(body(v)) for v in views)
        return self.criterion(z0, z1)


class _SimSiam(nn.Module):
    """SimSiam: -cos(p1, sg(z2)) / 2 - cos(p2, sg(z1)) / 2 (Chen & He, CVPR 2021)."""

    def __init__(self, feat_dim: int, image_size: int):
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
        from lightly.transforms import SimSiamTransform

        self.projection = SimSiamProjectionHead(feat_dim, 512, 128)
        self.prediction = SimSiamPredictionHead(128, 64, 128)
        self.criterion = NegativeCosineSimilarity()
        self.transform = SimSiamTransform(input_size=image_size)

    def loss(self, body: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
        z0, z1 = (self.projection(body(v)) for v in views)
        p0, p1 = self.prediction(z0), self.prediction(z1)
        return 0.5 * (self.criterion(p0, z1.detach()) + self.criterion(p1, z0.detach()))


_METHODS: dict[str, Callable[[int, int], Any]] = {"simclr": _SimCLR, "simsiam": _SimSiam}


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch, numpy and random for a block and put their previous states back afterwards."""
    np_state, py_state = np.random.get_state(), random.getstate()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "SSLConfig", "SSLEmbedder", "state_digest"]
