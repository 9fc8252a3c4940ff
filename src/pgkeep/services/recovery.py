"""Crash recovery: backups left IN_PROGRESS by a process that died.

A backup holds the target's advisory lock for its whole run, from a session
whose backend PID is recorded in the row. If that session no longer holds
the lock, the process is gone (the server frees advisory locks when a
session ends): the row becomes FAILED and its partial files are removed. A
backup that is really still running elsewhere keeps its lock and is left
alone.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import select

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, DatabaseBackup, utcnow
from pgkeep.errors import PgkeepError
from pgkeep.pgtools import server as pgserver
from pgkeep.services.context import Context
from pgkeep.storage import locate

DEAD_MESSAGE = (
    "interrupted: the pgkeep process taking this backup stopped before it finished "
    "(crash, kill or shutdown); its partial files were removed"
)


def recover_interrupted(ctx: Context) -> list[str]:
    """Mark dead IN_PROGRESS backups of the configured database FAILED. Returns their ids."""
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
        _remove_partial(row, ctx)
        with ctx.catalog.session() as session:
            repo.update_backup(
                session, row.id, status=BackupStatus.FAILED, error_message=DEAD_MESSAGE, completed_at=utcnow()
            )
        recovered.append(row.id)
    return recovered


def _remove_partial(row: DatabaseBackup, ctx: Context) -> None:
    if not row.storage_url:
        return
    with contextlib.suppress(PgkeepError):
        storage, name = locate(row.storage_url, ctx.settings)
        storage.remove_incomplete(name)
        storage.delete(name)  # an uncommitted object never has the final name; idempotent
