"""``/summary``: how recoverable things are right now, for the dashboard's header (viewer role).

One cheap read the dashboard polls every second or two: the time since the
last successful backup and the last successful restore drill, whether each
is older than its alert window, and what is running (backups with their
bytes so far, restores). Counts, times and ids only: nothing a viewer may not see.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from pgkeep.api.auth import Principal, require
from pgkeep.api.problems import problem_responses
from pgkeep.api.state import AdminApi, get_api
from pgkeep.catalog import repository as repo
from pgkeep.catalog.admin_models import JobStatus, RestoreJob, Role
from pgkeep.catalog.models import BackupStatus, BackupVerification, DatabaseBackup, utcnow
from pgkeep.errors import PgkeepError
from pgkeep.scheduler.ticks import trigger
from pgkeep.services.context import Context
from pgkeep.services.serialize import iso

RUNNING_LIMIT = 20


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


class Freshness(_Response):
    at: str | None = Field(description="When it last succeeded; null if never.")
    ageSeconds: int | None = None
    windowHours: float = Field(description="Older than this is overdue.")
    stale: bool = Field(description="True when never, or older than windowHours.")


class RunningBackup(_Response):
    id: str
    type: str
    status: str
    startedAt: str | None = None
    bytesWritten: int = 0
    databaseName: str | None = None


class RunningRestore(_Response):
    id: str
    kind: Literal["logical", "physical"] = Field(
        "logical", description="logical: into a database; physical: a point-in-time restore into a data directory."
    )
    backupId: str
    dryRun: bool
    startedAt: str | None = None
    bytesRead: int = 0
    totalBytes: int | None = None


class Summary(_Response):
    now: str = Field(description="The server's clock, so a client can compute elapsed times without skew.")
    database: str | None = Field(None, description="The configured database (what a restore replaces by default).")
    alertWindowHours: float
    lastBackup: Freshness
    lastRestoreDrill: Freshness
    runningBackups: list[RunningBackup]
    runningRestores: list[RunningRestore]


def _freshness(at: datetime | None, window: timedelta, now: datetime) -> dict[str, Any]:
    age = None if at is None else max(0, int((now - at).total_seconds()))
    return {
        "at": iso(at),
        "ageSeconds": age,
        "windowHours": round(window.total_seconds() / 3600, 4),  # 0.001 h (3.6 s) is not 0
        "stale": at is None or now - at > window,
    }


def drill_window(ctx: Context, now: datetime) -> timedelta:
    """How old the last drill may be: one drill interval plus the alert window.

    Drills run weekly by default; judged by the backup window alone (26 h)
    the drill would be overdue six days in seven, and a warning that is
    always on is one nobody reads.
    """
    settings = ctx.settings
    alert = timedelta(hours=settings.alert_no_backup_hours)
    if not settings.drill_cron:  # no scheduled drills: judged by the backup window
        return alert
    schedule = trigger(settings.drill_cron, settings.schedule_timezone)
    first = schedule.get_next_fire_time(None, now)
    second = schedule.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
    return alert + (second - first if first and second else timedelta(0))


def summarize(ctx: Context, now: datetime | None = None) -> dict[str, Any]:
    """The dashboard summary (see :class:`Summary`)."""
    now = now or utcnow()
    with ctx.catalog.session() as session:
        # The alert's definition of success (observability.freshness), read through the
        # completed_at index: the dashboard polls this every second or two.
        last_backup = repo.last_success_at(session, ctx.database_name)
        drill = session.scalar(
            select(BackupVerification.started_at)
            .where(BackupVerification.level == "restore", BackupVerification.valid.is_(True))
            .order_by(BackupVerification.started_at.desc())
            .limit(1)
        )
        backups = session.scalars(
            select(DatabaseBackup)
            .where(DatabaseBackup.status.in_([BackupStatus.PENDING, BackupStatus.IN_PROGRESS]))
            .order_by(DatabaseBackup.started_at.desc())
            .limit(RUNNING_LIMIT)
        ).all()
        restores = session.scalars(
            select(RestoreJob)
            .where(RestoreJob.status == JobStatus.IN_PROGRESS.value)
            .order_by(RestoreJob.started_at.desc())
            .limit(RUNNING_LIMIT)
        ).all()
        running_backups = [
            {
                "id": b.id,
                "type": b.type.value,
                "status": b.status.value,
                "startedAt": iso(b.started_at),
                "bytesWritten": int(b.bytes_written or 0),
                "databaseName": b.database_name,
            }
            for b in backups
        ]
        running_restores = [
            {
                "id": r.id,
                "kind": r.kind,
                "backupId": r.backup_id,
                "dryRun": r.dry_run,
                "startedAt": iso(r.started_at),
                "bytesRead": int(r.bytes_read or 0),
                "totalBytes": r.total_bytes,
            }
            for r in restores
        ]
    try:
        database: str | None = ctx.target.dbname
    except PgkeepError:  # no DATABASE_URL: the dashboard still shows the catalog
        database = None
    alert = timedelta(hours=ctx.settings.alert_no_backup_hours)
    return {
        "now": iso(now),
        "database": database,
        "alertWindowHours": ctx.settings.alert_no_backup_hours,
        "lastBackup": _freshness(last_backup, alert, now),
        "lastRestoreDrill": _freshness(drill, drill_window(ctx, now), now),
        "runningBackups": running_backups,
        "runningRestores": running_restores,
    }


def summary(api: Annotated[AdminApi, Depends(get_api)], _: Annotated[Principal, Depends(require(Role.VIEWER))]) -> Any:
    """Time since the last successful backup and restore drill (``stale`` past the alert window),
    and the backups and restores running now."""
    return summarize(api.ctx)


def register(router: APIRouter) -> None:
    router.add_api_route(
        "/summary",
        summary,
        methods=["GET"],
        response_model=Summary,
        operation_id="getSummary",
        summary="Recoverability at a glance",
        name="pgkeep_summary",
        tags=["dashboard"],
        responses=problem_responses(401, 403, 500),
    )
