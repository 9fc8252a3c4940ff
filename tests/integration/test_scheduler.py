"""Scheduler behaviour with a controlled clock: no real waiting."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from helpers import DbHandle, blocked_pg_dump_backend, dir_entries, table_locked, wait_for
from pgkeep.catalog.models import BackupType
from pgkeep.config import load_settings
from pgkeep.scheduler.runner import run_tick
from pgkeep.scheduler.ticks import previous_fire_time
from pgkeep.scheduler.worker import Worker, catch_up
from pgkeep.services import manage
from pgkeep.services.context import Context
from webhook_receiver import Receiver

TICK = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def _settings(tmp_path: Path, url: str, **extra: object) -> dict[str, object]:
    return {
        "database_url": url,
        "catalog_url": f"sqlite:///{tmp_path}/catalog.db",
        "storage_url": f"file://{tmp_path}/backups",
        "state_dir": str(tmp_path / "state"),
        **extra,
    }


@pytest.fixture
def ctx(tmp_path: Path, source_db: DbHandle):  # type: ignore[no-untyped-def]
    context = Context.build(load_settings(**_settings(tmp_path, source_db.url)))
    yield context
    context.close()


def _scheduled(ctx: Context) -> list[dict]:  # type: ignore[type-arg]
    return manage.list_backups(ctx, backup_type=BackupType.SCHEDULED, limit=100)["backups"]


def test_cron_arithmetic_uses_the_configured_schedule() -> None:
    now = datetime(2026, 11, 26, 1, 59, tzinfo=UTC)
    assert previous_fire_time("0 2 * * *", now) == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert previous_fire_time("0 2 * * *", now + timedelta(minutes=1)) == TICK
    assert previous_fire_time("30 4 * * 0", TICK) == datetime(2026, 11, 22, 4, 30, tzinfo=UTC)


def test_a_tick_fires_one_backup_and_a_repeat_is_a_duplicate(ctx: Context) -> None:
    first = run_tick(ctx, "backup", TICK)
    assert first.status == "succeeded", first.message
    again = run_tick(ctx, "backup", TICK)
    assert again.status == "duplicate"
    rows = _scheduled(ctx)
    assert [r["status"] for r in rows] == ["COMPLETED"]
    assert rows[0]["id"] == first.backup_id


def test_two_processes_sharing_a_catalog_produce_one_backup_per_tick(tmp_path: Path, source_db: DbHandle) -> None:
    settings = _settings(tmp_path, source_db.url)
    Context.build(load_settings(**settings)).close()  # create the catalog once
    code = (
        "import json, sys\n"
        "from datetime import datetime\n"
        "from pgkeep.config import load_settings\n"
        "from pgkeep.services.context import Context\n"
        "from pgkeep.scheduler.runner import run_tick\n"
        "ctx = Context.build(load_settings(**json.loads(sys.argv[1])))\n"
        "out = run_tick(ctx, 'backup', datetime.fromisoformat(sys.argv[2]))\n"
        "print(out.status)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(settings), TICK.isoformat()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    statuses = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    # One runs it; the other either finds the tick claimed or the backup lock held.
    assert statuses[1] == "succeeded" or statuses[0] == "succeeded", statuses
    assert statuses.count("succeeded") == 1, statuses
    ctx = Context.build(load_settings(**settings))
    try:
        rows = _scheduled(ctx)
        assert [r["status"] for r in rows] == ["COMPLETED"]
    finally:
        ctx.close()


def test_missed_tick_inside_grace_runs_once_on_start(tmp_path: Path, source_db: DbHandle) -> None:
    ctx = Context.build(load_settings(**_settings(tmp_path, source_db.url, schedule_grace_seconds=3600)))
    try:
        # The worker ran the day before, then was down at 02:00; it starts at 02:30.
        assert run_tick(ctx, "backup", TICK - timedelta(days=1)).status == "succeeded"
        assert run_tick(ctx, "cleanup", TICK - timedelta(days=1) + timedelta(hours=1)).status == "succeeded"
        outcomes = catch_up(ctx, now=TICK + timedelta(minutes=30))
        assert [(o.job, o.status, o.scheduled_for) for o in outcomes] == [("backup", "succeeded", TICK)]
        assert len(_scheduled(ctx)) == 2
        # A second start does not run it again.
        assert catch_up(ctx, now=TICK + timedelta(minutes=40)) == []
        assert len(_scheduled(ctx)) == 2
    finally:
        ctx.close()


def test_missed_tick_outside_grace_is_reported_not_run(tmp_path: Path, source_db: DbHandle) -> None:
    ctx = Context.build(load_settings(**_settings(tmp_path, source_db.url, schedule_grace_seconds=3600)))
    try:
        assert run_tick(ctx, "backup", TICK - timedelta(days=1)).status == "succeeded"
        outcomes = catch_up(ctx, now=TICK + timedelta(hours=5))
        missed = [o for o in outcomes if o.job == "backup"]
        assert len(missed) == 1 and missed[0].status == "missed"
        assert "grace period" in missed[0].message
        assert len(_scheduled(ctx)) == 1  # nothing new ran
        # Reported once, not on every start.
        assert [o for o in catch_up(ctx, now=TICK + timedelta(hours=6)) if o.job == "backup"] == []
    finally:
        ctx.close()


def test_first_start_of_a_deployment_reports_nothing(ctx: Context) -> None:
    assert catch_up(ctx, now=TICK + timedelta(hours=12)) == []
    assert _scheduled(ctx) == []


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 3 * * 0", datetime(2026, 11, 22, 3, 0, tzinfo=UTC)),  # Sunday, as crontab means it
        ("0 3 * * 7", datetime(2026, 11, 22, 3, 0, tzinfo=UTC)),
        ("0 3 * * 1-5", datetime(2026, 11, 25, 3, 0, tzinfo=UTC)),
        ("0 3 * * sat", datetime(2026, 11, 21, 3, 0, tzinfo=UTC)),
    ],
)
def test_day_of_week_follows_crontab(cron: str, expected: datetime) -> None:
    assert previous_fire_time(cron, TICK) == expected


def test_bad_cron_is_a_config_error_naming_the_setting() -> None:
    from pgkeep.errors import ConfigError

    with pytest.raises(ConfigError, match="PGKEEP_BACKUP_CRON"):
        load_settings(backup_cron="61 2 * *")


def _readiness_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("readiness")]


@pytest.mark.parametrize("physical", [False, True])
def test_the_worker_checks_readiness_once_at_start(
    tmp_path: Path, source_db: DbHandle, caplog: pytest.LogCaptureFixture, physical: bool, receiver: Receiver
) -> None:
    # With physical backups scheduled, the server's archive_mode = off fails the check.
    extra: dict[str, object] = {"webhook_urls": receiver.url}
    if physical:
        extra["physical_backup_cron"] = "0 1 * * *"
    context = Context.build(load_settings(**_settings(tmp_path, source_db.url, **extra)))
    caplog.set_level(logging.INFO, logger="pgkeep.scheduler")
    worker = Worker(context)
    try:
        worker.start()
        wait_for(lambda: _readiness_lines(caplog), "the worker's readiness log")
    finally:
        worker.stop()
        context.close()
    lines = _readiness_lines(caplog)
    if physical:
        alert = receiver.wait_for("check.failed")
        assert alert["text"].startswith("pgkeep: 1 readiness check failed as the worker started: archiving: ")
        assert [c["name"] for c in alert["checks"]] == ["archiving"]
    else:  # (the freshness check may have sent backup.stale: no backup yet)
        assert [r for r in receiver.received if r["event"] == "check.failed"] == []
    if physical:
        assert lines == [
            (
                logging.ERROR,
                "readiness: archiving fail: physical backups need WAL archiving: the server has archive_mode = off "
                "(fix: set archive_mode = on and archive_command = 'pgkeep wal-push --config FILE %p' "
                "(see the README), then restart the server)",
            )
        ]
    else:
        names = "catalog ok, storage ok, encryption ok, server ok, client tools ok, access ok, archiving ok"
        assert lines == [(logging.INFO, f"readiness: no check failed ({names})")]


def test_sigterm_stops_a_worker_whose_missed_tick_backup_is_running(tmp_path: Path, source_db: DbHandle) -> None:
    """The catch-up runs before the schedule: SIGTERM only set a flag read after it, so a backup
    waiting on a lock kept the worker alive until SIGKILL. It now aborts it as `pgkeep backup` would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGKEEP_")} | {
        "DATABASE_URL": source_db.url,
        "PGKEEP_CATALOG_URL": f"sqlite:///{tmp_path}/catalog.db",
        "PGKEEP_STORAGE_URL": f"file://{tmp_path}/backups",
        "PGKEEP_STATE_DIR": str(tmp_path / "state"),
        "PGKEEP_BACKUP_CRON": "* * * * *",  # last minute's tick is missed, inside the grace period
        "PGKEEP_LOCK_WAIT_TIMEOUT": "0",  # the dump waits for the lock as long as it is held
    }
    ctx = Context.build(load_settings(**_settings(tmp_path, source_db.url)))
    try:
        with table_locked(source_db.conninfo):
            worker = subprocess.Popen(
                [str(Path(sys.executable).parent / "pgkeep"), "worker"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                running = wait_for(lambda: _scheduled(ctx), "the missed tick's backup to start")
                assert running[0]["status"] == "IN_PROGRESS"
                # Signalled once pg_dump waits on the lock, as a stop would find a long backup (not
                # in the instant of a fork, where Python drops an exception raised by a handler).
                wait_for(lambda: blocked_pg_dump_backend(source_db.conninfo, source_db.name), "pg_dump to wait")
                worker.send_signal(signal.SIGTERM)
                _, err = worker.communicate(timeout=60)
            finally:
                if worker.poll() is None:
                    worker.kill()
        assert worker.returncode == 128 + signal.SIGTERM, err
        [row] = _scheduled(ctx)
        assert row["status"] == "FAILED" and "terminated" in row["errorMessage"].lower(), row
        assert dir_entries(tmp_path / "backups") == []  # the signal may come before the directory was made
    finally:
        ctx.close()
