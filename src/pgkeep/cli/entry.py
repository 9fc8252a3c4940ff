"""The ``pgkeep`` console script: archive_command's quick path first, then the full CLI.

``pgkeep wal-push --spool DIR %p`` for a file the pusher has stored is
answered here, before typer, pydantic and the rest are imported (they cost
archive_command more than the check itself): see :mod:`pgkeep.cli.quickpush`.
"""

from __future__ import annotations

import os
import sys


def run() -> None:
    if sys.argv[1:2] == ["wal-push"]:
        from pgkeep.cli.quickpush import quick_push

        code = quick_push(sys.argv[2:], os.environ)
        if code is not None:
            sys.stderr.flush()
            os._exit(code)
    from pgkeep.cli.main import run as run_cli

    run_cli()
