"""The catalog's tables: the spec's ``database_backups`` and its enums.

Column names, the unique key and the indexes follow the spec's Prisma model
(``@@map`` names, Prisma's index naming). Columns after the spec's own are
pgkeep additions.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Enum, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class BackupType(str, enum.Enum):
    FULL = "FULL"
    INCREMENTAL = "INCREMENTAL"
    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"
    PRE_MIGRATION = "PRE_MIGRATION"


class BackupStatus(str, enum.Enum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite keeps no time zone: values are stored as naive UTC and come back
    aware, so comparisons with ``datetime.now(UTC)`` never mix kinds.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# DatabaseBackup.kind: a pg_dump of one database, or a base backup of the whole cluster.
LOGICAL = "logical"
PHYSICAL = "physical"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class DatabaseBackup(Base):
    __tablename__ = "database_backups"
    __table_args__ = (
        Index("database_backups_status_idx", "status"),
        Index("database_backups_type_idx", "type"),
        Index("database_backups_created_by_id_idx", "created_by_id"),
        Index("database_backups_expires_at_idx", "expires_at"),
        # The lists' order (started_at DESC, id DESC) for each filter shape, id included:
        # a page and its count come from the index alone (migration 0008, docs/design.md).
        Index("database_backups_started_at_idx", "started_at", "id"),
        Index("database_backups_status_started_at_idx", "status", "started_at", "id"),
        Index("database_backups_type_started_at_idx", "type", "started_at", "id"),
        Index("database_backups_type_status_started_at_idx", "type", "status", "started_at", "id"),
        Index("database_backups_kind_started_at_idx", "kind", "started_at", "id"),  # migration 0009
        Index("database_backups_completed_at_idx", "completed_at"),  # the last success
        Index("database_backups_type_completed_at_idx", "type", "completed_at"),  # migration 0011: /metrics
        UniqueConstraint("filename", name="database_backups_filename_key"),
    )

    # --- the spec's fields ---
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    filename: Mapped[str] = mapped_column(Text, nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    type: Mapped[BackupType] = mapped_column(
        Enum(BackupType, name="BackupType", native_enum=True, validate_strings=True),
        nullable=False,
    )
    status: Mapped[BackupStatus] = mapped_column(
        Enum(BackupStatus, name="BackupStatus", native_enum=True, validate_strings=True),
        nullable=False,
        default=BackupStatus.PENDING,
    )
    storage_url: Mapped[str | None] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(String(64))
    # "metadata" is reserved on declarative classes: the attribute is metadata_.
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by_id: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)

    # --- pgkeep additions ---
    database_name: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str | None] = mapped_column(String(16))
    compression: Mapped[str | None] = mapped_column(String(16))
    # "age" when the stored bytes are encrypted; the recipients' fingerprints are in metadata.
    encryption: Mapped[str | None] = mapped_column(String(16))
    server_version: Mapped[str | None] = mapped_column(String(32))
    pg_dump_version: Mapped[str | None] = mapped_column(String(32))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    bytes_written: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    keep: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    last_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_verify_level: Mapped[str | None] = mapped_column(String(16))
    last_verify_ok: Mapped[bool | None] = mapped_column(Boolean)

    # --- physical backups (pg_basebackup + archived WAL; see services/physical.py) ---
    # "logical" (pg_dump) or "physical" (a base backup of the whole cluster).
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default=LOGICAL, server_default=LOGICAL)
    timeline: Mapped[int | None] = mapped_column(Integer)
    start_lsn: Mapped[str | None] = mapped_column(String(32))  # text form, e.g. 0/2000028
    end_lsn: Mapped[str | None] = mapped_column(String(32))  # the backup is consistent from here on
    backup_start_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # server clock
    backup_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # server clock, at or after the end
    wal_start: Mapped[str | None] = mapped_column(String(64))  # first WAL segment a restore needs
    wal_end: Mapped[str | None] = mapped_column(String(64))  # segment holding end_lsn
    parent_id: Mapped[str | None] = mapped_column(String(36))  # an incremental's base backup


class JobRun(Base):
    """One run of a job: a scheduled tick (with a unique ``key``, so a tick runs
    at most once however many instances share the catalog) or a manual run
    (``key`` NULL). Metrics and alerts read the latest runs from here."""

    __tablename__ = "job_runs"
    __table_args__ = (
        UniqueConstraint("key", name="job_runs_key_key"),
        Index("job_runs_job_started_at_idx", "job", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    key: Mapped[str | None] = mapped_column(String(200))
    job: Mapped[str] = mapped_column(String(64), nullable=False)
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # running|succeeded|failed|skipped|missed
    instance: Mapped[str | None] = mapped_column(String(200))
    backup_id: Mapped[str | None] = mapped_column(String(36))
    message: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BackupVerification(Base):
    """Every verification of a backup: level, outcome, time and duration."""

    __tablename__ = "backup_verifications"
    __table_args__ = (
        Index("backup_verifications_backup_id_idx", "backup_id", "started_at"),
        Index("backup_verifications_level_started_at_idx", "level", "started_at"),  # the last drill
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    backup_id: Mapped[str] = mapped_column(String(36), nullable=False)
    level: Mapped[str] = mapped_column(String(16), nullable=False)  # checksum|archive|restore
    valid: Mapped[bool] = mapped_column(Boolean, nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
