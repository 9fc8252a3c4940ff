"""Cleanup applies the retention plan: GFS rules, safety rules, EXPIRED retries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from helpers import DbHandle, dir_entries, make_context, make_settings, stored_files
from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import utcnow
from pgkeep.services import manage
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context

PGKEEP = str(Path(sys.executable).parent / "pgkeep")


def _age(ctx: Context, backup_id: str, days: int) -> None:
    """Pretend the backup was taken ``days`` ago and expired yesterday."""
    with ctx.catalog.session() as session:
        repo.update_backup(
            session, backup_id, started_at=utcnow() - timedelta(days=days), expires_at=utcnow() - timedelta(days=1)
        )


def _filename(ctx: Context, backup_id: str) -> str:
    return str(manage.get_backup(ctx, backup_id)["filename"])


def test_cleanup_follows_the_plan_and_the_safety_rules(tmp_path: Path, source_db: DbHandle) -> None:
    ctx = make_context(tmp_path, source_db.url, retention_daily=2, retention_weekly=0, retention_monthly=0)
    try:
        ids = [create_backup(ctx).id for _ in range(5)]
        for age, backup_id in zip([40, 30, 20, 2, 1], ids, strict=True):
            _age(ctx, backup_id, age)
        oldest, kept_by_flag, expired, daily_2, newest = ids
        manage.set_keep(ctx, kept_by_flag, True)
        manage.set_keep(ctx, oldest, True)
        manage.set_keep(ctx, oldest, False)  # released again: retention may delete it, records and all
        records = [n for n in dir_entries(tmp_path / "backups") if ".keep-" in n]
        hold = [n for n in records if n.startswith(_filename(ctx, kept_by_flag))]
        assert len(records) == 3 and len(hold) == 1  # each change is its own record beside the backup

        plan = {d["id"]: d for d in manage.cleanup_expired(ctx, dry_run=True).as_json()["plan"]}
        assert plan[newest]["action"] == "keep" and any("newest" in r for r in plan[newest]["reasons"])
        assert plan[daily_2]["action"] == "keep" and any(r.startswith("daily") for r in plan[daily_2]["reasons"])
        assert plan[kept_by_flag]["action"] == "keep" and any("keep flag" in r for r in plan[kept_by_flag]["reasons"])
        assert plan[oldest]["action"] == "delete" and plan[expired]["action"] == "delete"
        files = {b["id"]: b["filename"] for b in manage.list_backups(ctx, limit=100)["backups"]}
        # The dry run changed nothing.
        assert dir_entries(tmp_path / "backups") == sorted(stored_files(*files.values()) + records)

        result = manage.cleanup_expired(ctx)
        assert sorted(result.deleted) == sorted([oldest, expired])
        statuses = {b["id"]: b["status"] for b in manage.list_backups(ctx, limit=100)["backups"]}
        assert statuses[oldest] == statuses[expired] == "DELETED"
        assert statuses[newest] == statuses[daily_2] == statuses[kept_by_flag] == "COMPLETED"
        # Artifacts and manifests of the deleted ones are gone, the others' are all there.
        kept = stored_files(files[newest], files[daily_2], files[kept_by_flag])
        assert dir_entries(tmp_path / "backups") == sorted(kept + hold)
    finally:
        ctx.close()


def test_cli_keep_and_cleanup_dry_run_json(tmp_path: Path, source_db: DbHandle) -> None:
    settings = make_settings(tmp_path, source_db.url)
    env = {
        **os.environ,
        "DATABASE_URL": source_db.url,
        "PGKEEP_CATALOG_URL": settings.catalog_url,
        "PGKEEP_STORAGE_URL": settings.storage_url,
        "PGKEEP_STATE_DIR": str(settings.state_dir),
        "PGKEEP_RETENTION_DAILY": "0",
        "PGKEEP_RETENTION_WEEKLY": "0",
        "PGKEEP_RETENTION_MONTHLY": "0",
    }
    ctx = Context.build(settings)
    try:
        first, second = create_backup(ctx).id, create_backup(ctx).id
        _age(ctx, first, 3)
        _age(ctx, second, 2)
    finally:
        ctx.close()
    kept = subprocess.run([PGKEEP, "keep", first, "--json"], env=env, capture_output=True, text=True)
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout)["keep"] is True
    dry = subprocess.run([PGKEEP, "cleanup", "--dry-run", "--json"], env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    data = json.loads(dry.stdout)
    assert data["deletedCount"] == 0 and data["dryRun"] is True
    assert {d["id"]: d["action"] for d in data["plan"]} == {first: "keep", second: "keep"}
    released = subprocess.run([PGKEEP, "keep", first, "--off"], env=env, capture_output=True, text=True)
    assert released.returncode == 0
    done = subprocess.run([PGKEEP, "cleanup", "--json"], env=env, capture_output=True, text=True)
    assert json.loads(done.stdout)["deletedIds"] == [first]
    # A DELETED (or FAILED) backup has nothing to keep: exit 8, as verify says of it; releasing is harmless.
    again = subprocess.run([PGKEEP, "keep", first], env=env, capture_output=True, text=True)
    assert again.returncode == 8 and "DELETED; only COMPLETED backups can be kept" in again.stderr, again.stderr
    assert subprocess.run([PGKEEP, "keep", first, "--off"], env=env, capture_output=True, text=True).returncode == 0


def test_files_that_cannot_be_removed_leave_the_backup_expired_and_the_next_cleanup_retries(
    tmp_path: Path, source_db: DbHandle
) -> None:
    ctx = make_context(tmp_path, source_db.url, retention_daily=0, retention_weekly=0, retention_monthly=0)
    backups = tmp_path / "backups"
    try:
        old, newest = create_backup(ctx).id, create_backup(ctx).id
        _age(ctx, old, 3)
        # Storage "down": the backup directory is replaced by a plain file, so nothing can be deleted.
        backups.rename(tmp_path / "moved")
        backups.write_text("not a directory")
        first = manage.cleanup_expired(ctx)
        assert first.deleted == [] and list(first.failed) == [old]
        assert manage.get_backup(ctx, old)["status"] == "EXPIRED"
        assert manage.get_backup(ctx, newest)["status"] == "COMPLETED"
        # Storage back: the next cleanup finishes the job.
        backups.unlink()
        (tmp_path / "moved").rename(backups)
        second = manage.cleanup_expired(ctx)
        assert second.deleted == [old] and second.failed == {}
        assert manage.get_backup(ctx, old)["status"] == "DELETED"
        assert not any(name.startswith(manage.get_backup(ctx, old)["filename"]) for name in dir_entries(backups))
    finally:
        ctx.close()
