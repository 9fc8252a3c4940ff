"""The asynchronous pusher: stores the WAL files PostgreSQL has marked ready, ahead of the archiver.

PostgreSQL runs one archive_command at a time, and a synchronous
``pgkeep wal-push`` spends most of its time starting up (imports, settings,
a storage client) before it stores 16 MB. The pusher is one process that
starts up once, then keeps ``jobs`` pushes going at a time (zstd, SHA-256 and
the storage client work outside the GIL), oldest ready file first, and
records each outcome in the spool (``wal.spool``). archive_command, called
for a file the pusher already stored, only checks its status.

Correctness does not depend on the pusher: every push is the ordinary
``wal.push`` (idempotent, refuses a different file under the same name),
and archive_command acknowledges a file only from a status that names its
SHA-256 and the current settings. The pusher stops at the first failure
(storage down, most likely), leaving that file's error for archive_command
to report through a push of its own; it also stops after ``idle_exit``
seconds with nothing to do, and never works more than ``lookahead`` files
ahead of the archiver.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from pgkeep.wal.patterns import WAL_FILE
from pgkeep.wal.spool import Spool

READY = ".ready"


def ready_files(pg_wal: Path) -> list[str]:
    """The files PostgreSQL has marked ready for archiving, in its order: timeline
    history files first, then by name (oldest segment first)."""
    names = []
    for entry in os.scandir(pg_wal / "archive_status"):
        name = entry.name.removesuffix(READY)
        if entry.name.endswith(READY) and WAL_FILE.match(name):
            names.append(name)
    return sorted(names, key=lambda name: (not name.endswith(".history"), name))


@dataclass
class AheadResult:
    pushed: list[str] = field(default_factory=list)
    failed: str | None = None  # the file whose push failed (the pusher stopped there)
    timed_out: str | None = None  # a push still running after push_deadline (abandoned)


def run(
    pg_wal: Path,
    spool: Spool,
    push: Callable[[Path], str],
    *,
    key: str,
    jobs: int = 2,
    lookahead: int = 16,
    idle_exit: float = 2.0,
    poll: float = 0.05,
    push_deadline: float = 60.0,
    log: Callable[[str], None] = lambda line: None,
) -> AheadResult:
    """Push ready files until there are none for ``idle_exit`` seconds, or one fails.

    ``push(path)`` stores one file and returns its SHA-256 (raising on failure).
    A push still running after ``push_deadline`` seconds is recorded as an
    error and abandoned: its thread cannot be stopped, so the caller must
    exit the process without waiting for it.
    """
    spool.sweep_temp()
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="wal-push")
    pusher = _Pusher(pg_wal, spool, push, key, pool, log)
    try:
        pusher.loop(jobs, lookahead, idle_exit, poll, push_deadline)
    finally:
        pool.shutdown(wait=pusher.result.timed_out is None, cancel_futures=True)
    return pusher.result


class _Pusher:
    def __init__(
        self,
        pg_wal: Path,
        spool: Spool,
        push: Callable[[Path], str],
        key: str,
        pool: ThreadPoolExecutor,
        log: Callable[[str], None],
    ) -> None:
        self.pg_wal, self.spool, self.push, self.key, self.pool, self.log = pg_wal, spool, push, key, pool, log
        self.running: dict[Future[str], tuple[str, float]] = {}
        self.result = AheadResult()

    def loop(self, jobs: int, lookahead: int, idle_exit: float, poll: float, push_deadline: float) -> None:
        idle_since = time.monotonic()
        while True:
            try:
                ready = ready_files(self.pg_wal)
            except FileNotFoundError:
                self.log(f"{self.pg_wal} is gone: stopping")
                return
            in_flight = {file for file, _ in self.running.values()}
            recorded = self.spool.recorded()
            for stale in recorded - set(ready) - in_flight:
                self.spool.forget(stale)  # acknowledged (or gone): PostgreSQL no longer needs it
            if self.result.failed is None:
                self._start(ready, in_flight, recorded, jobs, lookahead)
            if not self.running:
                if self.result.failed is not None:
                    return
                if any(file not in recorded for file in ready):
                    idle_since = time.monotonic()  # lookahead reached: waiting for the archiver
                elif time.monotonic() - idle_since >= idle_exit:
                    return
                time.sleep(poll)
                continue
            idle_since = time.monotonic()
            done, _ = wait(self.running, timeout=poll, return_when=FIRST_COMPLETED)
            for future in done:
                self._record(future, self.running.pop(future)[0])
            for file, started in self.running.values():
                if time.monotonic() - started > push_deadline:
                    self._failed(file, f"gave up after {push_deadline:g} s: the storage is not answering")
                    self.result.timed_out = file
                    return

    def _start(self, ready: list[str], in_flight: set[str], recorded: set[str], jobs: int, lookahead: int) -> None:
        ahead = len(in_flight) + len(recorded & set(ready))
        for file in ready:
            if len(self.running) >= jobs or ahead >= lookahead:
                return
            if file not in in_flight and file not in recorded:
                self.running[self.pool.submit(self.push, self.pg_wal / file)] = (file, time.monotonic())
                ahead += 1

    def _record(self, future: Future[str], file: str) -> None:
        try:
            digest = future.result()
        except Exception as exc:  # whatever it was, archive_command's own push reports it
            self._failed(file, str(exc) or type(exc).__name__)
            return
        self.spool.record_ok(file, digest, self.key)
        self.result.pushed.append(file)
        self.log(f"{file}: stored")

    def _failed(self, file: str, message: str) -> None:
        self.spool.record_error(file, message)
        self.log(f"{file}: not stored: {message}")
        if self.result.failed is None:
            self.result.failed = file
