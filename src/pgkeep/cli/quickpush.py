"""archive_command's quick path: ``pgkeep wal-push --spool DIR %p`` when the pusher stored the file.

Runs before the rest of the CLI is imported (see :mod:`pgkeep.cli.entry`):
the standard library and ``wal.spool`` only, so an archived segment costs
the interpreter's start, one status file and one SHA-256 of the segment
instead of a full wal-push. When the spool has no status for the file, it
starts the pusher (``pgkeep wal-push-ahead``, in its own session) if none
runs, and waits for the status.

It answers only "archived" (exit 0) and "gave up waiting" (exit 1). Every
other case (odd arguments, no status, an error status, a status for other
bytes or other settings, a pusher that ended without a word) returns None,
and the ordinary ``wal-push`` runs: it validates the arguments, pushes the
file itself and reports its own errors.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pgkeep.wal.patterns import WAL_FILE
from pgkeep.wal.spool import LOG, Spool, Status, file_sha256, settings_key

if TYPE_CHECKING:
    import subprocess

PUSH_DEADLINE_S = 60.0  # wal-push's default --timeout
DEFAULT_JOBS = 2
LOG_ROTATE_BYTES = 1 << 20
_VALUED = ("--config", "--timeout", "--spool", "--jobs")


@dataclass(frozen=True)
class QuickArgs:
    path: Path
    spool: Path
    config: Path | None = None
    timeout: float = PUSH_DEADLINE_S
    jobs: int = DEFAULT_JOBS


def parse(args: Sequence[str]) -> QuickArgs | None:
    """wal-push's arguments (after ``wal-push``), if they are plain and name a spool."""
    values: dict[str, str] = {}
    positional: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
        elif arg in _VALUED:
            name, value = arg, next(rest, "")
        elif arg.startswith("-"):
            return None  # --help, --, anything else: the full CLI
        else:
            positional.append(arg)
            continue
        if name not in _VALUED or not value:
            return None
        values[name] = value
    if len(positional) != 1 or "--spool" not in values:
        return None
    try:
        timeout = float(values.get("--timeout", PUSH_DEADLINE_S))
        jobs = int(values.get("--jobs", DEFAULT_JOBS))
    except ValueError:
        return None
    if not (timeout >= 0 and 1 <= jobs <= 64):  # the full CLI's limits (and its messages)
        return None
    config = Path(values["--config"]) if "--config" in values else None
    return QuickArgs(Path(positional[0]), Path(values["--spool"]), config, timeout, jobs)


def quick_push(args: Sequence[str], environ: Mapping[str, str], *, poll: float = 0.005) -> int | None:
    """0 if the pusher stored this very file under these settings; 1 if it did
    not answer within --timeout; None: let the ordinary wal-push run."""
    parsed = parse(args)
    if parsed is None or not WAL_FILE.match(parsed.path.name):
        return None
    spool = Spool(parsed.spool)
    file = parsed.path.name
    try:
        spool.prepare()
        status = spool.status(file)
        if status is None:
            status = _wait(spool, parsed, poll)
        if status is not None and status.confirms(file_sha256(parsed.path), settings_key(parsed.config, environ)):
            return 0
    except _GaveUp:
        sys.stderr.write(
            f"error: wal-push {file}: gave up after {parsed.timeout:g} s waiting for the pusher "
            f"(see {spool.root / LOG}; PostgreSQL keeps the file and retries)\n"
        )
        return 1
    except OSError:
        pass  # an unreadable spool or file: the ordinary push says what is wrong
    return None


class _GaveUp(Exception):
    """The pusher did not record the file within --timeout."""


def _wait(spool: Spool, parsed: QuickArgs, poll: float) -> Status | None:
    """The file's status once the pusher records it; None if no pusher is left to
    record it. Raises _GaveUp after the timeout."""
    child = None if spool.pusher_running() else start_pusher(spool, parsed)
    pg_wal = parsed.path.resolve().parent
    serving = spool.serving()
    if child is None and serving is not None and serving != pg_wal:
        sys.stderr.write(
            f"warning: wal-push {parsed.path.name}: the spool {spool.root} serves another cluster's WAL "
            f"({serving}); pushing synchronously. Give each cluster its own --spool.\n"
        )
        return None
    deadline = time.monotonic() + parsed.timeout if parsed.timeout > 0 else float("inf")
    checks = 0
    while True:
        status = spool.status(parsed.path.name)
        if status is not None:
            return status
        checks += 1
        if checks % 20 == 0 and (child is None or child.poll() is not None) and not spool.pusher_running():
            # The pusher is gone. One that was ending as the file became ready is
            # replaced once; after that, the ordinary push takes over.
            status = spool.status(parsed.path.name)
            if status is not None or child is not None:
                return status
            child = start_pusher(spool, parsed)
        if time.monotonic() >= deadline:
            raise _GaveUp
        time.sleep(poll)


def start_pusher(spool: Spool, parsed: QuickArgs) -> subprocess.Popen[bytes]:
    """``pgkeep wal-push-ahead`` for the directory of ``%p``, detached (its own session)."""
    import subprocess

    argv = [sys.executable, "-m", "pgkeep", "wal-push-ahead", "--spool", str(spool.root.resolve())]
    argv += ["--jobs", str(parsed.jobs), "--timeout", str(parsed.timeout)]
    if parsed.config is not None:
        argv += ["--config", str(parsed.config.resolve())]
    argv.append(str(parsed.path.resolve().parent))
    log_path = spool.root / LOG
    with contextlib.suppress(FileNotFoundError):
        if log_path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log_path, log_path.with_name(LOG + ".1"))  # one old generation is kept
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=dict(os.environ)
        )
