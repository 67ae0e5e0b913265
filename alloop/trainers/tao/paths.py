"""Which host paths can be handed to TAO's container."""

from __future__ import annotations

import re
from pathlib import Path

from alloop.errors import TrainerError

UNSAFE_PATH = re.compile(r"[\s'\"\\$`]")


def check_tao_path(path: Path, what: str) -> None:
    # TAO joins its arguments into a `bash -c '...'` string inside the container and re-splits them.
    if UNSAFE_PATH.search(str(path)):
        raise TrainerError(
            f"{what} path {str(path)!r} contains a space, quote or shell character, which TAO's container "
            "entrypoint cannot pass through; move the project (or file) to a plain path"
        )

