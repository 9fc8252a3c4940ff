"""The server's own view of WAL archiving: ``pg_stat_archiver`` and the files waiting in pg_wal.

The archive (storage) shows what arrived; only the server knows what is
waiting and whether archive_command is failing right now. Read over an
ordinary connection, so it works from any host: ``pg_stat_archiver`` is
readable by every role; the backlog (``pg_ls_archive_statusdir()``,
PostgreSQL 12+) needs superuser or ``pg_monitor``, and is left unknown
without it. The archive_command itself is never read back: it may hold
secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

STATS_SQL = """
SELECT current_setting('archive_mode'),
       current_setting('archive_command') <> ''
         OR coalesce(current_setting('archive_library', true), '') <> '',
       pg_is_in_recovery(),
       archived_count, last_archived_wal, last_archived_time,
       failed_count, last_failed_wal, last_failed_time, stats_reset,
       extract(epoch FROM now() - last_archived_time)
FROM pg_stat_archiver
"""

# WAL waiting this long while nothing was archived either is stuck, counted failure or not:
# an archive_command that is not found (exit 127) or is killed exits above 125, and
# PostgreSQL then restarts its archiver without counting a failure in pg_stat_archiver.
STALLED_AFTER_S = 300.0

# The oldest file waiting, how many, and how long the oldest has waited (by the server's clock).
BACKLOG_SQL = """
SELECT count(*), min(name), extract(epoch FROM now() - min(modification))
FROM pg_ls_archive_statusdir()
WHERE name LIKE '%.ready'
"""


@dataclass
class ArchiverStatus:
    """What the server says about its archiver. ``ready`` is None when the backlog could not be read."""

    archive_mode: str
    command_set: bool
    in_recovery: bool
    archived_count: int
    last_archived_wal: str | None
    last_archived_time: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: datetime | None
    stats_reset: datetime | None
    last_archived_age_s: float | None = None  # by the server's clock
    ready: int | None = None
    oldest_ready: str | None = None
    oldest_ready_age_s: float | None = None
    backlog_unknown_why: str | None = None

    @property
    def archiving(self) -> bool:
        """Whether this server archives at all (a standby only with archive_mode=always)."""
        if self.archive_mode == "off":
            return False
        return self.archive_mode == "always" or not self.in_recovery

    @property
    def failure_counted(self) -> bool:
        """The last attempt failed: a failure newer than the last success (or failures and no success)."""
        if self.last_failed_time is None:
            return False
        return self.last_archived_time is None or self.last_failed_time > self.last_archived_time

    @property
    def stalled(self) -> bool:
        """WAL has waited in pg_wal for STALLED_AFTER_S and nothing was archived meanwhile
        (known only when the backlog can be read)."""
        waiting = self.ready is not None and self.ready > 0 and (self.oldest_ready_age_s or 0.0) > STALLED_AFTER_S
        quiet = self.last_archived_age_s is None or self.last_archived_age_s > STALLED_AFTER_S
        return self.archiving and waiting and quiet

    @property
    def failing(self) -> bool:
        """Archiving does not work now: the last attempt failed, or WAL is stuck without a counted failure."""
        return self.failure_counted or self.stalled

    @property
    def problems(self) -> list[str]:
        """Why point-in-time recovery from this server's archive is at risk now (empty when it is not)."""
        return archiver_problems(self)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "ok": self.ok,
            "archiveMode": self.archive_mode,
            "archiveCommandSet": self.command_set,
            "inRecovery": self.in_recovery,
            "failing": self.failing,
            "archivedCount": self.archived_count,
            "lastArchivedWal": self.last_archived_wal,
            "lastArchivedAt": iso(self.last_archived_time),
            "failedCount": self.failed_count,
            "lastFailedWal": self.last_failed_wal,
            "lastFailedAt": iso(self.last_failed_time),
            "statsReset": iso(self.stats_reset),
            "readyCount": self.ready,
            "oldestReady": self.oldest_ready,
            "oldestReadyAgeSeconds": None if self.oldest_ready_age_s is None else round(self.oldest_ready_age_s, 3),
            "backlogUnknown": self.backlog_unknown_why,
            "problems": self.problems,
        }


def read_archiver(conn: psycopg.Connection) -> ArchiverStatus:
    """The archiver's state and backlog; ``conn`` must be in autocommit mode (a refused
    backlog query must not abort a transaction)."""
    row = conn.execute(STATS_SQL).fetchone()
    assert row is not None  # pg_stat_archiver always has exactly one row
    status = ArchiverStatus(
        archive_mode=str(row[0]),
        command_set=bool(row[1]),
        in_recovery=bool(row[2]),
        archived_count=int(row[3]),
        last_archived_wal=row[4],
        last_archived_time=row[5],
        failed_count=int(row[6]),
        last_failed_wal=row[7],
        last_failed_time=row[8],
        stats_reset=row[9],
        last_archived_age_s=None if row[10] is None else float(row[10]),
    )
    _read_backlog(conn, status)
    return status


def _read_backlog(conn: psycopg.Connection, status: ArchiverStatus) -> None:
    if conn.info.server_version < 120000:
        status.backlog_unknown_why = "needs PostgreSQL 12 or later"
        return
    try:
        row = conn.execute(BACKLOG_SQL).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        status.backlog_unknown_why = "needs superuser or the pg_monitor role"
        return
    assert row is not None
    status.ready = int(row[0])
    status.oldest_ready = None if row[1] is None else str(row[1]).removesuffix(".ready")
    status.oldest_ready_age_s = None if row[2] is None else max(0.0, float(row[2]))


def archiver_problems(status: ArchiverStatus) -> list[str]:
    """Why point-in-time recovery from this server's archive is at risk now (empty when it is not)."""
    if status.archive_mode == "off":
        return ["archive_mode is off: this server archives no WAL (point-in-time recovery needs it on)"]
    if not status.archiving:
        return []  # a standby with archive_mode=on: its primary archives
    problems = []
    if not status.command_set:
        # PostgreSQL keeps every segment (pg_wal grows) until a command is set.
        problems.append("archive_command is empty: WAL accumulates in pg_wal and nothing is archived")
    if status.failure_counted:
        since = (
            f"the last success was {status.last_archived_wal} at {status.last_archived_time.isoformat()}"
            if status.last_archived_time is not None and status.last_archived_wal is not None
            else "no success since the statistics were reset"
        )
        failed_at = status.last_failed_time.isoformat() if status.last_failed_time else "?"
        problems.append(
            f"archiving is failing: {status.last_failed_wal} failed at {failed_at}; {since} "
            "(the server log has archive_command's error)"
        )
    elif status.stalled:
        problems.append(
            f"WAL is not being archived: {status.ready} file(s) wait in pg_wal, the oldest "
            f"({status.oldest_ready}) for {status.oldest_ready_age_s or 0:.0f} s, and nothing was archived meanwhile, "
            "though no failure is counted: archive_command may not run at all (one that is not found or is "
            "killed restarts the archiver without counting a failure; the server log says why)"
        )
    return problems
