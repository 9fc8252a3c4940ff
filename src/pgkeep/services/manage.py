"""Catalog-level operations: list, show, verify, delete, cleanup."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, BackupType, DatabaseBackup, JobRun, utcnow
from pgkeep.config import Settings
from pgkeep.errors import InvalidStateError, PgkeepError
from pgkeep.retention import BackupInfo, RetentionPlan, Status, plan_retention
from pgkeep.services.archive import cleanup_wal, physical_backups, window_pins
from pgkeep.services.context import Context
from pgkeep.services.manifest import remove_backup_files, write_keep
from pgkeep.services.recovery import finish_pending_cleanups, recover_interrupted
from pgkeep.services.serialize import backup_json, pagination
from pgkeep.services.verify import VerifyResult
from pgkeep.services.verify import verify_backup as _verify
from pgkeep.storage import locate


def list_backups(
    ctx: Context,
    *,
    page: int = 1,
    limit: int = 20,
    backup_type: BackupType | None = None,
    status: BackupStatus | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """The spec's ``listBackups`` shape: ``{backups, pagination}`` (``kind``: logical or physical)."""
    with ctx.catalog.session() as session:
        rows, total = repo.list_backups(
            session, page=page, limit=limit, backup_type=backup_type, status=status, kind=kind
        )
        return {"backups": [backup_json(r) for r in rows], "pagination": pagination(page, limit, total)}


def get_backup(ctx: Context, backup_id: str) -> dict[str, Any]:
    with ctx.catalog.session() as session:
        return backup_json(repo.get_backup(session, backup_id))


def verify_backup(
    ctx: Context, backup_id: str, level: str = "archive", on_read: Callable[[int], None] | None = None
) -> VerifyResult:
    """Verify a backup at ``level`` (checksum, archive, restore); see services.verify."""
    return _verify(ctx, backup_id, level, on_read)


def delete_backup(ctx: Context, backup_id: str) -> str:
    """Remove a backup's files and mark it DELETED (one a dead process left IN_PROGRESS is settled first)."""
    with ctx.catalog.session() as session:
        running = repo.get_backup(session, backup_id).status in (BackupStatus.IN_PROGRESS, BackupStatus.PENDING)
    if running:
        with contextlib.suppress(PgkeepError):  # the server may be down: then it still counts as running
            recover_interrupted(ctx)
    with ctx.catalog.session() as session:
        row = repo.get_backup(session, backup_id)
        if row.status in (BackupStatus.IN_PROGRESS, BackupStatus.PENDING):
            raise InvalidStateError(
                f"backup {backup_id} is {row.status.value}; it cannot be deleted while it runs",
                backup_id=backup_id,
                hint="if its process is gone and the server cannot be reached to confirm it, retry once it can",
            )
        if row.status is BackupStatus.DELETED:
            return f"Backup {backup_id} was already deleted"
        _remove_files(row, ctx.settings)
        repo.update_backup(session, backup_id, status=BackupStatus.DELETED)
    return "Backup deleted successfully"


def _remove_files(row: DatabaseBackup, settings: Settings) -> None:
    """The artifact, its companions (globals) and its manifest (last), and any incomplete upload."""
    if row.storage_url:
        storage, name = locate(row.storage_url, settings)
        remove_backup_files(storage, name, row.metadata_)


@dataclass
class CleanupResult:
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    plan: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    wal_deleted: list[str] = field(default_factory=list)  # archived WAL files no kept backup needs

    def as_json(self) -> dict[str, Any]:
        verb = "Would clean up" if self.dry_run else "Cleaned up"
        return {
            "message": f"{verb} {len(self.deleted)} expired backups",
            "deletedCount": len(self.deleted),
            "deletedIds": self.deleted,
            "failed": self.failed,
            "dryRun": self.dry_run,
            "plan": self.plan,
            "warnings": self.warnings,
            "walDeletedCount": len(self.wal_deleted),
            "walDeleted": self.wal_deleted,
        }


def _info(row: DatabaseBackup) -> BackupInfo:
    return BackupInfo(
        id=row.id,
        type=row.type.value,
        status=Status(row.status.value),
        started_at=row.started_at,
        expires_at=row.expires_at,
        keep=bool(row.keep),
        database_name=row.database_name,
        depends_on=row.parent_id,  # an incremental physical backup needs its base
        kind=row.kind or "logical",
    )


