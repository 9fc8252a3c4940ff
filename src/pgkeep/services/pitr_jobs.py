"""Point-in-time restores requested through the API: a new data directory under a configured root.

The CLI names any data directory; a remote client must not. So the API's
restores go only to ``PGKEEP_PITR_DATA_ROOT/<directory>``, where
``<directory>`` is one plain path component (no ``/``, no ``..``, not
hidden) that is absent or empty: a running cluster's data directory is
never empty, so no request can overwrite one. Without the setting the API
refuses them (409), since a default root would put clusters wherever the
server happened to run.

Each restore is a ``RestoreJob`` row of kind ``physical`` (``target`` its
data directory, ``details`` the request and, once done, where recovery
stopped), so it is polled like a logical restore job. Everything
``pitr.plan`` refuses is refused before the row or the directory exists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import secrets
import socket
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgkeep.catalog.admin_models import JobStatus, RestoreJob
from pgkeep.catalog.models import PHYSICAL, DatabaseBackup, utcnow
from pgkeep.errors import ExitCode, InvalidRequestError, NotFoundError, PgkeepError
from pgkeep.pgtools import postmaster
from pgkeep.services import pitr
from pgkeep.services.admin import RestoreProgress
from pgkeep.services.context import Context
from pgkeep.services.pitr import DataDirectoryTakenError, PitrOptions, PitrResult, RecoveryTarget
from pgkeep.services.serialize import iso

KIND = PHYSICAL
# One path component: starts with a letter or digit (so never ".", ".." or hidden), no "/".
DIRECTORY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
ROOT_SETTING = "PGKEEP_PITR_DATA_ROOT"


class PitrNotConfiguredError(PgkeepError):
    """The API has no root to create data directories under (or it is unusable)."""

    exit_code = ExitCode.CONFIG
    http_status = 409
    code = "pitr_not_configured"
    title = "Point-in-time restores are not configured"


class PortInUseError(PgkeepError):
    exit_code = ExitCode.CONFLICT
    http_status = 409
    code = "port_in_use"
    title = "The port is in use"


@dataclass(frozen=True)
class PitrRequest:
    """What a client asks for; ``directory`` None lets pgkeep choose a new name."""

    target: RecoveryTarget
    directory: str | None = None
    backup_id: str | None = None
    start: bool = False
    port: int | None = None


@dataclass(frozen=True)
class PitrPlan:
    """A checked request: the directory, the options for ``restore_physical`` and the chain it will use."""

    directory: str
    options: PitrOptions
    chain: list[DatabaseBackup]
    checks: list[str]

    @property
    def backup_id(self) -> str:
        return self.chain[-1].id

    def details(self) -> dict[str, Any]:
        """The request as recorded on the job and in the audit log (no secrets, no paths but the new one)."""
        target = self.options.target
        return {
            "kind": KIND,
            "directory": self.directory,
            "target": {"kind": target.kind.value, "value": target.value},
            "backupId": self.backup_id,
            "chain": [r.id for r in self.chain],
            "start": self.options.start,
            "port": self.options.port,
        }

    def as_json(self) -> dict[str, Any]:
        """The dry run's answer: what a restore would do, having written nothing."""
        return {
            "message": f"Would restore backup {self.backup_id} into {self.directory} and recover to "
            f"{self.options.target.describe()}" + (" (then start it)" if self.options.start else ""),
            "dryRun": True,
            **self.details(),
            "dataDir": str(self.options.data_dir),
            "chain": [_link_json(r) for r in self.chain],
            "checks": self.checks,
        }


@dataclass(frozen=True)
class PreparedPitr:
    """A planned restore with its job row and its (claimed) directory, ready to run."""

    job_id: str
    plan: PitrPlan
    created_dir: bool  # this request made the directory: remove it again if the restore leaves it empty


def _link_json(row: DatabaseBackup) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type.value,
        "parentId": row.parent_id,
        "timeline": row.timeline,
        "endLsn": row.end_lsn,
        "backupEndAt": iso(row.backup_end_at),
    }


def new_directory_name() -> str:
    """``pitr-<UTC time>-<8 hex>``: sorts by time, never clashes in practice."""
    return f"pitr-{utcnow().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def data_root(ctx: Context) -> Path:
    """The configured root, checked to be a directory; PitrNotConfiguredError (409) otherwise."""
    root = ctx.settings.pitr_data_root
    if root is None:
        raise PitrNotConfiguredError(
            "point-in-time restores through the API are not configured: the server has no root "
            "for new data directories",
            operation="restore",
            hint=f"set {ROOT_SETTING} to a directory the PostgreSQL OS user can reach, or restore with "
            "`pgkeep restore --kind physical --data-dir DIR` on the server",
        )
    if not root.is_dir():
        raise PitrNotConfiguredError(
            f"{ROOT_SETTING} is set, but it is not an existing directory",
            operation="restore",
            hint="create it (owned by the user running pgkeep, reachable by the PostgreSQL OS user)",
        )
    return root


def data_dir_for(ctx: Context, directory: str) -> Path:
    """``root/directory`` after checking the name is one safe component and the directory is free."""
    root = data_root(ctx)
    if not DIRECTORY_RE.fullmatch(directory):
        raise InvalidRequestError(
            f"directory {directory!r} is not a plain name (letters, digits, '.', '_', '-'; no '/' or leading '.')",
            operation="restore",
        )
    path = root / directory
    try:
        info = path.lstat()
    except FileNotFoundError:
        return path
    # A symlink could point anywhere, even at a running cluster's parent: never follow one.
    if not stat.S_ISDIR(info.st_mode) or any(path.iterdir()):
        raise DataDirectoryTakenError(
            f"directory {directory} exists and is not an empty directory; a point-in-time restore never overwrites one",
            operation="restore",
            hint="name a new directory, or omit it to let pgkeep choose one",
        )
    return path


