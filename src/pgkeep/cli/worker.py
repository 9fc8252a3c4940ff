"""pgkeep worker."""

from __future__ import annotations

import contextlib
import signal
import threading

import typer

from pgkeep.errors import EXIT_CODES_HELP, PgkeepError
from pgkeep.observability.logs import configure as configure_logging
from pgkeep.scheduler.worker import Worker
from pgkeep.services.recovery import recover_interrupted

from pgkeep.cli.main import app, err_console, state


def start_worker(context) -> Worker:  # type: ignore[no-untyped-def]
    """Recover interrupted backups, catch up on a missed tick, start the schedule."""
    with contextlib.suppress(PgkeepError):
        for backup_id in recover_interrupted(context):
            err_console.print(f"marked interrupted backup {backup_id} FAILED")
    worker = Worker(context)
    worker.start()
    return worker


@app.command(epilog=EXIT_CODES_HELP)
def worker(ctx: typer.Context) -> None:
    """Run the scheduled jobs (daily backup and cleanup by default) until stopped."""
    configure_logging()
    context = state(ctx).context()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    running = start_worker(context)
    err_console.print("pgkeep worker running; stop with SIGTERM or Ctrl-C")
    try:
        stop.wait()
    finally:
        running.stop()
