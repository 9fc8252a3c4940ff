"""What the admin API needs beyond the engine: API tokens and restore jobs.

Tokens look like ``pgk_<key>_<secret>``: ``key`` (12 hex digits) is public
and finds the row; only the SHA-256 of the whole token is stored, and the
presented token's hash is compared in constant time. A plain SHA-256 is
enough here (no slow KDF): the secret is 256 random bits, not a password a
person chose, so there is nothing to guess.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg.conninfo
from sqlalchemy import select, update

from pgkeep.catalog.admin_models import ApiToken, AuditOutcome, JobStatus, RestoreJob, Role
from pgkeep.catalog.models import utcnow
from pgkeep.errors import ExitCode, NotFoundError, PgkeepError
from pgkeep.pgtools import server as pgserver
from pgkeep.services.audit import Actor, add_entry
from pgkeep.services.context import Context
from pgkeep.services.restore import (
    Artifact,
    RestoreOptions,
    RestoreOutcome,
    resolve_backup,
    restore,
)
from pgkeep.services.serialize import iso

TOKEN_PREFIX = "pgk_"  # noqa: S105 - a public prefix, not a secret
_TOKEN_RE = re.compile(r"pgk_([0-9a-f]{12})_([A-Za-z0-9_-]{32,64})")
LAST_USED_RESOLUTION = timedelta(minutes=1)  # fewer catalog writes than one per request
TOKEN_NAME_MAX = 100
PROGRESS_EVERY_S = 1.0  # a restore job's bytes_read is written at most this often


class InvalidTargetDatabaseError(PgkeepError):
    """The database named for a restore cannot be restored into."""

    exit_code = ExitCode.USAGE
    http_status = 422
    code = "invalid_target_database"
    title = "Invalid target database"


class RestoreInProgressError(PgkeepError):
    exit_code = ExitCode.BUSY
    http_status = 409
    code = "restore_in_progress"
    title = "A restore is already in progress"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name for this uid (containers)
        return "unknown"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    role: Role
    key: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None = None

    @classmethod
    def of(cls, row: ApiToken) -> TokenInfo:
        return cls(
            row.id,
            row.name,
            Role(row.role),
            row.key,
            row.created_at,
            row.last_used_at,
            row.revoked_at,
            row.expires_at,
        )

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "prefix": f"{TOKEN_PREFIX}{self.key}_",
            "createdAt": iso(self.created_at),
            "lastUsedAt": iso(self.last_used_at),
            "revokedAt": iso(self.revoked_at),
            "expiresAt": iso(self.expires_at),
        }


@dataclass(frozen=True)
class NewToken:
    """A token just created: the only time ``token`` exists outside its owner's hands."""

    id: str
    name: str
    role: Role
    token: str = ""
    expires_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "token": self.token,
            "expiresAt": iso(self.expires_at),
        }


def create_token(
    ctx: Context, name: str, role: Role, *, actor: Actor | None = None, expires_in: timedelta | None = None
) -> NewToken:
    """Create a token and audit it (``token.create``); return it with its secret.

    ``expires_in``: it stops working that long from now (None: until revoked).
    """
    name = name.strip()
    if not name or len(name) > TOKEN_NAME_MAX or any(ord(c) < 32 for c in name):
        raise PgkeepError(
            f"a token name must be 1 to {TOKEN_NAME_MAX} printable characters",
            operation="create-token",
        )
    if expires_in is not None and expires_in <= timedelta(0):
        raise PgkeepError("a token's lifetime must be positive", operation="create-token")
    expires_at = utcnow() + expires_in if expires_in is not None else None
    key = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{key}_{secrets.token_urlsafe(32)}"
    actor = actor or Actor()
    with ctx.catalog.session() as session:
        row = ApiToken(key=key, token_hash=hash_token(token), name=name, role=role.value, expires_at=expires_at)
        session.add(row)
        session.flush()
        add_entry(
            session,
            actor,
            action="token.create",
            resource="api_token",
            resource_id=row.id,
            outcome=AuditOutcome.SUCCESS,
            details={"name": name, "role": role.value, "osUser": _os_user(), "expiresAt": iso(expires_at)},
        )
        session.commit()
        return NewToken(row.id, name, role, token, expires_at)


