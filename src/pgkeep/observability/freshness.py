"""The "no successful backup for too long" alert."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import JobRun, utcnow
from pgkeep.services.context import Context

ALERT_JOB = "stale-alert"


def last_success(ctx: Context) -> datetime | None:
    """The configured database's newest success: another database's backup (or a safety
    backup of a restore target) says nothing about this one."""
    with ctx.catalog.session() as session:
        return repo.last_success_at(session, ctx.database_name)


def check_freshness(ctx: Context, now: datetime | None = None) -> bool:
    """Alert (once per stale episode) when no backup succeeded within the window. True if alerted."""
    now = now or utcnow()
    window = timedelta(hours=ctx.settings.alert_no_backup_hours)
    last = last_success(ctx)
    if last is not None and now - last <= window:
        return False
    with ctx.catalog.session() as session:
        since = last or datetime.min.replace(tzinfo=now.tzinfo)
        already = session.scalar(
            select(func.count()).select_from(JobRun).where(JobRun.job == ALERT_JOB, JobRun.started_at > since)
        )
        if already:
            return False
        text = (
            f"no successful backup for more than {ctx.settings.alert_no_backup_hours:g} hours "
            f"(last: {last.isoformat() if last else 'never'})"
        )
        session.add(JobRun(job=ALERT_JOB, status="succeeded", message=text, started_at=now, finished_at=now))
        session.commit()
    ctx.notifier.send("backup.stale", text, lastSuccess=last.isoformat() if last else None)
    return True
