"""Crash recovery: a backup whose process died is marked FAILED; a live one is left alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from helpers import DbHandle
from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus
from pgkeep.config import load_settings
from pgkeep.errors import BackupInProgressError, InvalidStateError
from pgkeep.services import manage
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.manifest import manifest_name
from pgkeep.services.recovery import recover_interrupted

PGKEEP = str(Path(sys.executable).parent / "pgkeep")


def _settings(tmp_path: Path, url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": url,
        "PGKEEP_CATALOG_URL": f"sqlite:///{tmp_path}/catalog.db",
        "PGKEEP_STORAGE_URL": f"file://{tmp_path}/backups",
        "PGKEEP_STATE_DIR": str(tmp_path / "state"),
    }


def _wait_for(predicate, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _in_progress(ctx: Context) -> list[dict]:  # type: ignore[type-arg]
    return manage.list_backups(ctx, status=BackupStatus.IN_PROGRESS)["backups"]


def _kill_a_backup_mid_run(tmp_path: Path, source_db: DbHandle, ctx: Context) -> str:
    """A `pgkeep backup` SIGKILLed while pg_dump waits for a lock: its row stays IN_PROGRESS."""
    env = {**os.environ, **_settings(tmp_path, source_db.url)}
    with psycopg.connect(source_db.conninfo) as blocker:
        blocker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        proc = subprocess.Popen(
            [PGKEEP, "backup", "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        [running] = _wait_for(lambda: _in_progress(ctx), "the backup to start")
        _wait_for(lambda: list((tmp_path / "backups").glob(".*partial*")), "the partial file")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        blocker.rollback()
    return str(running["id"])


def test_without_a_worker_the_next_backup_or_a_delete_settles_a_killed_one(tmp_path: Path, source_db: DbHandle) -> None:
    """Cron users run no worker, whose start used to be the only crash recovery: the killed
    backup stayed IN_PROGRESS (and undeletable) with its partial file, for good."""
    ctx = Context.build(load_settings(**_settings(tmp_path, source_db.url)))
    try:
        first = _kill_a_backup_mid_run(tmp_path, source_db, ctx)
        # The server frees the dead session's lock once it notices: until then the backup counts as running.
        result = _wait_for(lambda: _backup_unless_busy(ctx), "the dead backup's lock to go")
        assert manage.get_backup(ctx, first)["status"] == "FAILED"
        assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == sorted(
            [result.filename, manifest_name(result.filename)]
        )

        second = _kill_a_backup_mid_run(tmp_path, source_db, ctx)
        _wait_for(lambda: _deleted_unless_running(ctx, second), "the dead backup to be deletable")
        assert manage.get_backup(ctx, second)["status"] == "DELETED"
        assert not list((tmp_path / "backups").glob(".*partial*"))
    finally:
        ctx.close()


def _backup_unless_busy(ctx: Context):  # type: ignore[no-untyped-def]
    try:
        return create_backup(ctx)
    except BackupInProgressError:
        return None


def _deleted_unless_running(ctx: Context, backup_id: str) -> bool:
    try:
        manage.delete_backup(ctx, backup_id)
    except InvalidStateError:
        return False
    return True


def test_killed_backup_is_marked_failed_and_cleaned(tmp_path: Path, source_db: DbHandle) -> None:
    env = {**os.environ, **_settings(tmp_path, source_db.url)}
    ctx = Context.build(load_settings(**_settings(tmp_path, source_db.url)))
    blocker = psycopg.connect(source_db.conninfo)
    try:
        # pg_dump waits for this lock, so the backup is reliably mid-run when killed.
        blocker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        proc = subprocess.Popen(
            [PGKEEP, "backup", "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        running = _wait_for(lambda: _in_progress(ctx), "the backup to start")
        # A live backup (lock held) is left alone by recovery.
        assert recover_interrupted(ctx).failed == []
        assert _in_progress(ctx)
        _wait_for(lambda: list((tmp_path / "backups").glob(".*partial*")), "the partial file")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        blocker.rollback()
        blocker.close()

    # The server frees the dead session's advisory lock once it notices the disconnect.
    recovered = _wait_for(lambda: recover_interrupted(ctx).failed, "recovery to see the dead backup")
    assert recovered == [running[0]["id"]]
    row = manage.get_backup(ctx, running[0]["id"])
    assert row["status"] == "FAILED"
    assert "interrupted" in row["errorMessage"]
    assert list((tmp_path / "backups").iterdir()) == []
    # The next backup succeeds.
    result = create_backup(ctx)
    assert manage.get_backup(ctx, result.id)["status"] == "COMPLETED"
    ctx.close()


def _rewind(ctx: Context, backup_id: str) -> None:
    """The row as an older copy of the catalog has it: IN_PROGRESS, its lock session long gone."""
    with ctx.catalog.session() as session:
        repo.update_backup(
            session,
            backup_id,
            status=BackupStatus.IN_PROGRESS,
            size=0,
            checksum=None,
            completed_at=None,
            metadata_={"lockBackendPid": 999999, "host": "elsewhere", "pid": 1},
        )


def test_a_backup_whole_in_storage_is_completed_from_its_manifest_not_deleted(
    tmp_path: Path, source_db: DbHandle
) -> None:
    """A catalog older than the storage (a restored snapshot of the pgkeep host) has the
    night's backup IN_PROGRESS; the backup itself is whole and must survive recovery."""
    ctx = Context.build(load_settings(**_settings(tmp_path, source_db.url)))
    try:
        good, corrupt, malformed = create_backup(ctx), create_backup(ctx), create_backup(ctx)
        before = manage.get_backup(ctx, good.id)
        for result in (good, corrupt, malformed):
            _rewind(ctx, result.id)
        artifact = tmp_path / "backups" / corrupt.filename
        data = bytearray(artifact.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, other bytes
        artifact.write_bytes(bytes(data))
        manifest = tmp_path / "backups" / manifest_name(malformed.filename)
        manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "sha256"}))

        recovered = recover_interrupted(ctx)
        assert recovered.completed == [good.id] and recovered.undecided == []
        assert sorted(recovered.failed) == sorted([corrupt.id, malformed.id])
        after = manage.get_backup(ctx, good.id)
        for key in ("status", "size", "checksum", "completedAt", "filename", "metadata"):
            assert after[key] == before[key], key
        assert (tmp_path / "backups" / good.filename).exists()
        assert manage.get_backup(ctx, corrupt.id)["status"] == "FAILED"
        assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == sorted(
            [good.filename, manifest_name(good.filename)]
        )
    finally:
        ctx.close()
