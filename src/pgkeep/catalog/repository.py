"""Catalog queries. Functions take a Session; callers own transactions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, select
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


DEFERRED_PAGE_FROM = 1000  # skipped rows; measured break-even on PostgreSQL (docs/design.md)


def list_backups(
    session: Session,
    *,
    page: int = 1,
    limit: int = 20,
    backup_type: BackupType | None = None,
    status: BackupStatus | None = None,
    kind: str | None = None,
) -> tuple[Sequence[DatabaseBackup], int]:
    """A page of backups, newest first, and the total matching.

    Each filter shape has an index in the list's order (``started_at, id``
    after the filtered columns, see models), so a page is the next ``limit``
    index entries and the count is read from an index alone. Past
    DEFERRED_PAGE_FROM skipped rows, the page's ids are picked from the index
    first and only those rows are read: OFFSET over whole rows reads every
    skipped row (the last of 5,000 pages: 64 ms on PostgreSQL, against 11 ms).
    Nearer the top that detour costs more than it saves. ``kind`` (logical or
    physical) has its own index in that order (migration 0009); combined with
    a type or status filter, the more selective index is used.
    """
    where = []
    if kind is not None:
        where.append(DatabaseBackup.kind == kind)
    if backup_type is not None:
        where.append(DatabaseBackup.type == backup_type)
    if status is not None:
        where.append(DatabaseBackup.status == status)
    order = (DatabaseBackup.started_at.desc(), DatabaseBackup.id.desc())
    offset = (page - 1) * limit
    if offset < DEFERRED_PAGE_FROM:
        q = select(DatabaseBackup).where(*where).order_by(*order).offset(offset).limit(limit)
    else:
        ids = select(DatabaseBackup.id).where(*where).order_by(*order).offset(offset).limit(limit).subquery()
        q = select(DatabaseBackup).join(ids, DatabaseBackup.id == ids.c.id).order_by(*order)
    rows = session.scalars(q).all()
    total = int(session.scalar(select(func.count()).select_from(DatabaseBackup).where(*where)) or 0)
    return rows, total


SUCCEEDED = (BackupStatus.COMPLETED, BackupStatus.EXPIRED, BackupStatus.DELETED)  # retention may remove a success


def last_success_at(
    session: Session, database: str | None = None, backup_type: BackupType | None = None
) -> datetime | None:
    """When the newest backup (of ``database`` and ``backup_type``, if given) that succeeded
    (checksum known) completed, or None.

    Walks the ``completed_at`` (or ``(type, completed_at)``) index from the newest end and stops
    at the first success: a few rows, however large the catalog. The status test is
    cast to text on purpose: as a plain ``status IN (...)`` SQLite prefers the
    status index and reads the ~90% of rows that qualify (0.1 s at 100,000).
    """
    query = select(DatabaseBackup.completed_at).where(
        DatabaseBackup.completed_at.is_not(None),
        DatabaseBackup.checksum.is_not(None),
        cast(DatabaseBackup.status, String).in_([s.value for s in SUCCEEDED]),
    )
    if database is not None:
        query = query.where(DatabaseBackup.database_name == database)
    if backup_type is not None:
        query = query.where(DatabaseBackup.type == backup_type)
    return session.scalar(query.order_by(DatabaseBackup.completed_at.desc()).limit(1))


def all_backups(session: Session) -> Sequence[DatabaseBackup]:
    return session.scalars(select(DatabaseBackup).order_by(DatabaseBackup.started_at)).all()


def update_backup(session: Session, backup_id: str, **values: Any) -> DatabaseBackup:
    row = get_backup(session, backup_id)
    for key, value in values.items():
        setattr(row, key, value)
    session.commit()
    return row
