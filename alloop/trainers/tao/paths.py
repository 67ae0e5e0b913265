"""Which host paths can be handed to TAO's container.

Every path alloop gives TAO passes through two ``bash -c`` layers: the launcher runs
``bash -c '<docker exec … task args>'`` with ``shell=True`` (``docker_handler.py``), and TAO's
entrypoint inside the container runs ``bash -c '<env> python <task> <args>'`` through ``shlex.split``
(``entrypoint.py``); ``docker run -v SRC:DST`` splits on ``:``. No quoting survives both layers
for every character, so alloop refuses any path with a character outside a plain set instead.
"""

from __future__ import annotations

import re
from pathlib import Path

from alloop.errors import TrainerError

# Letters and digits (any script), "_", and the punctuation bash and docker -v leave alone.
SAFE_CHARS = "letters, digits and _ . / - + , = @ %"
UNSAFE_CHAR = re.compile(r"[^\w./+,=@%-]")


def check_tao_path(path: Path, what: str) -> None:
    """Raise TrainerError naming the path and its first unsafe character when TAO cannot take it."""
    m = UNSAFE_CHAR.search(str(path))
    if m:
        raise TrainerError(
            f"{what} path {str(path)!r} contains {m.group()!r}, which TAO's launcher and container "
            f"entrypoint pass through `bash -c` and would split or reinterpret; move or rename it to a "
            f"path of only {SAFE_CHARS}"
        )
