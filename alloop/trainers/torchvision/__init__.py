"""The built-in trainer: torchvision Faster R-CNN, fine-tuned on the labeled images.

``train`` fine-tunes (SGD or AdamW, linear warmup then cosine/step decay, optional AMP on CUDA,
hflip + scale-jitter augmentation), measures validation mAP after every epoch with :mod:`alloop.evaluate`,
keeps ``best.pt`` and ``last.pt`` in ``out_dir`` and stops early when the mAP stalls. A run that
was interrupted continues from ``last.pt`` when ``train`` is called again with the same data and
settings. ``predict`` returns, per box, the full softmax over background + classes and the RPN
objectness of its proposal: what alloop's uncertainty scores need.

The package, as torchvision's references/detection lays it out:
- ``config``: :class:`TorchvisionConfig`, every option with its check and help;
- ``models``: the architectures and loading weights into them; ``detect``: full-softmax inference;
- ``data``: images and targets; ``engine``: ``train_one_epoch``, ``validate``, ``TrainState``;
- ``checkpoints``: the ``best.pt`` / ``last.pt`` format; ``trainer``: :class:`TorchvisionTrainer`.
"""

from __future__ import annotations

from alloop.device import resolve_device
from alloop.trainers.torchvision.checkpoints import CHECKPOINT_FORMAT, load_detector
from alloop.trainers.torchvision.config import TorchvisionConfig
from alloop.trainers.torchvision.models import MODELS
from alloop.trainers.torchvision.trainer import TorchvisionTrainer

__all__ = [
    "CHECKPOINT_FORMAT",
    "MODELS",
    "TorchvisionConfig",
    "TorchvisionTrainer",
    "load_detector",
    "resolve_device",
]
