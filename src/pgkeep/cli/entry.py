"""The ``pgkeep`` console script: the WAL commands' quick paths first, then the full CLI.

``pgkeep wal-push --spool DIR %p`` for a file the pusher has stored, and
``pgkeep wal-fetch --spool DIR %f %p`` for a segment the fetcher has
prefetched, are answered here, before typer, pydantic and the rest are
imported (they cost more than the work itself): see :mod:`pgkeep.cli.quick`.
"""

from __future__ import annotations

import os
import sys


def run() -> None:
    if sys.argv[1:2] in (["wal-push"], ["wal-fetch"]):
        from pgkeep.cli.quick import quick_fetch, quick_push

        quick = quick_push if sys.argv[1] == "wal-push" else quick_fetch
        code = quick(sys.argv[2:], os.environ)
        if code is not None:
            sys.stderr.flush()
            os._exit(code)
    from pgkeep.cli.main import run as run_cli

    run_cli()
