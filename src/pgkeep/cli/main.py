"""Entry point: the typer app, shared options, and error-to-exit-code mapping.

Domain code raises :class:`PgkeepError`; only here is it turned into one
clear line on stderr and a documented exit code. No tracebacks for users
(set PGKEEP_DEBUG=1 to see them).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn

import click
import typer
from rich.console import Console

from pgkeep.config import load_settings
from pgkeep.errors import EXIT_CODES_HELP, ExitCode, PgkeepError, Terminated

if TYPE_CHECKING:
    from pgkeep.services.context import Context

app = typer.Typer(
    name="pgkeep",
    help="Backup and recovery for PostgreSQL.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Catalog database maintenance.\n\n" + EXIT_CODES_HELP, no_args_is_help=True)
app.add_typer(db_app, name="db")

# typer >= 0.20 bundles its own copy of click: its usage errors, Exit and Abort are
# not click's classes, so both kinds are caught (on older typer they are the same).
_EXIT_ERRORS = (click.exceptions.Exit, typer.Exit)
_USAGE_ERRORS = (click.ClickException, getattr(typer, "TyperException", click.ClickException))
_ABORTS = (click.Abort, typer.Abort, KeyboardInterrupt)

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


class State:
    """Lazily built service context, so `--help` and bad arguments need no configuration."""

    def __init__(self) -> None:
        self._ctx: Context | None = None

    def context(self, *, check_schema: bool = True) -> Context:
        if self._ctx is None:
            # Imported here: the catalog (SQLAlchemy) costs every process a few hundred ms,
            # and wal-push / wal-fetch run once per WAL file without it.
            from pgkeep.services.context import Context

            self._ctx = Context.build(load_settings(), check_schema=check_schema)
        return self._ctx

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


@app.callback()
def _root(ctx: typer.Context) -> None:
    ctx.obj = State()
    ctx.call_on_close(ctx.obj.close)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, code: ExitCode) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False)
    return typer.Exit(int(code))


def run() -> None:
    """Console-script entry point (the process exits here: see :func:`_exit_now`)."""
    try:
        _run()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if sys.argv[1:2] == ["wal-fetch"] and code not in (0, 1):
            # As restore_command, every exit status but 0 and 1 must be above 125 (PostgreSQL
            # then aborts recovery): a usage error (2) would read as "end of the archive".
            code = 128
        _exit_now(code)
    _exit_now(0)


def _exit_now(code: int) -> None:
    """Exit without tearing the interpreter down.

    Freeing every module and object at exit took 0.2 s after a backup (as
    long as the catalog work of the whole backup); archive_command and
    restore_command pay it per WAL segment. Everything an ordinary exit does
    that matters still happens, in its order: non-daemon threads are joined
    (and idle executors released), atexit handlers run (logging, temporary
    directories, dev servers), stdout and stderr are flushed. What is
    skipped holds nothing: every catalog commit is durable when it returns,
    and the connections are closed by the kernel.
    """
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say there
            if code == 0:
                code = int(ExitCode.FAILED)
    os._exit(code)


# The module that registers each command (pgkeep.cli.wal's are always registered). A
# command's process imports only its own module: archive_command and restore_command
# start one process per WAL file, and a backup should not pay for the API's imports.
# Anything else (no command, --help, a typo) registers every command.
_COMMAND_MODULES = {
    **dict.fromkeys(("backup", "list", "show", "verify", "delete", "cleanup", "keep"), "backups"),
    "restore": "restore",
    "check": "check",
    "admin": "admin",
    "catalog": "catalog",
    "db": "db",
    "demo": "demo",
    "serve": "serve",
    "worker": "worker",
    **dict.fromkeys(("wal-push", "wal-push-ahead", "wal-fetch", "wal-fetch-ahead", "archive"), "wal"),
}
_ALL_MODULES = ("backups", "restore", "check", "admin", "catalog", "db", "demo", "serve", "worker")


def _register_commands(argv: list[str]) -> None:
    import importlib

    importlib.import_module("pgkeep.cli.wal")
    name = _COMMAND_MODULES.get(argv[1]) if len(argv) > 1 else None
    for module in (name,) if name else _ALL_MODULES:
        importlib.import_module(f"pgkeep.cli.{module}")


# Commands that keep SIGTERM as it is: PostgreSQL tells its own shutdown from
# an archive_command or restore_command killed by SIGTERM (wal-push, wal-fetch),
# and serve and worker shut down gracefully on it themselves.
_OWN_SIGTERM = frozenset({"wal-push", "wal-fetch", "archive", "serve", "worker"})


_signalled: list[int] = []  # SIGTERM, once received (typer hides the interrupt's cause)


def raise_terminated(signum: int, frame: object) -> None:
    _signalled.append(signum)
    raise Terminated


def _aborted() -> NoReturn:
    """Exit after an interrupt: Ctrl-C (130) or SIGTERM (143), once the clean-up ran."""
    if _signalled:
        err_console.print("error: terminated (SIGTERM)")
        sys.exit(128 + signal.SIGTERM)
    err_console.print("error: interrupted")
    sys.exit(130)


def _run() -> None:
    _register_commands(sys.argv)
    if sys.argv[1:2] and sys.argv[1] not in _OWN_SIGTERM:
        # A supervisor's stop (systemd, cron's timeout, Kubernetes) aborts a backup or
        # restore the way Ctrl-C does: children killed, partial files and uploads
        # removed, the row marked FAILED, a restore rolled back.
        signal.signal(signal.SIGTERM, raise_terminated)

    # Commands report errors themselves, as one line; log records stay quiet
    # unless a long-running command (worker, serve) configures logging.
    logging.getLogger("pgkeep").addHandler(logging.NullHandler())
    command = typer.main.get_command(app)
    try:
        rv = command.main(prog_name="pgkeep", standalone_mode=False)
        if rv == 130:  # typer's answer to a KeyboardInterrupt (or Terminated)
            _aborted()
        sys.exit(rv if isinstance(rv, int) else 0)
    except PgkeepError as exc:
        err_console.print(f"error: {exc}", markup=False)
        sys.exit(int(exc.exit_code))
    except _EXIT_ERRORS as exc:
        sys.exit(exc.exit_code)
    except _USAGE_ERRORS as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except _ABORTS:
        _aborted()
    except Exception as exc:
        if os.environ.get("PGKEEP_DEBUG"):
            raise
        err_console.print(
            f"error: internal error: {type(exc).__name__}: {exc} (set PGKEEP_DEBUG=1 for details)",
            markup=False,
        )
        sys.exit(int(ExitCode.FAILED))
