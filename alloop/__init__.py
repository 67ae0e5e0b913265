"""alloop: an offline active-learning loop for object detection."""

__version__ = "0.1.0"
