"""Crash recovery: backups left IN_PROGRESS by a process that died.

A backup holds the target's advisory lock for its whole run, from a session
whose backend PID is recorded in the row. If that session no longer holds
the lock, the process is gone (the server frees advisory locks when a
session ends): the row becomes FAILED and its partial files are removed. A
backup that is really still running elsewhere keeps its lock and is left
alone.
"""

from __future__ import annotations

from sqlalchemy import select

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, DatabaseBackup, utcnow
from pgkeep.errors import PgkeepError
from pgkeep.pgtools import server as pgserver
from pgkeep.services.context import Context
from pgkeep.services.manifest import CLEANUP_PENDING, remove_backup_files
from pgkeep.storage import locate

DEAD_MESSAGE = (
    "interrupted: the pgkeep process taking this backup stopped before it finished "
    "(crash, kill or shutdown); its partial files were removed"
)


def recover_interrupted(ctx: Context) -> list[str]:
    """Mark dead IN_PROGRESS backups of the configured database FAILED. Returns their ids.

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
    if not rows:
        return []
    with pgserver.connect(ctx.target, operation="recovery") as conn:
        holder = pgserver.backup_lock_holder(conn)
    recovered = []
    for row in rows:
        lock_pid = (row.metadata_ or {}).get("lockBackendPid")
        if holder is not None and (lock_pid is None or lock_pid == holder):
            continue  # still running (or cannot tell): leave it alone
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
        recovered.append(row.id)
    return recovered


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