def _check_port(port: int) -> None:
    """Refuse a port something already listens on (the restored server would fail to start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUseError(
                f"port {port} is in use on the server", operation="restore", hint="choose another, or omit port"
            ) from None


def plan(ctx: Context, request: PitrRequest) -> PitrPlan:
    """Check everything a restore would check, write nothing (a dry run is exactly this).

    Raises the 4xx refusals of ``pitr.plan`` (target before the oldest backup,
    beyond the archive, a hole, an unusable backup) and this module's own.
    """
    directory = request.directory or new_directory_name()
    data_dir = data_dir_for(ctx, directory)
    if request.start and request.port is not None:
        _check_port(request.port)
    options = PitrOptions(data_dir, request.target, backup_id=request.backup_id, start=request.start, port=request.port)
    chosen = pitr.plan(ctx, options)
    checks = [
        f"data directory {directory} is {'empty' if data_dir.exists() else 'absent'}",
        f"backup chain complete: {len(chosen.chain)} backup{'s' if len(chosen.chain) > 1 else ''}, "
        f"the last consistent from {pitr.format_end(chosen.chain[-1])}",
    ]
    if request.target.kind is not pitr.TargetKind.IMMEDIATE:
        checks.append("archived WAL reaches the target with no hole")
    if request.start:
        postmaster.server_bin_dir(chosen.major, ctx.settings.pg_bin_dir)  # ConfigError if missing
        checks.append(f"PostgreSQL {chosen.major} server binaries found to start the restored cluster")
    return PitrPlan(directory, options, chosen.chain, checks)


def prepare(ctx: Context, request: PitrRequest, *, requested_by: str | None = None) -> PreparedPitr:
    """Plan, claim the directory and record the job (IN_PROGRESS); refusals leave nothing behind.

    The caller must keep other restores in this process off the same
    directory until the job ends: an empty directory given by name cannot be
    claimed atomically on disk (a new one can: ``mkdir`` fails if it exists).
    """
    the_plan = plan(ctx, request)
    data_dir = the_plan.options.data_dir
    created = False
    try:
        os.mkdir(data_dir, 0o700)
        created = True
    except FileExistsError:
        data_dir_for(ctx, the_plan.directory)  # still empty? (another request may have filled it)
    try:
        with ctx.catalog.session() as session:
            job = RestoreJob(
                backup_id=the_plan.backup_id,
                kind=KIND,
                status=JobStatus.IN_PROGRESS.value,
                dry_run=False,
                target=str(data_dir),
                requested_by=requested_by,
                details=the_plan.details(),
                total_bytes=pitr.chain_size(the_plan.chain),
            )
            session.add(job)
            session.commit()
            job_id = job.id
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                data_dir.rmdir()
        raise
    return PreparedPitr(job_id, the_plan, created)


def run(ctx: Context, prepared: PreparedPitr) -> PitrResult:
    """Run a prepared restore and record its outcome on the job row (errors are re-raised).

    A failure leaves the directory as it was found (``restore_physical``
    empties it), except when recovery itself failed: that cluster is left
    for inspection, as the CLI does.
    """
    the_plan = prepared.plan
    progress = RestoreProgress(ctx, prepared.job_id)
    options = dataclasses.replace(the_plan.options, on_read=progress)
    try:
        result = pitr.restore_physical(ctx, options)
    except BaseException as exc:
        if prepared.created_dir:
            with contextlib.suppress(OSError):
                the_plan.options.data_dir.rmdir()  # only if empty
        known = exc if isinstance(exc, PgkeepError) else None
        _finish(
            ctx,
            prepared.job_id,
            JobStatus.FAILED,
            message=known.message if known else "the restore was interrupted",
            error_code=known.code if known else "internal_error",
            http_status=known.http_status if known else 500,
            bytes_read=progress.bytes_read,
        )
        raise
    _finish(
        ctx,
        prepared.job_id,
        JobStatus.COMPLETED,
        message=result.message,
        bytes_read=progress.bytes_read,
        details=the_plan.details() | {"result": result.as_json()},
    )
    return result


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


def job_json(job: RestoreJob) -> dict[str, Any]:
    """A point-in-time restore job as the API shows it."""
    details = dict(job.details or {})
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "backupId": job.backup_id,
        "chain": details.get("chain", [job.backup_id]),
        "directory": details.get("directory"),
        "dataDir": job.target,
        "target": details.get("target"),
        "start": bool(details.get("start")),
        "port": details.get("port"),
        "message": job.message,
        "errorCode": job.error_code,
        "startedAt": iso(job.started_at),
        "finishedAt": iso(job.finished_at),
        "requestedBy": job.requested_by,
        "bytesRead": int(job.bytes_read or 0),
        "totalBytes": job.total_bytes,
        "result": details.get("result"),
    }


def get_job(ctx: Context, job_id: str) -> dict[str, Any]:
    """One point-in-time restore job; unknown, malformed or a logical restore's id: 404."""
    with ctx.catalog.session() as session:
        job = session.get(RestoreJob, job_id) if _is_uuid(job_id) else None
        if job is None or job.kind != KIND:
            raise NotFoundError(f"point-in-time restore job {job_id} not found")
        return job_json(job)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