def plan_cleanup(ctx: Context, now: datetime | None = None) -> RetentionPlan:
    """The retention plan for every catalogued backup (pure planning, no changes)."""
    now = now or utcnow()
    with ctx.catalog.session() as session:
        rows = session.scalars(select(DatabaseBackup).where(DatabaseBackup.status != BackupStatus.DELETED)).all()
        return plan_retention([_info(r) for r in rows], ctx.retention_policy, now, pinned=window_pins(ctx, now))


def cleanup_expired(
    ctx: Context, *, dry_run: bool = False, now: datetime | None = None, record: bool = True
) -> CleanupResult:
    """Apply the retention plan: delete what it deletes, with the reason for every decision.

    A backup is deleted when its ``expiresAt`` has passed and no GFS rule
    (daily/weekly/monthly/yearly) and no safety rule (newest COMPLETED,
    ``keep`` flag, in progress) keeps it. A row is marked EXPIRED before its
    files are removed (the catalog says what is being deleted first) and
    DELETED once they are gone; EXPIRED rows left by a storage failure are
    retried next time.
    """
    now = now or utcnow()
    if not dry_run:
        finish_pending_cleanups(ctx)  # files of failed backups a storage outage left behind
    plan = plan_cleanup(ctx, now)
    result = CleanupResult(dry_run=dry_run, plan=plan.as_json(), warnings=list(plan.warnings))
    with ctx.catalog.session() as session:
        for backup_id in plan.delete_ids:
            row = session.get(DatabaseBackup, backup_id)
            # Re-checked: the row may have changed since planning (kept, deleted, ...).
            if (
                row is None
                or row.keep
                or row.status not in (BackupStatus.COMPLETED, BackupStatus.FAILED, BackupStatus.EXPIRED)
            ):
                continue
            if dry_run:
                result.deleted.append(row.id)
                continue
            row.status = BackupStatus.EXPIRED
            session.commit()
            try:
                _remove_files(row, ctx.settings)
            except PgkeepError as exc:
                result.failed[row.id] = exc.message
                continue
            row.status = BackupStatus.DELETED
            session.commit()
            result.deleted.append(row.id)
        _cleanup_wal(ctx, plan, result)
        if result.failed and not dry_run:
            ctx.notifier.send(
                "cleanup.failed",
                f"cleanup could not delete {len(result.failed)} expired backups; they stay EXPIRED "
                "and are retried next time",
                failed=result.failed,
            )
        if record and not dry_run:
            # Metrics and alerts read the last cleanup from job_runs.
            session.add(
                JobRun(
                    job="cleanup",
                    status="failed" if result.failed else "succeeded",
                    message=str(result.as_json()["message"]),
                    details={k: v for k, v in result.as_json().items() if k != "plan"},
                    started_at=now,
                    finished_at=utcnow(),
                )
            )
            session.commit()
    return result


def _cleanup_wal(ctx: Context, plan: RetentionPlan, result: CleanupResult) -> None:
    """After the backups: archived WAL older than the oldest physical backup still kept."""
    doomed = set(plan.delete_ids)
    kept = [r.wal_start for r in physical_backups(ctx) if r.wal_start and r.id not in doomed]
    result.wal_deleted, error = cleanup_wal(ctx, kept, dry_run=result.dry_run)
    if error:  # retried by the next cleanup; the archive has no hole (oldest first)
        result.warnings.append(f"removing old archived WAL stopped: {error}")


def set_keep(ctx: Context, backup_id: str, keep: bool, *, by: str | None = None) -> dict[str, Any]:
    """Mark a backup to keep (retention never deletes it) or release it.

    While its files exist, the change is first recorded beside them (see
    manifest.write_keep), so a catalog rebuilt from storage keeps it too; if
    storage cannot be reached the flag is not changed.
    """
    with ctx.catalog.session() as session:
        row = repo.get_backup(session, backup_id)
        filename, storage_url, stored = row.filename, row.storage_url, row.status is BackupStatus.COMPLETED
        if keep and row.status is not BackupStatus.COMPLETED:
            # A failed or deleted backup has nothing to keep (and kept, a FAILED row's files were never cleaned up).
            raise InvalidStateError(
                f"backup {backup_id} is {row.status.value}; only COMPLETED backups can be kept",
                backup_id=backup_id,
            )
    if stored and storage_url:
        storage, _ = locate(storage_url, ctx.settings)
        write_keep(storage, filename, keep, utcnow(), by)
    with ctx.catalog.session() as session:
        row = repo.update_backup(session, backup_id, keep=keep)
        return backup_json(row)
