"""The worker: catch up on a missed tick, then run the cron schedule (and ``pgkeep check`` once, logged).

APScheduler's BackgroundScheduler fires the jobs; each job computes the tick
it belongs to (the latest fire time) and hands it to :func:`run_tick`, which
makes it exactly-once across instances. Each job runs in one scheduler
thread from start to end, which also starts and waits for pg_dump (children
die with the thread that spawned them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from pgkeep.catalog.models import JobRun, utcnow
from pgkeep.errors import PgkeepError
from pgkeep.observability.freshness import check_freshness
from pgkeep.scheduler.runner import TickOutcome, claim, run_tick
from pgkeep.scheduler.ticks import previous_fire_time, trigger
from pgkeep.services.check import CheckOptions, run_checks
from pgkeep.services.context import Context
from pgkeep.services.recovery import recover_interrupted

log = logging.getLogger("pgkeep.scheduler")
FRESHNESS_EVERY_MIN = 15


@dataclass(frozen=True)
class JobSpec:
    name: str
    cron: str


def job_specs(ctx: Context) -> list[JobSpec]:
    """The scheduled jobs whose cron expression is set (an empty one turns a job off)."""
    s = ctx.settings
    crons = [
        ("backup", s.backup_cron),
        ("cleanup", s.cleanup_cron),
        ("drill", s.drill_cron),
        ("physical-backup", s.physical_backup_cron),
        ("physical-incremental", s.physical_incremental_cron),
    ]
    return [JobSpec(name, cron) for name, cron in crons if cron]


def _last_run(ctx: Context, job: str) -> datetime | None:
    with ctx.catalog.session() as session:
        return session.scalar(
            select(JobRun.scheduled_for)
            .where(JobRun.job == job, JobRun.scheduled_for.is_not(None))
            .order_by(JobRun.scheduled_for.desc())
            .limit(1)
        )


def catch_up(ctx: Context, now: datetime | None = None) -> list[TickOutcome]:
    """Run each job's latest missed tick once if it is within the grace period; report it otherwise.

    Only the latest tick matters: several missed daily backups are not run
    one after another on start.
    """
    now = now or utcnow()
    grace = timedelta(seconds=ctx.settings.schedule_grace_seconds)
    outcomes = []
    for spec in job_specs(ctx):
        due = previous_fire_time(spec.cron, now, ctx.settings.schedule_timezone)
        if due is None:
            continue
        last = _last_run(ctx, spec.name)
        if last is not None and last >= due:
            continue
        within_grace = now - due <= grace
        if last is None and not within_grace:
            continue  # first start of this deployment: no tick was expected yet
        if within_grace:
            log.warning("running missed %s tick of %s", spec.name, due.isoformat())
            outcomes.append(run_tick(ctx, spec.name, due))
        else:
            message = (
                f"missed the {spec.name} tick of {due.isoformat()}: nothing was running then "
                f"and it is older than the grace period ({int(grace.total_seconds())} s)"
            )
            if claim(ctx, spec.name, due, status="missed", message=message) is not None:
                log.error(message)
                outcomes.append(TickOutcome(spec.name, due, "missed", message))
    return outcomes


class Worker:
    """Runs the schedule in background threads until :meth:`stop`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.scheduler = BackgroundScheduler(timezone=ctx.settings.schedule_timezone)

    def _fire(self, spec: JobSpec) -> None:
        now = utcnow()
        due = previous_fire_time(spec.cron, now + timedelta(seconds=1), self.ctx.settings.schedule_timezone)
        if due is not None:
            run_tick(self.ctx, spec.name, due)

    def _check_freshness(self) -> None:
        try:
            check_freshness(self.ctx)
        except Exception as exc:  # an alert check must never kill the scheduler thread
            log.error("freshness check failed: %s", exc)

    def _check_readiness(self) -> None:
        """``pgkeep check`` once, at start: a broken setup shows in the log now, not at the night's backup."""
        settings = self.ctx.settings
        physical = bool(settings.physical_backup_cron or settings.physical_incremental_cron)
        try:
            checks = run_checks(self.ctx, CheckOptions(physical=physical))
        except Exception as exc:  # never kill the scheduler thread
            log.error("readiness check could not run: %s", exc)
            return
        for check in checks:
            if check.status in ("fail", "warn"):
                level = logging.ERROR if check.status == "fail" else logging.WARNING
                hint = f" (fix: {check.hint})" if check.hint else ""
                log.log(level, "readiness: %s %s: %s%s", check.name, check.status, check.detail, hint)
        failed = [c for c in checks if c.status == "fail"]
        if not failed:
            log.info("readiness: no check failed (%s)", ", ".join(f"{c.name} {c.status}" for c in checks))
            return
        # Unattended, nobody reads the log at start: the alert goes where backup failures go.
        self.ctx.notifier.send(
            "check.failed",
            f"{len(failed)} readiness check{'s' if len(failed) > 1 else ''} failed as the worker started: "
            + "; ".join(f"{c.name}: {c.detail}" for c in failed),
            checks=[c.as_json() for c in failed],
        )

    def start(self) -> None:
        """Recover backups a dead process left IN_PROGRESS, catch up on a missed tick, start the schedule."""
        try:
            recover_interrupted(self.ctx)  # it logs what it settled
        except PgkeepError as exc:  # the target may be down right now; the next start retries
            log.error("crash recovery skipped: %s", exc)
        catch_up(self.ctx)
        for spec in job_specs(self.ctx):
            self.scheduler.add_job(
                self._fire,
                trigger(spec.cron, self.ctx.settings.schedule_timezone),
                args=[spec],
                id=spec.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=self.ctx.settings.schedule_grace_seconds or None,
            )
        self.scheduler.add_job(
            self._check_freshness,
            "interval",
            minutes=FRESHNESS_EVERY_MIN,
            id="freshness",
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )
        self.scheduler.add_job(self._check_readiness, id="readiness")  # once, now
        self.scheduler.start()
        log.info("worker started: %s", ", ".join(f"{s.name} '{s.cron}'" for s in job_specs(self.ctx)))

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
