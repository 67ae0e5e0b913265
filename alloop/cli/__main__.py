"""``python -m alloop.cli``: the same as the ``alloop`` command."""

from alloop.cli import main

main()
