"""``GET /api/admin/summary``: what the dashboard's header shows, and when it turns red."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from helpers import make_context
from pgkeep.api import create_app
from pgkeep.api.routes.summary import drill_window, summarize
from pgkeep.catalog.admin_models import Role
from pgkeep.catalog.models import BackupStatus, BackupType, BackupVerification, DatabaseBackup
from pgkeep.services import admin
from pgkeep.services.context import Context

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    context = make_context(tmp_path, None, alert_no_backup_hours=26, drill_cron="0 4 * * 0")
    try:
        yield context
    finally:
        context.close()


def add_backup(
    ctx: Context, finished: datetime | None, status: BackupStatus = BackupStatus.COMPLETED, **extra: object
) -> str:
    with ctx.catalog.session() as session:
        row = DatabaseBackup(
            filename=f"b-{finished or 'running'}-{status.value}.dump",
            type=BackupType.MANUAL,
            status=status,
            started_at=(finished or NOW) - timedelta(minutes=1),
            completed_at=finished,
            checksum="0" * 64 if status is BackupStatus.COMPLETED else None,
            **extra,
        )
        session.add(row)
        session.commit()
        return row.id


def add_drill(ctx: Context, backup_id: str, at: datetime, valid: bool = True) -> None:
    with ctx.catalog.session() as session:
        session.add(BackupVerification(backup_id=backup_id, level="restore", valid=valid, message="m", started_at=at))
        session.commit()


def test_nothing_yet_is_overdue(ctx: Context) -> None:
    summary = summarize(ctx, NOW)
    assert summary["lastBackup"] == {"at": None, "ageSeconds": None, "windowHours": 26, "stale": True}
    assert summary["lastRestoreDrill"]["stale"] is True
    assert summary["runningBackups"] == [] and summary["runningRestores"] == []
    assert summary["database"] is None  # no DATABASE_URL: the page still works


def test_backups_are_overdue_past_the_alert_window(ctx: Context) -> None:
    add_backup(ctx, NOW - timedelta(hours=25))
    fresh = summarize(ctx, NOW)["lastBackup"]
    assert (fresh["stale"], fresh["ageSeconds"]) == (False, 25 * 3600)
    assert summarize(ctx, NOW + timedelta(hours=2))["lastBackup"]["stale"] is True


def test_drills_get_their_schedule_plus_the_alert_window(ctx: Context) -> None:
    assert drill_window(ctx, NOW) == timedelta(days=7, hours=26)
    backup_id = add_backup(ctx, NOW - timedelta(days=3))
    add_drill(ctx, backup_id, NOW - timedelta(days=1), valid=False)  # a failed drill does not count
    assert summarize(ctx, NOW)["lastRestoreDrill"]["stale"] is True
    add_drill(ctx, backup_id, NOW - timedelta(days=6))
    drill = summarize(ctx, NOW)["lastRestoreDrill"]
    assert drill["stale"] is False and drill["windowHours"] == 7 * 24 + 26
    assert summarize(ctx, NOW + timedelta(days=3))["lastRestoreDrill"]["stale"] is True


def test_running_backups_show_their_progress(ctx: Context) -> None:
    running = add_backup(ctx, None, BackupStatus.IN_PROGRESS, bytes_written=4096)
    add_backup(ctx, NOW - timedelta(hours=1))
    [entry] = summarize(ctx, NOW)["runningBackups"]
    assert (entry["id"], entry["bytesWritten"], entry["status"]) == (running, 4096, "IN_PROGRESS")


def test_the_route_answers_viewers(ctx: Context) -> None:
    token = admin.create_token(ctx, "v", Role.VIEWER).token
    with TestClient(create_app(ctx)) as client:
        response = client.get("/api/admin/summary", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        assert set(response.json()) >= {"now", "alertWindowHours", "lastBackup", "lastRestoreDrill", "runningBackups"}
        assert client.get("/api/admin/summary").status_code == 401
