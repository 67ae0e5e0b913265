"""A third-party alloop trainer plugin, as an outside package would ship one (used by the tests).

"meanbox" learns, per class, the mean box of the training labels in normalised image
coordinates and predicts it on every image with a score equal to the share of training images
holding that class. A real (if weak) detector baseline in a few lines: enough to show that a
plugin registered under the ``alloop.trainers`` entry-point group is listed and drives a step.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from alloop.boxes import Detections
from alloop.trainers import TrainResult


@dataclass(frozen=True)
class MeanBoxConfig:
    """Options of the meanbox trainer."""

    min_score: float = 0.0  # predictions below this score are dropped


class MeanBoxTrainer:
    """Predicts each class's mean training box."""

    name = "meanbox"
    Config = MeanBoxConfig

    def __init__(self, config: MeanBoxConfig, classes, device: str = "cpu") -> None:
        self.config, self.classes = config, list(classes)

    def train(self, train, val, out_dir: Path, *, resume_from=None, seed: int = 0, progress: bool = True):
        sums = np.zeros((len(self.classes), 4))
        counts = np.zeros(len(self.classes))
        images_with = np.zeros(len(self.classes))
        for ex in train:
            a = ex.annotation
            seen = set()
            for b in a.boxes:
                k = self.classes.index(b.label)
                sums[k] += (b.x0 / a.width, b.y0 / a.height, b.x1 / a.width, b.y1 / a.height)
                counts[k] += 1
                seen.add(k)
            for k in seen:
                images_with[k] += 1
        model = {
            "classes": self.classes,
            "boxes": (sums / np.maximum(counts, 1)[:, None]).tolist(),
            "scores": (images_with / max(len(train), 1)).tolist(),
            "config": asdict(self.config),
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = out_dir / "meanbox.json"
        ckpt.write_text(json.dumps(model))
        return TrainResult(checkpoint=ckpt, epochs=1, steps=len(train))

    def predict(self, checkpoint: Path, images, *, score_threshold=None, hflip: bool = False, progress: bool = True):
        model = json.loads(Path(checkpoint).read_text())
        c = len(model["classes"])
        out = []
        for path in images:
            with Image.open(path) as img:
                w, h = img.size
            keep = [k for k in range(c) if model["scores"][k] > self.config.min_score]
            boxes = np.array([[b[0] * w, b[1] * h, b[2] * w, b[3] * h] for b in (model["boxes"][k] for k in keep)],
                             np.float32).reshape(-1, 4)
            if hflip:
                boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
            scores = np.array([model["scores"][k] for k in keep], np.float32)
            probs = np.zeros((len(keep), c + 1), np.float32)
            for i, k in enumerate(keep):
                probs[i, k + 1], probs[i, 0] = scores[i], 1 - scores[i]
            out.append(Detections(boxes, np.array(keep, np.int64), scores, probs, scores.copy()))
        return out
