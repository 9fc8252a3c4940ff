"""The fetcher: downloads the segments after the one PostgreSQL asked for, ahead of recovery.

During recovery PostgreSQL runs restore_command once per segment and waits
for it, so a synchronous ``pgkeep wal-fetch`` (interpreter, imports, a
listing, a download) stands between every two segments replayed. The
fetcher is one process that starts up once, follows the segment PostgreSQL
asked for last (``fetcher.want`` in the spool), and keeps the archived
segments after it downloaded, ``jobs`` at a time, at most ``lookahead``
ahead, each checked against the SHA-256 in its name by the ordinary
``wal.fetch`` before it is marked done. restore_command then only moves the
file into place.

Which segments come next is read from the archive, not computed: one
listing of the segments that share the wanted one's timeline and 4 GiB unit
(the name's first 16 characters; the next unit's too near its end), so the
segment size does not matter, and a hole is never papered over (the segment
after a hole is not fetched before PostgreSQL asks for it). A wanted
segment the archive does not hold is marked as an error: restore_command
then runs the ordinary fetch, which answers "not in the archive" (the end
of recovery) with its own exit code. Everything before the wanted segment,
or on another timeline, is removed; the fetcher stops after ``idle_exit``
seconds without a new request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from pgkeep.storage import Storage
from pgkeep.wal.naming import OBJECT_PREFIX, parse_object, segment_key
from pgkeep.wal.patterns import SEGMENT_FILE
from pgkeep.wal.spool import Spool

MISSING = "not in the archive"


def archived_from(storage: Storage, want: str, count: int) -> list[str]:
    """The archived segments of ``want``'s timeline from ``want`` on (itself included
    if archived), in order: at most ``count`` + 1."""
    timeline, unit = want[:8], int(want[8:16], 16)
    start = segment_key(want)
    found: set[str] = set()
    for high in (unit, unit + 1):
        for info in storage.list(f"{OBJECT_PREFIX}{timeline}{high:08X}"):
            obj = parse_object(info.name)
            if obj is not None and obj.is_segment and obj.file[:8] == timeline and segment_key(obj.file) >= start:
                found.add(obj.file)
        if len(found) > count:
            break
    return sorted(found, key=segment_key)[: count + 1]


@dataclass
class PrefetchResult:
    fetched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def run(
    spool: Spool,
    list_from: Callable[[str, int], list[str]],
    fetch: Callable[[str], str],
    *,
    key: str,
    jobs: int = 2,
    lookahead: int = 8,
    idle_exit: float = 10.0,
    poll: float = 0.02,
    log: Callable[[str], None] = lambda line: None,
) -> PrefetchResult:
    """Prefetch until PostgreSQL asks for nothing new for ``idle_exit`` seconds.

    ``list_from(want, n)`` names the archived segments from ``want`` on (see
    :func:`archived_from`); ``fetch(file)`` leaves ``file`` complete and
    checked at ``spool.content(file)`` and returns its SHA-256.
    """
    spool.sweep_temp()
    fetcher = _Fetcher(spool, list_from, fetch, key, jobs, lookahead, log)
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="wal-fetch")
    try:
        fetcher.loop(pool, idle_exit, poll)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return fetcher.result


class _Fetcher:
    def __init__(
        self,
        spool: Spool,
        list_from: Callable[[str, int], list[str]],
        fetch: Callable[[str], str],
        key: str,
        jobs: int,
        lookahead: int,
        log: Callable[[str], None],
    ) -> None:
        self.spool, self.list_from, self.fetch, self.key = spool, list_from, fetch, key
        self.jobs, self.lookahead, self.log = jobs, lookahead, log
        self.running: dict[Future[str], str] = {}
        self.result = PrefetchResult()
        self.plan: list[str] = []
        self.planned_for: str | None = None  # the segment PostgreSQL asked for last
        self.request: tuple[str, str] | None = None  # and that request
        self.handled: set[str] = set()  # fetched or failed in this run: never again

    def loop(self, pool: ThreadPoolExecutor, idle_exit: float, poll: float) -> None:
        last_request: float | None = time.monotonic()
        while last_request is not None:
            try:
                last_request = self._step(pool, idle_exit, poll, last_request)
            except FileNotFoundError:
                if self.spool.root.is_dir():
                    raise
                last_request = None  # the spool was removed: recovery is over
        self.log("stopping")

    def _step(self, pool: ThreadPoolExecutor, idle_exit: float, poll: float, last_request: float) -> float | None:
        """One round: the time of the last new request, or None when it is time to stop."""
        request = self.spool.wanted()
        if request is not None and SEGMENT_FILE.match(request[0]) and request != self.request:
            self.request = request
            last_request = time.monotonic()
            self._replan(request[0])
        if self.planned_for is not None:
            self._start(pool)
        if self.running:
            done, _ = wait(self.running, timeout=poll, return_when=FIRST_COMPLETED)
            for future in done:
                self._record(future, self.running.pop(future))
        elif time.monotonic() - last_request >= idle_exit or not self.spool.root.is_dir():
            return None
        else:
            time.sleep(poll)
        return last_request

    def _replan(self, want: str) -> None:
        self.planned_for = want
        self.handled.discard(want)  # asked for again (its copy was handed over): fetch it again
        in_flight = set(self.running.values())
        for old in self.spool.recorded() | self._contents():
            if old not in in_flight and (old[:8] != want[:8] or segment_key(old) < segment_key(want)):
                self.spool.forget(old)  # replayed, skipped, or another timeline: not needed again
        try:
            self.plan = self.list_from(want, self.lookahead)
        except Exception as exc:  # storage unreachable, say: restore_command's own fetch reports it
            self.plan = []
            if want not in in_flight:
                self.spool.record_error(want, f"cannot list the archive: {exc}")
            self.log(f"{want}: cannot list the archive: {exc}")
            return
        if want not in self.plan and self.spool.status(want) is None and want not in in_flight:
            self.spool.record_error(want, MISSING)  # restore_command's own fetch says so, with its exit code

    def _contents(self) -> set[str]:
        return {entry.name for entry in os.scandir(self.spool.root) if SEGMENT_FILE.match(entry.name)}

    def _start(self, pool: ThreadPoolExecutor) -> None:
        in_flight = set(self.running.values())
        for file in self.plan:
            if len(self.running) >= self.jobs:
                return
            if file not in in_flight and file not in self.handled and self.spool.status(file) is None:
                self.running[pool.submit(self.fetch, file)] = file

    def _record(self, future: Future[str], file: str) -> None:
        self.handled.add(file)
        try:
            digest = future.result()
        except Exception as exc:  # whatever it was, restore_command's own fetch reports it
            message = str(exc) or type(exc).__name__
            self.spool.record_error(file, message)
            self.result.failed.append(file)
            self.log(f"{file}: not fetched: {message}")
            return
        if self.planned_for is not None and segment_key(file) < segment_key(self.planned_for):
            self.spool.forget(file)  # PostgreSQL is already past it
            return
        self.spool.record_ok(file, digest, self.key)
        self.result.fetched.append(file)
        self.log(f"{file}: fetched")
