"""Images and targets for the torchvision trainer: loading (:mod:`alloop.images`), box checks, augmentation.

Every box conversion for training happens here: an :class:`Example`'s boxes (xyxy, absolute
pixels, class names) become torchvision targets (float32 xyxy, int64 labels 1..C, 0 being
background), clipped to the image, degenerate ones dropped. An image without boxes is a valid
negative (empty targets).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alloop.errors import TrainerError
from alloop.images import load_rgb
from alloop.trainers.base import Example
from alloop.trainers.torchvision.detect import hflip_boxes

Target = dict[str, torch.Tensor]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB → uint8 CHW tensor (converted to float on the device, which is cheaper to move)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def example_targets(examples: Sequence[Example], classes: Sequence[str]) -> list[Target]:
    """torchvision targets for ``examples``; unknown classes and missing files are errors up front.

    Boxes are clipped to their image and dropped when nothing of them is left.
    """
    index = {name: k + 1 for k, name in enumerate(classes)}
    targets = []
    for ex in examples:
        ann = ex.annotation
        if not Path(ex.path).is_file():
            raise TrainerError(
                f"{ex.path}: image file not found (label {ann.file_name}); restore it or drop its label"
            )
        rows, labels = [], []
        for box in ann.boxes:
            if box.label not in index:
                raise TrainerError(
                    f"{ann.file_name}: class '{box.label}' is not one of the project's classes "
                    f"({', '.join(classes)}); add it to the project or fix the label"
                )
            x0, x1 = min(max(box.x0, 0.0), ann.width), min(max(box.x1, 0.0), ann.width)
            y0, y1 = min(max(box.y0, 0.0), ann.height), min(max(box.y1, 0.0), ann.height)
            if x1 - x0 < 1e-3 or y1 - y0 < 1e-3:
                continue  # torchvision rejects degenerate boxes
            rows.append((x0, y0, x1, y1))
            labels.append(index[box.label])
        targets.append(
            {
                "boxes": torch.tensor(rows, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(labels, dtype=torch.int64),
            }
        )
    return targets


class ExampleImages(torch.utils.data.Dataset):
    """Labeled examples as (uint8 CHW image, target); decoding only, no randomness (workers-safe)."""

    def __init__(self, examples: Sequence[Example], targets: Sequence[Target]) -> None:
        self.examples = list(examples)
        self.targets = list(targets)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        ex = self.examples[i]
        image = load_rgb(ex.path, expect=(ex.annotation.width, ex.annotation.height))
        return to_tensor(image), self.targets[i]


class PathImages(torch.utils.data.Dataset):
    """Unlabeled images as uint8 CHW tensors, optionally checked against an expected size."""

    def __init__(self, paths: Sequence[Path], sizes: Sequence[tuple[int, int] | None] | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.sizes = list(sizes) if sizes is not None else [None] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_tensor(load_rgb(self.paths[i], expect=self.sizes[i]))


def collate(batch: list) -> tuple:
    """Keep images of different sizes as lists (the detector batches them itself)."""
    return tuple(zip(*batch)) if batch and isinstance(batch[0], tuple) else (list(batch),)


def hflip(image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
    """Mirror an image and its boxes left-right."""
    return image.flip(-1), {**target, "boxes": hflip_boxes(target["boxes"], image.shape[-1])}


__all__ = [
    "ExampleImages",
    "PathImages",
    "Target",
    "collate",
    "example_targets",
    "hflip",
    "to_tensor",
]