def list_tokens(ctx: Context) -> list[TokenInfo]:
    """Every token, revoked ones included, oldest first (no secrets: they are never stored)."""
    with ctx.catalog.session() as session:
        rows = session.scalars(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)).all()
        return [TokenInfo.of(r) for r in rows]


def revoke_token(ctx: Context, token_id: str, *, actor: Actor | None = None) -> str:
    """Revoke a token (it stops working at once) and audit it (``token.revoke``)."""
    with ctx.catalog.session() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise NotFoundError(f"token {token_id} not found", operation="revoke-token")
        if row.revoked_at is not None:
            return f"Token {token_id} was already revoked"
        row.revoked_at = utcnow()
        add_entry(
            session,
            actor or Actor(),
            action="token.revoke",
            resource="api_token",
            resource_id=row.id,
            outcome=AuditOutcome.SUCCESS,
            details={"name": row.name, "role": row.role, "osUser": _os_user()},
        )
        session.commit()
    return f"Token {token_id} revoked"


def authenticate(ctx: Context, presented: str) -> TokenInfo | None:
    """The token ``presented`` belongs to, or None if it is unknown or malformed.

    A revoked or expired token is returned (``revoked_at``, ``expires_at``) so the caller can say so.
    """
    match = _TOKEN_RE.fullmatch(presented)
    if match is None:
        return None
    with ctx.catalog.session() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.key == match.group(1)))
        if row is None or not hmac.compare_digest(row.token_hash, hash_token(presented)):
            return None
        now, info = utcnow(), TokenInfo.of(row)
        usable = info.revoked_at is None and not info.expired(now)
        if usable and (row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION):
            row.last_used_at = now
            session.commit()
            info = TokenInfo.of(row)
        return info


# --- restores ----------------------------------------------------------------------


class RestoreProgress:
    """Records how far a restore job has read its backup on the job's row.

    The first chunk of each pass over the backup is written at once (a pass
    starts again from 0: a dry run or a selective restore verifies first),
    then at most once every PROGRESS_EVERY_S: a catalog write per 1 MiB chunk
    would slow the restore down. Advisory: a catalog hiccup never fails the
    restore, and the next report tries again.
    """

    def __init__(self, ctx: Context, job_id: str) -> None:
        self._ctx = ctx
        self._job_id = job_id
        self._written_at = 0.0
        self.bytes_read = 0

    def __call__(self, nbytes: int) -> None:
        # One reader at a time: a pass reads its chunks in one thread, passes follow each other.
        new_pass = nbytes <= self.bytes_read or self.bytes_read == 0
        self.bytes_read = nbytes
        now = time.monotonic()
        if not new_pass and now - self._written_at < PROGRESS_EVERY_S:
            return
        self._written_at = now
        with contextlib.suppress(Exception), self._ctx.catalog.session() as session:
            session.execute(update(RestoreJob).where(RestoreJob.id == self._job_id).values(bytes_read=nbytes))
            session.commit()


@dataclass(frozen=True)
class PreparedRestore:
    """A restore that passed its checks and has a job row, ready to run."""

    job_id: str
    backup_id: str
    artifact: Artifact
    options: RestoreOptions
    target: str  # user@host:port/db
    progress: RestoreProgress


