"""pgkeep worker."""

from __future__ import annotations

import signal
import threading

import typer

from pgkeep.cli.main import app, err_console, state
from pgkeep.errors import EXIT_CODES_HELP
from pgkeep.observability.logs import configure as configure_logging
from pgkeep.scheduler.worker import Worker


@app.command(epilog=EXIT_CODES_HELP)
def worker(ctx: typer.Context) -> None:
    """Run the scheduled jobs (daily backup and cleanup, weekly restore drill by default; physical
    backups when PGKEEP_PHYSICAL_BACKUP_CRON / PGKEEP_PHYSICAL_INCREMENTAL_CRON are set) until stopped."""
    configure_logging()
    context = state(ctx).context()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    running = Worker(context)
    running.start()
    err_console.print("pgkeep worker running; stop with SIGTERM or Ctrl-C")
    try:
        stop.wait()
    finally:
        running.stop()
