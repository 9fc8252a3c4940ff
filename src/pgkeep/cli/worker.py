"""pgkeep worker."""

from __future__ import annotations

import signal
import threading

import typer

from pgkeep.cli.main import app, err_console, raise_terminated, state
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
    running = Worker(context)
    # Until the schedule runs, a stop aborts what start() is doing (crash recovery, a missed
    # tick's backup, which may wait on a lock for long) as it aborts `pgkeep backup`: cleaned
    # up, exit 143 (SIGINT: KeyboardInterrupt, 130). It was ignored until start() returned.
    signal.signal(signal.SIGTERM, raise_terminated)
    running.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    err_console.print("pgkeep worker running; stop with SIGTERM or Ctrl-C")
    try:
        stop.wait()
    finally:
        running.stop()
