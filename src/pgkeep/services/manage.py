"""Catalog-level operations: list, show, verify, delete, cleanup."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, BackupType, DatabaseBackup, JobRun, utcnow
from pgkeep.errors import InvalidStateError, PgkeepError
from pgkeep.services.context import Context
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
) -> dict[str, Any]:
    """The spec's ``listBackups`` shape: ``{backups, pagination}``."""
    with ctx.catalog.session() as session:
        rows, total = repo.list_backups(
            session, page=page, limit=limit, backup_type=backup_type, status=status
        )
        return {"backups": [backup_json(r) for r in rows], "pagination": pagination(page, limit, total)}


def get_backup(ctx: Context, backup_id: str) -> dict[str, Any]:
    with ctx.catalog.session() as session:
        return backup_json(repo.get_backup(session, backup_id))


def verify_backup(ctx: Context, backup_id: str, level: str = "archive") -> VerifyResult:
    """Verify a backup at ``level`` (checksum, archive, restore); see services.verify."""
    return _verify(ctx, backup_id, level)


def delete_backup(ctx: Context, backup_id: str) -> str:
    """Remove a backup's files and mark it DELETED."""
    with ctx.catalog.session() as session:
        row = repo.get_backup(session, backup_id)
        if row.status in (BackupStatus.IN_PROGRESS, BackupStatus.PENDING):
            raise InvalidStateError(
                f"backup {backup_id} is {row.status.value}; it cannot be deleted while it runs",
                backup_id=backup_id,
            )
        if row.status is BackupStatus.DELETED:
            return f"Backup {backup_id} was already deleted"
        _remove_files(row)
        repo.update_backup(session, backup_id, status=BackupStatus.DELETED)
    return "Backup deleted successfully"


def _remove_files(row: DatabaseBackup) -> None:
    if row.storage_url:
        storage, name = locate(row.storage_url)
        storage.delete(name)


@dataclass
class CleanupResult:
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        verb = "Would clean up" if self.dry_run else "Cleaned up"
        return {
            "message": f"{verb} {len(self.deleted)} expired backups",
            "deletedCount": len(self.deleted),
            "deletedIds": self.deleted,
            "failed": self.failed,
            "dryRun": self.dry_run,
        }


def cleanup_expired(
    ctx: Context, *, dry_run: bool = False, now: datetime | None = None, record: bool = True
) -> CleanupResult:
    """Delete expired COMPLETED and FAILED backups, as the spec does, with safety rules.

    Never deletes the newest COMPLETED backup or one marked ``keep``. A row
    is marked EXPIRED before its files are removed (the catalog says what is
    being deleted first), and DELETED once they are gone; EXPIRED rows left
    by a storage failure are retried.
    """
    now = now or utcnow()
    result = CleanupResult(dry_run=dry_run)
    with ctx.catalog.session() as session:
        newest = session.scalar(
            select(DatabaseBackup.id)
            .where(DatabaseBackup.status == BackupStatus.COMPLETED)
            .order_by(DatabaseBackup.started_at.desc())
            .limit(1)
        )
        candidates = session.scalars(
            select(DatabaseBackup)
            .where(
                DatabaseBackup.status.in_(
                    [BackupStatus.COMPLETED, BackupStatus.FAILED, BackupStatus.EXPIRED]
                )
            )
            .order_by(DatabaseBackup.started_at)
        ).all()
        for row in candidates:
            expired = row.status is BackupStatus.EXPIRED or (
                row.expires_at is not None and row.expires_at < now
            )
            if not expired or row.id == newest or row.keep:
                continue
            if dry_run:
                result.deleted.append(row.id)
                continue
            row.status = BackupStatus.EXPIRED
            session.commit()
            try:
                _remove_files(row)
            except PgkeepError as exc:
                result.failed[row.id] = exc.message
                continue
            row.status = BackupStatus.DELETED
            session.commit()
            result.deleted.append(row.id)
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
                    details=result.as_json(),
                    started_at=now,
                    finished_at=utcnow(),
                )
            )
            session.commit()
    return result
