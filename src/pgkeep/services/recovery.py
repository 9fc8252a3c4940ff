"""Crash recovery: backups left IN_PROGRESS by a process that died.

A backup holds the target's advisory lock for its whole run, from a session
whose backend PID is recorded in the row. If that session no longer holds
the lock, the process is gone (the server frees advisory locks when a
session ends): the row becomes FAILED and its partial files are removed. A
backup that is really still running elsewhere keeps its lock and is left
alone.

Unless the backup is whole in storage: its manifest (written only once the
artifact was durable and hashed) names this row, and the files still have
the size and SHA-256 it records. The process died between the manifest and
the row's COMPLETED (a narrow window), or the catalog is an older copy (a
restored snapshot of the pgkeep host): either way the backup is good, and
the row is completed from its manifest instead of the backup being deleted.
When the storage cannot be reached nobody can tell, so such a row is left
for the next recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import inspect, select

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, DatabaseBackup, utcnow
from pgkeep.errors import ObjectNotFoundError, PgkeepError, VerificationError
from pgkeep.observability.logs import get_logger
from pgkeep.pgtools import server as pgserver
from pgkeep.services.context import Context
from pgkeep.services.manifest import (
    CLEANUP_PENDING,
    files_problem,
    manifest_name,
    read_manifest,
    remove_backup_files,
    row_from_manifest,
)
from pgkeep.storage import locate

log = get_logger("pgkeep.recovery")

DEAD_MESSAGE = (
    "interrupted: the pgkeep process taking this backup stopped before it finished "
    "(crash, kill or shutdown); its partial files were removed"
)


@dataclass
class Recovery:
    failed: list[str] = field(default_factory=list)  # marked FAILED, their files removed
    completed: list[str] = field(default_factory=list)  # whole in storage: COMPLETED from their manifests
    undecided: list[str] = field(default_factory=list)  # storage unreachable: left for the next recovery


def recover_interrupted(ctx: Context) -> Recovery:
    """Settle dead IN_PROGRESS backups of the configured database: COMPLETED when whole in storage, else FAILED.

    Also finishes removing the files of failed backups that a storage outage left behind.
    """
    finish_pending_cleanups(ctx)
    with ctx.catalog.session() as session:
        rows = session.scalars(
            select(DatabaseBackup).where(
                DatabaseBackup.status.in_([BackupStatus.IN_PROGRESS, BackupStatus.PENDING]),
                DatabaseBackup.database_name == ctx.target.dbname,
            )
        ).all()
    result = Recovery()
    if not rows:
        return result
    with pgserver.connect(ctx.target, operation="recovery") as conn:
        holder = pgserver.backup_lock_holder(conn)
    for row in rows:
        lock_pid = (row.metadata_ or {}).get("lockBackendPid")
        if holder is not None and (lock_pid is None or lock_pid == holder):
            continue  # still running (or cannot tell): leave it alone
        try:
            whole = _stored_whole(row, ctx)
        except PgkeepError as exc:
            log.warning(
                "an interrupted backup is left as it is: the storage cannot tell whether it was stored whole",
                backup_id=row.id,
                error=exc.message,
            )
            result.undecided.append(row.id)
            continue
        if whole is not None:
            _complete_from_manifest(ctx, row.id, whole)
            log.warning("an interrupted backup was whole in storage: COMPLETED from its manifest", backup_id=row.id)
            result.completed.append(row.id)
            continue
        metadata = dict(row.metadata_ or {})
        if not _remove_partial(row, ctx):
            metadata[CLEANUP_PENDING] = True
        with ctx.catalog.session() as session:
            repo.update_backup(
                session,
                row.id,
                status=BackupStatus.FAILED,
                error_message=DEAD_MESSAGE,
                completed_at=utcnow(),
                metadata_=metadata,
            )
        log.warning("an interrupted backup was marked FAILED and its partial files removed", backup_id=row.id)
        result.failed.append(row.id)
    return result


def _stored_whole(row: DatabaseBackup, ctx: Context) -> DatabaseBackup | None:
    """The row as its manifest describes it, if the backup is whole in storage; else None.

    Raises StorageError when the storage cannot be reached.
    """
    if not row.storage_url:
        return None
    storage, name = locate(row.storage_url, ctx.settings)
    try:
        manifest = read_manifest(storage, manifest_name(name))
    except ObjectNotFoundError:
        return None  # died before the manifest: not whole
    except VerificationError as exc:
        log.warning("an interrupted backup's manifest is unreadable", backup_id=row.id, error=exc.message)
        return None
    if str(manifest.get("id")) != row.id or manifest.get("filename") != name:
        return None
    problem = files_problem(storage, {o.name: o for o in storage.list(name)}, manifest)
    if problem:
        log.warning("an interrupted backup's files do not match its manifest", backup_id=row.id, problem=problem)
        return None
    try:
        return row_from_manifest(manifest, row.storage_url)
    except VerificationError as exc:  # a malformed manifest: not a proof of anything
        log.warning("an interrupted backup's manifest is unreadable", backup_id=row.id, error=exc.message)
        return None


def _complete_from_manifest(ctx: Context, backup_id: str, whole: DatabaseBackup) -> None:
    values = {
        attr.key: getattr(whole, attr.key)
        for attr in inspect(DatabaseBackup).column_attrs
        if attr.key not in ("id", "keep") and getattr(whole, attr.key) is not None
    }
    with ctx.catalog.session() as session:
        repo.update_backup(session, backup_id, **values)


def _remove_partial(row: DatabaseBackup, ctx: Context) -> bool:
    """Remove what a dead backup stored (a dead process may even have committed the artifact
    and its manifest). False if the storage could not be reached."""
    if not row.storage_url:
        return True
    try:
        storage, name = locate(row.storage_url, ctx.settings)
        remove_backup_files(storage, name)
    except PgkeepError:
        return False
    return True


def finish_pending_cleanups(ctx: Context) -> list[str]:
    """Remove the files of FAILED backups whose removal a storage outage prevented.

    Returns the ids now clean; rows whose storage is still unreachable keep
    their flag and are retried next time.
    """
    with ctx.catalog.session() as session:
        rows = [
            r
            for r in session.scalars(select(DatabaseBackup).where(DatabaseBackup.status == BackupStatus.FAILED))
            if (r.metadata_ or {}).get(CLEANUP_PENDING)
        ]
    done = []
    for row in rows:
        if _remove_partial(row, ctx):
            metadata = {k: v for k, v in (row.metadata_ or {}).items() if k != CLEANUP_PENDING}
            with ctx.catalog.session() as session:
                repo.update_backup(session, row.id, metadata_=metadata)
            done.append(row.id)
    return done
