"""What an archiving spool says about the asynchronous pusher (``archive status --spool DIR``).

Whether the pusher runs, how far PostgreSQL's archiving is behind (the files
it has marked ready in pg_wal, and how long the oldest has waited), what the
pusher stored ahead, and its last words. Informational: the exit code stays
the archive's own. A failed push leaves no lasting mark here (archive_command
drops the pusher's error when it pushes the file itself, and fails with the
storage's error), so the backlog and the log are what tell an outage.

Read only: the command may run as another OS user than the server (root,
say), and a file it created in the spool (a lock file) would lock the
server's pusher out. So nothing is written (``Spool.worker_running`` probes
the lock through the existing file, opened read-only).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgkeep.wal.ahead import READY, ready_files
from pgkeep.wal.spool import Spool

LOG_TAIL_BYTES = 4096
LOG_LINE_CHARS = 300


@dataclass
class SpoolStatus:
    spool: Path
    pusher_running: bool
    pg_wal: Path | None = None  # the cluster's pg_wal the last pusher worked on
    ready: list[str] | None = None  # files PostgreSQL has marked ready; None: pg_wal unknown or unreadable
    oldest_ready_age_s: float | None = None  # how long the oldest ready file has waited
    pushed_ahead: int = 0  # stored, waiting for archive_command to ask
    errors: dict[str, str] = field(default_factory=dict)  # file -> what the pusher recorded
    last_log_line: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "dir": str(self.spool),
            "pusherRunning": self.pusher_running,
            "pgWal": None if self.pg_wal is None else str(self.pg_wal),
            "readyCount": None if self.ready is None else len(self.ready),
            "oldestReady": self.ready[0] if self.ready else None,
            "oldestReadyAgeSeconds": None if self.oldest_ready_age_s is None else round(self.oldest_ready_age_s, 3),
            "pushedAhead": self.pushed_ahead,
            "errors": [{"file": file, "error": error} for file, error in self.errors.items()],
            "lastLogLine": self.last_log_line,
        }


def last_line(path: Path) -> str | None:
    """The last non-empty line of a log (read from its tail), shortened."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            tail = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:LOG_LINE_CHARS] if lines else None


def spool_status(spool: Spool, now: float | None = None) -> SpoolStatus:
    """The pusher's state, PostgreSQL's backlog, the statuses the pusher left and its last log line.

    Raises OSError when the spool itself cannot be read; an unreadable pg_wal
    only leaves the backlog unknown.
    """
    status = SpoolStatus(spool.root, spool.worker_running(), spool.serving())
    if status.pg_wal is not None:
        with contextlib.suppress(OSError):
            status.ready = ready_files(status.pg_wal)
            if status.ready:
                marked = (status.pg_wal / "archive_status" / (status.ready[0] + READY)).stat().st_mtime
                status.oldest_ready_age_s = max(0.0, (time.time() if now is None else now) - marked)
    for file in sorted(spool.recorded()):
        recorded = spool.status(file)
        if recorded is None:
            continue
        if recorded.ok:
            status.pushed_ahead += 1
        else:
            status.errors[file] = recorded.error
    status.last_log_line = last_line(spool.log_path)
    return status
