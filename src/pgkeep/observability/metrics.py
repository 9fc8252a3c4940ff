"""Prometheus metrics, read from the catalog at scrape time.

Reading the catalog (not in-process counters) makes every instance report
the same numbers, including for backups another instance or the CLI took.
An alert such as "no successful backup for 26 hours" is:
``time() - max(pgkeep_last_success_timestamp_seconds) > 26 * 3600``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, select

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, BackupType, BackupVerification, DatabaseBackup, JobRun, utcnow
from pgkeep.errors import PgkeepError
from pgkeep.services.archive import server_archiver
from pgkeep.services.archive import status as archive_status
from pgkeep.services.context import Context
from pgkeep.wal.status import ArchiveStatus

# The WAL archive's listing is one storage request per 1,000 segments (S3 LIST): a busy
# archive is not listed again on every scrape, only when the last listing is this old.
ARCHIVE_LISTING_MAX_AGE_S = 60.0
# A scrape must answer within Prometheus's timeout (10 s by default) even when the server does not.
ARCHIVER_CONNECT_TIMEOUT_S = 3


class CatalogCollector(Collector):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._archive_lock = threading.Lock()
        self._archive: tuple[float, ArchiveStatus] | None = None  # (monotonic time listed, status)

    def archive_status(self) -> ArchiveStatus:
        """The WAL archive's status, listed at most every ARCHIVE_LISTING_MAX_AGE_S (errors are never kept)."""
        with self._archive_lock:
            cached = self._archive
            if cached is not None and time.monotonic() - cached[0] < ARCHIVE_LISTING_MAX_AGE_S:
                return cached[1]
            status = archive_status(self.ctx)  # raises PgkeepError: nothing cached, the next scrape retries
            self._archive = (time.monotonic(), status)
            return status

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self.ctx.catalog.session() as s:
            last_success = GaugeMetricFamily(
                "pgkeep_last_success_timestamp_seconds",
                "Completion time of the newest successful backup, by type",
                labels=["type"],
            )
            # One short walk per type down the (type, completed_at) index, stopping at the
            # first success; a MAX(...) GROUP BY type read every successful row (0.13 s at
            # 100,000). The configured database's: a catalog may hold others' backups too.
            for backup_type in BackupType:
                ts = repo.last_success_at(s, self.ctx.database_name, backup_type)
                if ts is not None:
                    last_success.add_metric([backup_type.value], ts.timestamp())
            yield last_success

            # The newest of each finished status's newest row: each a single step down the
            # (status, started_at, id) index, where one query over all three sorted them all.
            mine = [DatabaseBackup.database_name == self.ctx.database_name] if self.ctx.database_name else []
            newest = [
                s.scalars(
                    select(DatabaseBackup)
                    .where(DatabaseBackup.status == status, *mine)
                    .order_by(DatabaseBackup.started_at.desc(), DatabaseBackup.id.desc())
                    .limit(1)
                ).first()
                for status in (*repo.SUCCEEDED, BackupStatus.FAILED)
            ]
            last = max((r for r in newest if r is not None), key=lambda r: (r.started_at, r.id), default=None)
            duration = GaugeMetricFamily("pgkeep_last_backup_duration_seconds", "Duration of the last finished backup")
            size = GaugeMetricFamily("pgkeep_last_backup_size_bytes", "Stored size of the last finished backup")
            ok = GaugeMetricFamily("pgkeep_last_backup_success", "1 if the last finished backup succeeded, else 0")
            if last is not None:
                duration.add_metric([], (last.duration_ms or 0) / 1000)
                size.add_metric([], float(last.size or 0))
                ok.add_metric([], 1.0 if last.status is not BackupStatus.FAILED else 0.0)
            yield duration
            yield size
            yield ok

            outcomes = CounterMetricFamily(
                "pgkeep_backups", "Backups finished, by outcome (success or failure)", labels=["outcome"]
            )
            succeeded = s.scalar(
                select(func.count()).select_from(DatabaseBackup).where(DatabaseBackup.checksum.is_not(None))
            )
            failed = s.scalar(
                select(func.count()).select_from(DatabaseBackup).where(DatabaseBackup.status == BackupStatus.FAILED)
            )
            outcomes.add_metric(["success"], float(succeeded or 0))
            outcomes.add_metric(["failure"], float(failed or 0))
            yield outcomes

            by_status = GaugeMetricFamily("pgkeep_backups_by_status", "Catalogued backups by status", labels=["status"])
            counts = dict(s.execute(select(DatabaseBackup.status, func.count()).group_by(DatabaseBackup.status)).all())
            for status in BackupStatus:
                by_status.add_metric([status.value], float(counts.get(status) or 0))
            yield by_status

            stored = s.scalar(
                select(func.coalesce(func.sum(DatabaseBackup.size), 0)).where(
                    DatabaseBackup.status.in_([BackupStatus.COMPLETED, BackupStatus.EXPIRED])
                )
            )
            yield GaugeMetricFamily(
                "pgkeep_storage_bytes", "Bytes held in storage by kept backups", value=float(stored or 0)
            )

            cleanup = s.scalars(
                select(JobRun)
                .where(JobRun.job == "cleanup", JobRun.status == "succeeded")
                .order_by(JobRun.started_at.desc())
                .limit(1)
            ).first()
            cleanup_time = GaugeMetricFamily(
                "pgkeep_last_cleanup_timestamp_seconds", "Time of the last successful cleanup"
            )
            cleanup_count = GaugeMetricFamily("pgkeep_last_cleanup_deleted", "Backups deleted by the last cleanup")
            if cleanup is not None:
                cleanup_time.add_metric([], (cleanup.finished_at or cleanup.started_at).timestamp())
                cleanup_count.add_metric([], float((cleanup.details or {}).get("deletedCount", 0)))
            yield cleanup_time
            yield cleanup_count

            drill = s.scalar(
                select(func.max(BackupVerification.started_at)).where(
                    BackupVerification.level == "restore", BackupVerification.valid.is_(True)
                )
            )
            drill_time = GaugeMetricFamily(
                "pgkeep_last_restore_drill_success_timestamp_seconds", "Time of the last successful restore drill"
            )
            if drill is not None:
                drill_time.add_metric([], drill.timestamp())
            yield drill_time
        yield from self._archive_metrics()
        yield from self._archiver_metrics()

    def _archive_metrics(self) -> Iterator[GaugeMetricFamily]:
        """The WAL archive's lag and holes (point-in-time recovery); no samples when nothing is archived.

        Alert on ``pgkeep_wal_archive_newest_age_seconds > 3600`` (no WAL archived for an hour on a busy
        server, or archive_timeout) and on ``pgkeep_wal_archive_ok == 0`` (a hole since the oldest kept
        physical backup).
        """
        lag = GaugeMetricFamily(
            "pgkeep_wal_archive_newest_age_seconds", "Seconds since the newest WAL segment was archived"
        )
        ok = GaugeMetricFamily("pgkeep_wal_archive_ok", "1 if the WAL archive has no hole since the oldest kept backup")
        try:
            status = self.archive_status()
        except PgkeepError:
            status = None  # storage unreachable: no sample, so an absent-series alert fires
        if status is not None and (status.newest or status.oldest_needed):
            if status.newest_archived_at is not None:  # the age now, however old the listing
                lag.add_metric([], max(0.0, (utcnow() - status.newest_archived_at).total_seconds()))
            ok.add_metric([], 1.0 if status.ok else 0.0)
        yield lag
        yield ok

    def _archiver_metrics(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The target server's archiver (pg_stat_archiver), when it archives; no samples when it cannot be read.

        Alert on ``pgkeep_wal_archiver_failing == 1`` for a few minutes (archive_command failing:
        WAL piles up in pg_wal until the disk fills) and on a growing
        ``pgkeep_wal_archiver_oldest_ready_age_seconds`` (archiving falls behind).
        """
        if not self.ctx.settings.database_url:
            return
        try:
            archiver = server_archiver(self.ctx, connect_timeout_s=ARCHIVER_CONNECT_TIMEOUT_S)
        except PgkeepError:
            return  # the server is down: its own alerts say so; no sample here
        if not archiver.archiving:
            return  # archive_mode off, or a standby whose primary archives
        yield GaugeMetricFamily(
            "pgkeep_wal_archiver_failing",
            "1 if the server's last archive_command attempt failed (pg_stat_archiver), else 0",
            value=1.0 if archiver.failing else 0.0,
        )
        yield CounterMetricFamily(
            "pgkeep_wal_archiver_failed",
            "archive_command failures counted by the server since its statistics were reset",
            value=float(archiver.failed_count),
        )
        archived = GaugeMetricFamily(
            "pgkeep_wal_archiver_last_archived_timestamp_seconds", "When the server last archived a WAL file"
        )
        if archiver.last_archived_time is not None:
            archived.add_metric([], archiver.last_archived_time.timestamp())
        yield archived
        if archiver.ready is not None:  # needs superuser or pg_monitor
            yield GaugeMetricFamily(
                "pgkeep_wal_archiver_ready_files", "WAL files waiting in pg_wal to be archived", value=archiver.ready
            )
            yield GaugeMetricFamily(
                "pgkeep_wal_archiver_oldest_ready_age_seconds",
                "How long the oldest WAL file waiting to be archived has waited (0 when none waits)",
                value=archiver.oldest_ready_age_s or 0.0,
            )


def build_registry(ctx: Context) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CatalogCollector(ctx))
    return registry