def _target_url_for(ctx: Context, database: str) -> str:
    """A connection string for ``database`` on the configured server, checked to be restorable.

    Danger: the string holds the password; it goes to RestoreOptions only,
    never into a message or a catalog row. (A database holding pgkeep's
    catalog is refused by the restore itself, whichever way it was named.)
    """
    with pgserver.connect(ctx.target, operation="restore") as conn:
        row = conn.execute(
            "SELECT datallowconn, datistemplate FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
    if row is None:
        raise InvalidTargetDatabaseError(
            f"database {database!r} does not exist on the configured server",
            operation="restore",
            hint="create it first, or omit targetDatabase to restore into the configured database",
        )
    if not row[0] or row[1]:
        raise InvalidTargetDatabaseError(
            f"database {database!r} is a template or does not accept connections",
            operation="restore",
        )
    return psycopg.conninfo.make_conninfo(ctx.target.connect_conninfo(), dbname=database)


def prepare_restore(
    ctx: Context,
    backup_id: str,
    *,
    dry_run: bool,
    target_database: str | None = None,
    requested_by: str | None = None,
    options: RestoreOptions | None = None,
) -> PreparedRestore:
    """Check that ``backup_id`` can be restored (404, 409, 422) and record a restore job."""
    artifact = resolve_backup(ctx, backup_id)
    target_url = _target_url_for(ctx, target_database) if target_database is not None else None
    target = ctx.target.with_dbname(target_database) if target_database else ctx.target
    with ctx.catalog.session() as session:
        job = RestoreJob(
            backup_id=backup_id,
            status=JobStatus.IN_PROGRESS.value,
            dry_run=dry_run,
            target=target.describe(),
            requested_by=requested_by,
            total_bytes=artifact.size,
        )
        session.add(job)
        session.commit()
        job_id = job.id
    progress = RestoreProgress(ctx, job_id)
    return PreparedRestore(
        job_id,
        backup_id,
        dataclasses.replace(artifact, on_read=progress),
        dataclasses.replace(options or RestoreOptions(), target_url=target_url, dry_run=dry_run),
        target.describe(),
        progress,
    )


def run_restore(ctx: Context, prepared: PreparedRestore) -> RestoreOutcome:
    """Run a prepared restore and record its outcome on the job row (errors are re-raised)."""
    try:
        outcome = restore(ctx, prepared.artifact, prepared.options)
    except BaseException as exc:
        message = exc.message if isinstance(exc, PgkeepError) else "the restore was interrupted"
        _finish(
            ctx,
            prepared.job_id,
            JobStatus.FAILED,
            message=message,
            error_code=exc.code if isinstance(exc, PgkeepError) else "internal_error",
            http_status=exc.http_status if isinstance(exc, PgkeepError) else 500,
            bytes_read=prepared.progress.bytes_read,
        )
        raise
    _finish(
        ctx,
        prepared.job_id,
        JobStatus.COMPLETED,
        message=outcome.message,
        checksum=outcome.checksum,
        bytes_read=prepared.progress.bytes_read,
        details=outcome.details(),
    )
    return outcome


def _finish(ctx: Context, job_id: str, status: JobStatus, **values: Any) -> None:
    with ctx.catalog.session() as session:
        job = session.get(RestoreJob, job_id)
        if job is None:  # pragma: no cover - rows are never deleted
            return
        job.status = status.value
        job.finished_at = utcnow()
        for key, value in values.items():
            setattr(job, key, value)
        session.commit()


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def restore_job_json(job: RestoreJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "backupId": job.backup_id,
        "status": job.status,
        "dryRun": job.dry_run,
        "target": job.target,
        "message": job.message,
        "errorCode": job.error_code,
        "checksum": job.checksum,
        "startedAt": iso(job.started_at),
        "finishedAt": iso(job.finished_at),
        "requestedBy": job.requested_by,
        "bytesRead": int(job.bytes_read or 0),
        "totalBytes": job.total_bytes,
        **{key: (job.details or {}).get(key) for key in ("safetyBackupId", "toastCompression", "otherSessions")},
    }


def get_restore_job(ctx: Context, backup_id: str, job_id: str) -> dict[str, Any]:
    """One restore job of ``backup_id``; unknown, malformed or another backup's id: 404."""
    with ctx.catalog.session() as session:
        job = session.get(RestoreJob, job_id) if _is_uuid(job_id) else None
        if job is None or job.backup_id != backup_id:
            raise NotFoundError(f"restore job {job_id} of backup {backup_id} not found", backup_id=backup_id)
        return restore_job_json(job)
