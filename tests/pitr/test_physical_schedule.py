"""Scheduled physical backups: off unless configured, and a due tick takes exactly one base backup."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from pitr_helpers import Archiving

from helpers import backup_rows
from pgkeep.catalog.models import BackupType
from pgkeep.config import load_settings
from pgkeep.errors import ConfigError
from pgkeep.scheduler.runner import TickOutcome, run_tick
from pgkeep.scheduler.worker import job_specs
from pgkeep.services.context import Context

TICK = datetime(2026, 11, 26, 1, 30, tzinfo=UTC)


def with_settings(ctx: Context, **changes: object) -> Context:
    return Context(settings=ctx.settings.model_copy(update=changes), catalog=ctx.catalog, storage=ctx.storage)


def test_physical_jobs_are_scheduled_only_when_their_cron_is_set(pg15_archiving: Archiving) -> None:
    ctx = pg15_archiving.ctx
    assert [s.name for s in job_specs(ctx)] == ["backup", "cleanup", "drill"]
    both = with_settings(ctx, physical_backup_cron="30 1 * * *", physical_incremental_cron="30 13 * * *")
    assert {s.name: s.cron for s in job_specs(both)} == {
        "backup": "0 2 * * *",
        "cleanup": "0 3 * * *",
        "drill": "0 4 * * 0",
        "physical-backup": "30 1 * * *",
        "physical-incremental": "30 13 * * *",
    }
    assert load_settings(PGKEEP_PHYSICAL_BACKUP_CRON="").physical_backup_cron == ""
    try:
        load_settings(PGKEEP_PHYSICAL_BACKUP_CRON="every night")
    except ConfigError as exc:
        assert "PGKEEP_PHYSICAL_BACKUP_CRON" in exc.message
    else:
        raise AssertionError("an invalid cron expression was accepted")


def test_a_due_physical_tick_takes_one_base_backup_however_many_instances_fire(pg15_archiving: Archiving) -> None:
    ctx = with_settings(pg15_archiving.ctx, physical_backup_cron="30 1 * * *")
    before = {r.id for r in backup_rows(ctx)}
    outcomes: list[TickOutcome] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(run_tick(ctx, "physical-backup", TICK))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(o.status for o in outcomes) == ["duplicate", "duplicate", "succeeded"], outcomes
    (new,) = [r for r in backup_rows(ctx) if r.id not in before]
    (won,) = [o for o in outcomes if o.status == "succeeded"]
    assert new.id == won.backup_id and new.kind == "physical" and new.type is BackupType.FULL
    assert new.status.value == "COMPLETED" and new.end_lsn
    assert run_tick(ctx, "physical-backup", TICK).status == "duplicate"


def test_an_incremental_tick_before_postgresql_17_fails_without_a_row(pg15_archiving: Archiving) -> None:
    ctx = with_settings(pg15_archiving.ctx, physical_incremental_cron="30 13 * * *")
    before = len(backup_rows(ctx))
    outcome = run_tick(ctx, "physical-incremental", TICK)
    assert outcome.status == "failed" and "PostgreSQL 17" in outcome.message
    assert len(backup_rows(ctx)) == before


def test_the_drill_proves_the_newest_backup_of_each_kind(pg15_archiving: Archiving) -> None:
    """A physical backup newer than the logical one does not stop the logical one being drilled."""
    from pgkeep.services import manage
    from pgkeep.services.backup import create_backup
    from pgkeep.services.physical import create_physical_backup

    ctx = pg15_archiving.ctx
    logical = create_backup(ctx).id
    physical = create_physical_backup(ctx).id
    outcome = run_tick(ctx, "drill", datetime(2026, 11, 22, 4, 0, tzinfo=UTC))
    assert outcome.status == "succeeded", outcome.message
    assert outcome.backup_id == logical
    for backup_id in (logical, physical):
        assert manage.get_backup(ctx, backup_id)["lastVerifyLevel"] == "restore", backup_id
