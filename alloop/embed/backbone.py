"""``backbone``: a torchvision classification backbone's globally pooled features.

Works offline as long as the weights are on disk: a torchvision weights name is looked up in the
torch hub cache (``$TORCH_HOME/hub/checkpoints``), a local ``.pth`` is read directly. The default,
mobilenet_v2 with ``IMAGENET1K_V1``, is the one whose file (``mobilenet_v2-b0353104.pth``) is most
often at hand; it is also the fastest of the common backbones on a CPU (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from alloop.embed.classifiers import ClassifierFeatures, check_arch, load_classifier, weights_identity
from alloop.embed.stream import PREPROCESS_VERSION, embed_images, fingerprint


@dataclass(frozen=True)
class BackboneConfig:
    """Options of the ``backbone`` embedder."""

    arch: str = "mobilenet_v2"  # any torchvision classification model name
    # torchvision weights name (hub cache only), a local .pth file, or "none" for random weights
    weights: str | None = "IMAGENET1K_V1"
    image_size: int = 224
    pool: str = "avg"  # the model's own global average pool; the only choice for now
    num_workers: int = 0  # DataLoader workers decoding images

    def __post_init__(self) -> None:
        if isinstance(self.weights, str) and self.weights.strip().lower() in ("", "none", "random"):
            object.__setattr__(self, "weights", None)
        if not isinstance(self.image_size, int) or self.image_size < 16:
            raise ValueError(f"image_size must be an integer >= 16, got {self.image_size!r}")
        if self.pool != "avg":
            raise ValueError(f"pool must be 'avg', got {self.pool!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")


class BackboneEmbedder:
    """Globally pooled last feature map of a torchvision classification model."""

    name: ClassVar[str] = "backbone"
    Config: ClassVar[type] = BackboneConfig

    def __init__(self, config: BackboneConfig, work_dir: Path, device: str):
        self.config = config
        self.work_dir = Path(work_dir)
        self.device = device
        self._weights_id: str | None = None
        self._net: ClassifierFeatures | None = None

    def prepare(self, images: Sequence[Path], *, seed: int = 0, progress: bool = True) -> None:
        """Check the arch and weights (nothing to train); loads the model once."""
        self._network()

    def key(self) -> str:
        """'backbone-' + hash of (arch, weights name or file sha256, image size, preprocessing)."""
        if self._weights_id is None:
            check_arch(self.config.arch)
            self._weights_id = weights_identity(self.config.arch, self.config.weights)
        cfg = asdict(self.config)
        cfg.pop("num_workers")  # does not change the vectors
        cfg["weights"] = self._weights_id
        return "backbone-" + fingerprint(cfg, PREPROCESS_VERSION)

    def embed(self, images: Sequence[Path], *, batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """(N, D) float32, rows L2-normalised; D is the backbone's feature width."""
        return embed_images(
            images,
            self._network(),
            image_size=self.config.image_size,
            batch_size=batch_size,
            device=self.device,
            num_workers=self.config.num_workers,
            progress=progress,
            desc=f"embed {self.config.arch}",
        )

    def _network(self) -> ClassifierFeatures:
        if self._net is None:
            self.key()  # validates arch and weights before the (slower) model build
            model = load_classifier(self.config.arch, self.config.weights)
            self._net = ClassifierFeatures(model).to(self.device, memory_format=torch.channels_last).eval()
        return self._net
