"""Stream images through a feature network in batches: paths in, (N, D) L2-normalised float32 out.

Only one batch of pixels is in memory at a time; the output array is the only thing that grows
with the pool (N x D x 4 bytes). Every embedder uses this, so preprocessing is identical for all:
the whole image, EXIF-oriented, resized to a square of ``image_size`` (no crop, so objects near
the border still count), scaled to [0, 1] and normalised with a mean/std (ImageNet by default).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from alloop.errors import EmbedError
from alloop.images import DECODE_ERRORS, open_rgb, sha256_of

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# At most this many input pixels per batch (32 images of 384 px); bigger images get smaller batches.
MAX_BATCH_PIXELS = 32 * 384 * 384

# Part of every embedder key: bump it when the preprocessing below changes, so cached vectors
# made the old way are not mixed with new ones.
PREPROCESS_VERSION = "square-bilinear-exif-1"

class ImageStream(Dataset):
    """Images as (3, S, S) uint8 tensors, with the index and an error message ('' when fine).

    A decode error is returned rather than raised so that it reaches the main process as one clean
    line naming the file, also from DataLoader worker processes.
    """

    def __init__(self, paths: Sequence[Path], image_size: int):
        self.paths = [Path(p) for p in paths]
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        size = self.image_size
        try:
            img = open_rgb(self.paths[index], size).resize((size, size), Image.BILINEAR)
        except DECODE_ERRORS as exc:
            blank = torch.zeros((3, size, size), dtype=torch.uint8)
            return blank, index, f"{exc}".replace("\n", " ") or type(exc).__name__
        pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        return pixels, index, ""


def embed_images(
    images: Sequence[Path],
    features: Callable[[torch.Tensor], torch.Tensor],
    *,
    image_size: int,
    batch_size: int,
    device: str,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "embed",
) -> np.ndarray:
    """Run ``features`` (normalised (B, 3, S, S) float batch -> (B, D)) over the images; rows L2-normalised.

    ``batch_size`` is lowered for large ``image_size`` so a batch holds at most MAX_BATCH_PIXELS pixels.
    """
    if batch_size < 1:
        raise EmbedError(f"batch size must be >= 1, got {batch_size}")
    # Large inputs (a detector at 800 px) hold GBs of feature maps per batch: cap the pixels.
    batch_size = max(1, min(batch_size, MAX_BATCH_PIXELS // (image_size * image_size)))
    paths = [Path(p) for p in images]
    dev = torch.device(device)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.to(dev, non_blocking=True).float() / 255.0 - mean_t) / std_t
        # NHWC: oneDNN's convolutions run 1.3-1.6x faster on it on CPU (see benchmarks/RESULTS.md).
        x = x.contiguous(memory_format=torch.channels_last)
        out = features(x)
        if out.ndim != 2:
            raise EmbedError(f"feature network returned shape {tuple(out.shape)}; expected (batch, dim)")
        return out.float()

    if not paths:
        with torch.inference_mode():
            dim = forward(torch.zeros((1, 3, image_size, image_size), dtype=torch.uint8)).shape[1]
        return np.zeros((0, dim), dtype=np.float32)

    loader = DataLoader(
        ImageStream(paths, image_size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=dev.type == "cuda",
    )
    out: np.ndarray | None = None
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=None if progress else True)
    with torch.inference_mode(), bar:
        for pixels, index, errors in loader:
            for i, err in zip(index.tolist(), errors):
                if err:
                    raise EmbedError(
                        f"{paths[i]}: cannot decode image ({err}); run `alloop doctor` to find it"
                    )
            vectors = forward(pixels)
            norms = vectors.norm(dim=1, keepdim=True)
            bad = ~torch.isfinite(norms.squeeze(1)) | (norms.squeeze(1) == 0)
            if bool(bad.any()):
                first = paths[int(index[int(bad.nonzero()[0])])]
                raise EmbedError(
                    f"{first}: the embedding is zero or not finite; "
                    "the weights are broken or the image is blank"
                )
            vectors = (vectors / norms).cpu().numpy()
            if out is None:
                out = np.empty((len(paths), vectors.shape[1]), dtype=np.float32)
            out[index.numpy()] = vectors
            bar.update(len(index))
    assert out is not None
    return out


def fingerprint(*parts: Any) -> str:
    """A short, stable hex digest of JSON-able parts (config values, file digests)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# One hashing function for the whole project (images, weights files, checkpoints).
file_sha256 = sha256_of
