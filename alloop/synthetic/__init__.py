"""A synthetic orchard: apple images with COCO ground truth, deterministic by seed.

Stands in for MinneApple in tests, the demo and the label-efficiency benchmarks. ``scenes`` holds the
scene types and families (what each kind of photo looks like and holds), ``layout`` where apples,
leaves and branches go, ``paint`` how they are rendered, ``generate`` the pool and its COCO file.
"""

from alloop.synthetic.generate import Orchard, generate_orchard
from alloop.synthetic.scenes import (
    CULTIVAR_SCENES,
    EMPTY_FRACTION,
    FAMILIES,
    IMAGES_PER_ROW,
    JPEG_QUALITY,
    MIN_BOX_SIDE,
    MIN_VISIBLE_FRACTION,
    SCENES,
    Family,
    Scene,
)

__all__ = [
    "CULTIVAR_SCENES",
    "EMPTY_FRACTION",
    "FAMILIES",
    "IMAGES_PER_ROW",
    "JPEG_QUALITY",
    "MIN_BOX_SIDE",
    "MIN_VISIBLE_FRACTION",
    "SCENES",
    "Family",
    "Orchard",
    "Scene",
    "generate_orchard",
]
