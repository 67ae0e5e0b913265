"""``detector``: pooled FPN features of the current fine-tuned detector (alloop torchvision checkpoint).

After the first iteration the detector's backbone knows the task best. Each FPN level (256
channels) is average-pooled over space and L2-normalised, so every level counts the same, and the
levels are concatenated (then the row is L2-normalised again). Input is the whole image resized to
a square of ``image_size`` (default: the detector's own ``min_size``), normalised with the
detector's own mean/std.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alloop.embed.stream import PREPROCESS_VERSION, embed_images, file_sha256, fingerprint
from alloop.errors import AlloopError, EmbedError


@dataclass(frozen=True)
class DetectorConfig:
    """Options of the ``detector`` embedder."""

    checkpoint: str | None = None  # an alloop torchvision checkpoint; the loop fills in the latest one
    image_size: int | None = None  # square input side; None: the detector's min_size (320 for mobile models)
    levels: tuple[str, ...] | None = None  # FPN levels to pool ("0", "1", ..., "pool"); None: all of them
    num_workers: int = 0  # DataLoader workers decoding images

    def __post_init__(self) -> None:
        if isinstance(self.levels, str):
            object.__setattr__(self, "levels", (self.levels,))
        elif self.levels is not None:
            object.__setattr__(self, "levels", tuple(str(level) for level in self.levels))
            if not self.levels:
                raise ValueError("levels must name at least one FPN level (or be left out for all)")
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 32):
            raise ValueError(f"image_size must be an integer >= 32, got {self.image_size!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")


class _PooledFPN(nn.Module):
    """Detector backbone + FPN -> concatenated, per-level L2-normalised average-pooled features."""

    def __init__(self, backbone: nn.Module, levels: tuple[str, ...] | None):
        super().__init__()
        self.backbone = backbone
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(x)
        levels = self.levels if self.levels is not None else tuple(maps)
        unknown = [level for level in levels if level not in maps]
        if unknown:
            raise EmbedError(
                f"detector embedder: FPN level(s) {', '.join(unknown)} do not exist; "
                f"this detector has {', '.join(maps)}: fix levels"
            )
        pooled = [F.normalize(maps[level].float().mean(dim=(2, 3)), dim=1) for level in levels]
        return torch.cat(pooled, dim=1)


class DetectorEmbedder:
    """Average-pooled FPN maps of a fine-tuned alloop torchvision detector."""

    name: ClassVar[str] = "detector"
    Config: ClassVar[type] = DetectorConfig

    def __init__(self, config: DetectorConfig, work_dir: Path, device: str):
        self.config = config
        self.work_dir = Path(work_dir)
        self.device = device
        self._checkpoint_sha: str | None = None
        self._net: _PooledFPN | None = None
        self._image_size: int | None = config.image_size
        self._mean_std: tuple[list[float], list[float]] | None = None

    @property
    def checkpoint(self) -> Path:
        """The detector checkpoint named in the config."""
        if not self.config.checkpoint:
            raise EmbedError(
                "detector embedder: no checkpoint set; train a detector first (alloop step) or set checkpoint"
            )
        return Path(self.config.checkpoint).expanduser()

    def prepare(self, images: Sequence[Path], *, seed: int = 0, progress: bool = True) -> None:
        """Load the detector (nothing to train)."""
        self._network()

    def key(self) -> str:
        """'detector-' + hash of (checkpoint sha256, image size, levels, preprocessing)."""
        if self._checkpoint_sha is None:
            path = self.checkpoint
            if not path.is_file():
                raise EmbedError(f"detector checkpoint {path} does not exist; train first or fix checkpoint")
            self._checkpoint_sha = file_sha256(path)
        return "detector-" + fingerprint(
            self._checkpoint_sha, self.config.image_size, self.config.levels, PREPROCESS_VERSION
        )

    def embed(self, images: Sequence[Path], *, batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """(N, D) float32, rows L2-normalised; D = 256 x number of FPN levels pooled."""
        net = self._network()
        assert self._image_size is not None and self._mean_std is not None
        mean, std = self._mean_std
        return embed_images(
            images,
            net,
            image_size=self._image_size,
            batch_size=batch_size,
            device=self.device,
            mean=mean,
            std=std,
            num_workers=self.config.num_workers,
            progress=progress,
            desc="embed detector",
        )

    def _network(self) -> _PooledFPN:
        if self._net is None:
            self.key()  # checks the file exists and fixes its identity before loading
            from alloop.trainers.torchvision import load_detector

            try:
                model = load_detector(self.checkpoint, self.device)
            except EmbedError:
                raise
            except AlloopError as exc:
                raise EmbedError(f"detector embedder: {exc}") from exc
            transform = model.transform
            if self._image_size is None:
                self._image_size = int(transform.min_size[0])
            self._mean_std = (list(transform.image_mean), list(transform.image_std))
            net = _PooledFPN(model.backbone, self.config.levels)
            self._net = net.to(memory_format=torch.channels_last).eval()
        return self._net
