"""Catalog queries. Functions take a Session; callers own transactions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pgkeep.catalog.models import BackupStatus, BackupType, DatabaseBackup
from pgkeep.errors import NotFoundError


def _valid_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def get_backup(session: Session, backup_id: str) -> DatabaseBackup:
    """The backup with ``backup_id``; a malformed or unknown id is NotFoundError."""
    row = session.get(DatabaseBackup, backup_id) if _valid_uuid(backup_id) else None
    if row is None:
        raise NotFoundError(f"backup {backup_id} not found", backup_id=backup_id)
    return row


def find_by_filename(session: Session, filename: str) -> DatabaseBackup | None:
    return session.scalar(select(DatabaseBackup).where(DatabaseBackup.filename == filename))


def insert_unique(session: Session, row: DatabaseBackup, make_name: Any) -> DatabaseBackup:
    """Insert ``row`` with a filename from ``make_name(n)``, retrying on a clash.

    Two backups started in the same millisecond (same prefix and type) get
    ``-1``, ``-2`` ... suffixes instead of failing.
    """
    for attempt in range(100):
        row.filename = make_name(attempt)
        session.add(row)
        try:
            session.commit()
            return row
        except IntegrityError:
            session.rollback()
            session.expunge_all()
    raise RuntimeError("could not find a free backup filename")


def list_backups(
    session: Session,
    *,
    page: int = 1,
    limit: int = 20,
    backup_type: BackupType | None = None,
    status: BackupStatus | None = None,
) -> tuple[Sequence[DatabaseBackup], int]:
    """A page of backups, newest first, and the total matching."""
    q = select(DatabaseBackup)
    count_q = select(func.count()).select_from(DatabaseBackup)
    if backup_type is not None:
        q = q.where(DatabaseBackup.type == backup_type)
        count_q = count_q.where(DatabaseBackup.type == backup_type)
    if status is not None:
        q = q.where(DatabaseBackup.status == status)
        count_q = count_q.where(DatabaseBackup.status == status)
    q = q.order_by(DatabaseBackup.started_at.desc(), DatabaseBackup.id.desc())
    rows = session.scalars(q.offset((page - 1) * limit).limit(limit)).all()
    total = int(session.scalar(count_q) or 0)
    return rows, total


def all_backups(session: Session) -> Sequence[DatabaseBackup]:
    return session.scalars(select(DatabaseBackup).order_by(DatabaseBackup.started_at)).all()


def update_backup(session: Session, backup_id: str, **values: Any) -> DatabaseBackup:
    row = get_backup(session, backup_id)
    for key, value in values.items():
        setattr(row, key, value)
    session.commit()
    return row
