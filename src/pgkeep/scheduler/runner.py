"""Running one tick of a job exactly once, however many instances share the catalog.

A tick is claimed by inserting its key (job + scheduled time) into
``job_runs``; the unique constraint lets exactly one instance win.
The backup jobs also hold the target's advisory lock (inside
``create_backup`` and ``create_physical_backup``: the same lock), so even
instances with separate catalogs never run two backups of one database at
once; losing that race is "skipped", not a failure.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pgkeep.catalog.models import LOGICAL, PHYSICAL, BackupStatus, BackupType, DatabaseBackup, JobRun, utcnow
from pgkeep.errors import BackupInProgressError, PgkeepError, VerificationError
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.manage import cleanup_expired
from pgkeep.services.physical import create_physical_backup
from pgkeep.services.verify import VerifyLevel, verify_backup

log = logging.getLogger("pgkeep.scheduler")
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class TickOutcome:
    job: str
    scheduled_for: datetime
    status: str  # succeeded | failed | skipped | duplicate | missed
    message: str = ""
    backup_id: str | None = None


def tick_key(job: str, scheduled_for: datetime) -> str:
    return f"{job}@{scheduled_for.isoformat()}"


def claim(
    ctx: Context, job: str, scheduled_for: datetime, status: str = "running", message: str | None = None
) -> JobRun | None:
    """Record the tick; None if another instance has it already."""
    with ctx.catalog.session() as session:
        run = JobRun(
            key=tick_key(job, scheduled_for),
            job=job,
            scheduled_for=scheduled_for,
            status=status,
            instance=INSTANCE,
            message=message,
        )
        session.add(run)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return None
        return run


def _finish(
    ctx: Context,
    run: JobRun,
    status: str,
    message: str,
    backup_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    with ctx.catalog.session() as session:
        row = session.get(JobRun, run.id)
        if row is not None:
            row.status, row.message, row.backup_id, row.finished_at = status, message, backup_id, utcnow()
            row.details = details
            session.commit()


JobResult = tuple[str, str | None, dict[str, Any] | None]


def _backup(ctx: Context) -> JobResult:
    result = create_backup(ctx, backup_type=BackupType.SCHEDULED)
    return f"backup {result.filename} ({result.size} bytes)", result.id, result.as_json()


def _physical(backup_type: BackupType) -> Callable[[Context], JobResult]:
    """A scheduled base backup. FULL or INCREMENTAL (not SCHEDULED): for a physical backup the type says
    what a point-in-time restore needs to know, whether it stands alone or builds on its parent."""

    def job(ctx: Context) -> JobResult:
        result = create_physical_backup(ctx, backup_type=backup_type)
        return f"physical backup {result.filename} ({result.size} bytes)", result.id, result.as_json()

    return job


def _cleanup(ctx: Context) -> JobResult:
    summary = cleanup_expired(ctx, record=False).as_json()
    return str(summary["message"]), None, summary


def _drill(ctx: Context) -> JobResult:
    """Restore the newest COMPLETED backup of each kind (logical into a scratch database,
    physical into a scratch data directory) and check it: a cluster that also takes
    physical backups must not stop proving its logical ones, nor the other way round."""
    newest: list[str] = []
    for kind in (LOGICAL, PHYSICAL):
        with ctx.catalog.session() as session:
            found = session.scalar(
                select(DatabaseBackup.id)
                .where(DatabaseBackup.status == BackupStatus.COMPLETED, DatabaseBackup.kind == kind)
                .order_by(DatabaseBackup.started_at.desc())
                .limit(1)
            )
        if found is not None:
            newest.append(found)
    if not newest:
        return "no COMPLETED backup to drill", None, None
    verdicts = [(backup_id, verify_backup(ctx, backup_id, VerifyLevel.RESTORE)) for backup_id in newest]
    failed = [(backup_id, v) for backup_id, v in verdicts if not v.valid]
    for backup_id, verdict in failed:
        ctx.notifier.send(
            "drill.failed",
            f"restore drill of backup {backup_id} FAILED: {verdict.message}",
            backupId=backup_id,
            error=verdict.message,
        )
    if failed:
        raise VerificationError(
            "; ".join(f"{backup_id}: {v.message}" for backup_id, v in failed), backup_id=failed[0][0]
        )
    message = "; ".join(v.message for _, v in verdicts)
    details = verdicts[0][1].as_json() if len(verdicts) == 1 else {b: v.as_json() for b, v in verdicts}
    return message, newest[0], details


JOBS: dict[str, Callable[[Context], JobResult]] = {
    "backup": _backup,
    "cleanup": _cleanup,
    "drill": _drill,
    "physical-backup": _physical(BackupType.FULL),
    "physical-incremental": _physical(BackupType.INCREMENTAL),
}


def run_tick(ctx: Context, job: str, scheduled_for: datetime) -> TickOutcome:
    """Run ``job`` for the tick at ``scheduled_for`` unless another instance claimed it."""
    run = claim(ctx, job, scheduled_for)
    if run is None:
        log.info("tick %s already claimed by another instance", tick_key(job, scheduled_for))
        return TickOutcome(job, scheduled_for, "duplicate", "claimed by another instance")
    try:
        message, backup_id, details = JOBS[job](ctx)
    except BackupInProgressError as exc:
        _finish(ctx, run, "skipped", exc.message)
        return TickOutcome(job, scheduled_for, "skipped", exc.message)
    except PgkeepError as exc:
        _finish(ctx, run, "failed", exc.message, exc.backup_id)
        log.error("scheduled %s failed: %s", job, exc.message)
        return TickOutcome(job, scheduled_for, "failed", exc.message, exc.backup_id)
    _finish(ctx, run, "succeeded", message, backup_id, details)
    log.info("scheduled %s done: %s", job, message)
    return TickOutcome(job, scheduled_for, "succeeded", message, backup_id)
