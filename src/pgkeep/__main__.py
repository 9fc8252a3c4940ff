"""``python -m pgkeep``: the same as the ``pgkeep`` command."""

from pgkeep.cli.entry import run

run()
