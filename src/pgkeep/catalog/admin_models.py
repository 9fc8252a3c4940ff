"""Catalog tables of the admin API: API tokens, the audit log, restore jobs.

Kept apart from ``models.py`` (the spec's backup table) so the engine's
tables and the API's can evolve separately; both register on the same
``Base.metadata``, which the migrations compare against.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pgkeep.catalog.models import Base, UTCDateTime, new_id, utcnow


class Role(enum.StrEnum):
    """API roles, each including the rights of the ones before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class AuditOutcome(enum.StrEnum):
    STARTED = "started"  # written before long work begins (a restore, an async backup)
    SUCCESS = "success"
    FAILURE = "failure"  # the operation was refused (404, 409, 422) or failed; see ``error``
    DENIED = "denied"  # refused by authentication or authorization (401, 403)


class JobStatus(enum.StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class ApiToken(Base):
    """An API token. Only the SHA-256 of the token is stored; ``key`` is its public part."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("key", name="api_tokens_key_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # The non-secret lookup part of the token (``pgk_<key>_<secret>``), shown in listings.
    key: Mapped[str] = mapped_column(String(32), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # None: never


class AuditLog(Base):
    """One audited event. Append-only: nothing in pgkeep updates or deletes these rows."""

    __tablename__ = "audit_logs"
    __table_args__ = (
        Index("audit_logs_created_at_idx", "created_at"),
        Index("audit_logs_action_idx", "action"),
        Index("audit_logs_admin_id_idx", "admin_id"),
        Index("audit_logs_resource_id_idx", "resource_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    admin_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    resource: Mapped[str] = mapped_column(String(64), nullable=False)
    resource_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    # For failure and denied: {"status", "code", "message"}.
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class RestoreJob(Base):
    """One restore requested through the API: what the client polls after ``202``.

    ``kind`` logical: a pg_dump backup into a database (``target`` user@host:port/db);
    physical: a point-in-time restore into a new data directory (``target`` its path,
    ``details`` the recovery target, the chain and, once done, where recovery stopped).
    """

    __tablename__ = "restore_jobs"
    __table_args__ = (Index("restore_jobs_backup_id_idx", "backup_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    backup_id: Mapped[str] = mapped_column(String(36), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    dry_run: Mapped[bool] = mapped_column(Boolean, nullable=False)
    target: Mapped[str | None] = mapped_column(Text)  # user@host:port/db, never a password
    message: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    http_status: Mapped[int | None] = mapped_column(Integer)
    checksum: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    requested_by: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="logical", server_default="logical")
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Progress: bytes of the stored backup read by the restore's current pass, of total_bytes.
    bytes_read: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    total_bytes: Mapped[int | None] = mapped_column(BigInteger)
