"""A plain list of a batch's images, for any labeling tool alloop has no format for.

``images.txt`` holds absolute paths, one a line (what most tools' "import from list" takes);
``names.txt`` the same images relative to the image root (the names alloop resolves on import).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alloop import atomic
from alloop.formats.records import BatchItem


def sniff(path: Path) -> bool:
    """A file list is never a label file."""
    return False


def write_batch(items: Sequence[BatchItem], out_dir: Path, **_: object) -> Path:
    """``images.txt`` (absolute) and ``names.txt`` (relative); returns images.txt."""
    atomic.write_text(out_dir / "names.txt", "".join(f"{it.file_name}\n" for it in items))
    path = out_dir / "images.txt"
    atomic.write_text(path, "".join(f"{Path(it.path).resolve()}\n" for it in items))
    return path
