"""The quick paths of archive_command and restore_command, when a spool is given.

``pgkeep wal-push --spool DIR %p``: if the pusher stored this file, exit 0.
``pgkeep wal-fetch --spool DIR %f %p``: if the fetcher prefetched this
segment, move it to %p and exit 0.

They run before the rest of the CLI is imported (see :mod:`pgkeep.cli.entry`):
the standard library and ``wal.spool`` only, so a segment costs the
interpreter's start, one status file and one SHA-256 of the segment instead
of a full push or fetch. When the spool has no status for the file, the
worker (``pgkeep wal-push-ahead`` or ``wal-fetch-ahead``, in its own session)
is started if none runs, and the status waited for.

Besides "done" (exit 0), the only answer of their own is wal-push's "gave up
waiting" (exit 1). Every other case (odd arguments, no status, an error
status, a status for other bytes or other settings, a worker that ended
without a word, a timeout while fetching) returns None, and the ordinary
command runs: it validates the arguments, does the work itself and reports
its own errors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pgkeep.wal.patterns import SEGMENT_FILE, WAL_FILE
from pgkeep.wal.spool import FETCHER, PUSHER, Spool, Status, file_sha256, settings_key

if TYPE_CHECKING:
    import subprocess

PUSH_DEADLINE_S = 60.0  # wal-push's default --timeout
FETCH_WAIT_S = 60.0  # then wal-fetch fetches the segment itself
DEFAULT_JOBS = 2
LOG_ROTATE_BYTES = 1 << 20


@dataclass(frozen=True)
class QuickArgs:
    path: Path  # wal-push's %p; wal-fetch's %p (the destination)
    spool: Path
    config: Path | None = None
    timeout: float = PUSH_DEADLINE_S
    jobs: int = DEFAULT_JOBS
    file: str = ""  # wal-fetch's %f


def _options(args: Sequence[str], valued: tuple[str, ...]) -> tuple[dict[str, str], list[str]] | None:
    values: dict[str, str] = {}
    positional: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
        elif arg in valued:
            name, value = arg, next(rest, "")
        elif arg.startswith("-"):
            return None  # --help, --, anything else: the full CLI
        else:
            positional.append(arg)
            continue
        if name not in valued or not value:
            return None
        values[name] = value
    return values, positional


def parse(args: Sequence[str], *, fetch: bool = False) -> QuickArgs | None:
    """wal-push's (or wal-fetch's) arguments, after the command name, if they are plain
    and name a spool."""
    valued = ("--config", "--spool", "--jobs") if fetch else ("--config", "--timeout", "--spool", "--jobs")
    found = _options(args, valued)
    if found is None:
        return None
    values, positional = found
    if len(positional) != (2 if fetch else 1) or "--spool" not in values:
        return None
    try:
        timeout = float(values.get("--timeout", FETCH_WAIT_S if fetch else PUSH_DEADLINE_S))
        jobs = int(values.get("--jobs", DEFAULT_JOBS))
    except ValueError:
        return None
    if not (timeout >= 0 and 1 <= jobs <= 64):  # the full CLI's limits (and its messages)
        return None
    config = Path(values["--config"]) if "--config" in values else None
    file = positional[0] if fetch else ""
    return QuickArgs(Path(positional[-1]), Path(values["--spool"]), config, timeout, jobs, file)


# --- archive_command ----------------------------------------------------------------------------


def quick_push(args: Sequence[str], environ: Mapping[str, str], *, poll: float = 0.005) -> int | None:
    """0 if the pusher stored this very file under these settings; 1 if it did
    not answer within --timeout; None: let the ordinary wal-push run."""
    parsed = parse(args)
    if parsed is None or not WAL_FILE.match(parsed.path.name):
        return None
    spool = Spool(parsed.spool, PUSHER)
    file = parsed.path.name
    try:
        spool.prepare()
        status = spool.status(file)
        if status is None:
            if spool.worker_running() and _serves_another(spool, parsed):
                return None
            status = _wait(spool, file, lambda: start_pusher(spool, parsed), parsed.timeout, poll)
        if status is not None and status.confirms(file_sha256(parsed.path), settings_key(parsed.config, environ)):
            return 0
    except _GaveUp:
        sys.stderr.write(
            f"error: wal-push {file}: gave up after {parsed.timeout:g} s waiting for the pusher "
            f"(see {spool.log_path}; PostgreSQL keeps the file and retries)\n"
        )
        return 1
    except OSError as exc:
        _unusable(spool, f"wal-push {file}", exc, "pushing")
    return None


def _unusable(spool: Spool, what: str, exc: OSError, doing: str) -> None:
    """Say (in the server's log) why the spool was not used; the ordinary command runs."""
    reason = exc.strerror or type(exc).__name__
    where = f": {exc.filename}" if exc.filename else ""
    sys.stderr.write(f"warning: {what}: the spool {spool.root} cannot be used ({reason}{where}); {doing} directly\n")


def _serves_another(spool: Spool, parsed: QuickArgs) -> bool:
    serving = spool.serving()
    if serving is None or serving == parsed.path.resolve().parent:
        return False
    sys.stderr.write(
        f"warning: wal-push {parsed.path.name}: the spool {spool.root} serves another cluster's WAL "
        f"({serving}); pushing synchronously. Give each cluster its own --spool.\n"
    )
    return True


def start_pusher(spool: Spool, parsed: QuickArgs) -> subprocess.Popen[bytes]:
    """``pgkeep wal-push-ahead`` for the directory of ``%p``, detached (its own session)."""
    argv = ["wal-push-ahead", "--jobs", str(parsed.jobs), "--timeout", str(parsed.timeout)]
    return _start_worker(spool, parsed, [*argv, str(parsed.path.resolve().parent)])


# --- restore_command ----------------------------------------------------------------------------


def quick_fetch(args: Sequence[str], environ: Mapping[str, str], *, poll: float = 0.005) -> int | None:
    """0 once the prefetched segment (its SHA-256 and settings confirmed) is at %p;
    None: let the ordinary wal-fetch run (also for anything but a segment)."""
    parsed = parse(args, fetch=True)
    if parsed is None or not SEGMENT_FILE.match(parsed.file):
        return None  # history and backup files are few and small: the ordinary fetch
    spool = Spool(parsed.spool, FETCHER)
    file = parsed.file
    try:
        spool.prepare()
        status = spool.status(file)
        content = spool.content(file)
        if status is not None and status.ok and not content.exists():
            spool.forget(file)  # handed over already: PostgreSQL asks again (it does as recovery ends)
            status = None
        spool.want(file)
        if status is None:
            status = _wait(spool, file, lambda: start_fetcher(spool, parsed), parsed.timeout, poll)
        if status is None or not status.ok:
            return None  # the ordinary fetch: it knows how to say what is wrong
        if not status.confirms(file_sha256(content), settings_key(parsed.config, environ)):
            return None
        _move(content, parsed.path)  # the status stays: "handed over" (the fetcher clears it later)
        return 0
    except _GaveUp:
        return None
    except OSError as exc:
        _unusable(spool, f"wal-fetch {file}", exc, "fetching")
        return None


def _move(source: Path, dest: Path) -> None:
    try:
        os.replace(source, dest)
    except OSError:  # another file system (EXDEV), or a dest PostgreSQL left behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dest)
        shutil.copyfile(source, dest)


def start_fetcher(spool: Spool, parsed: QuickArgs) -> subprocess.Popen[bytes]:
    """``pgkeep wal-fetch-ahead``, detached (its own session)."""
    return _start_worker(spool, parsed, ["wal-fetch-ahead", "--jobs", str(parsed.jobs)])


# --- shared -------------------------------------------------------------------------------------


class _GaveUp(Exception):
    """The worker did not record the file within the timeout."""


def _wait(
    spool: Spool, file: str, start: Callable[[], subprocess.Popen[bytes]], timeout: float, poll: float
) -> Status | None:
    """The file's status once the worker records it; None if no worker is left to
    record it. Raises _GaveUp after ``timeout`` seconds (0: no limit)."""
    child = None if spool.worker_running() else start()
    deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
    checks = 0
    while True:
        status = spool.status(file)
        if status is not None:
            return status
        checks += 1
        if checks % 20 == 0 and (child is None or child.poll() is not None) and not spool.worker_running():
            # The worker is gone. One that was ending as the file came up is
            # replaced once; after that, the ordinary command takes over.
            status = spool.status(file)
            if status is not None or child is not None:
                return status
            child = start()
        if time.monotonic() >= deadline:
            raise _GaveUp
        time.sleep(poll)


def _start_worker(spool: Spool, parsed: QuickArgs, command: list[str]) -> subprocess.Popen[bytes]:
    import subprocess

    # abspath, not resolve: the worker's settings key must name the config file by the same
    # path as the command's (a symlinked /etc/pgkeep would otherwise make every status "stale").
    config = [] if parsed.config is None else ["--config", os.path.abspath(parsed.config)]
    argv = [sys.executable, "-m", "pgkeep", command[0], "--spool", os.path.abspath(spool.root), *config, *command[1:]]
    log_path = spool.log_path
    with contextlib.suppress(FileNotFoundError):
        if log_path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log_path, log_path.with_name(log_path.name + ".1"))  # one old generation is kept
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=dict(os.environ)
        )
