"""One backup at a time per database: a second attempt is refused at once and leaves no row."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from helpers import (
    DbHandle,
    backup_rows,
    blocked_pg_dump_backend,
    dir_entries,
    make_context,
    stored_files,
    table_locked,
    wait_for,
)
from pgkeep.catalog.models import BackupStatus
from pgkeep.errors import BackupInProgressError, ExitCode
from pgkeep.services.backup import BackupResult, create_backup
from pgkeep.services.context import Context


def test_two_backups_at_once_one_completes_one_is_refused(
    ctx: Context, source_db: DbHandle, tmp_path: Path, backups_dir: Path
) -> None:
    outcome: list[object] = []
    # The second attempt uses its own context, as another process would.
    other = make_context(tmp_path, source_db.url)
    try:
        with table_locked(source_db.conninfo) as lock:
            first = threading.Thread(target=lambda: outcome.append(create_backup(ctx)), daemon=True)
            first.start()
            wait_for(
                lambda: blocked_pg_dump_backend(source_db.conninfo, source_db.name),
                "the first backup's pg_dump to wait for the lock",
            )
            started = time.monotonic()
            with pytest.raises(BackupInProgressError) as info:
                create_backup(other)
            refused_after = time.monotonic() - started
            in_flight = [(r.status, r.id) for r in backup_rows(ctx)]
            lock.rollback()
        first.join(60)
    finally:
        other.close()

    assert str(info.value).startswith(f"a backup of {source_db.name} is already in progress")
    assert info.value.exit_code is ExitCode.BUSY
    assert refused_after < 20  # refused at once, not after waiting for the first to end
    assert [status for status, _ in in_flight] == [BackupStatus.IN_PROGRESS]  # no row for it

    assert len(outcome) == 1 and isinstance(outcome[0], BackupResult)
    rows = backup_rows(ctx)
    assert [(r.id, r.status) for r in rows] == [(outcome[0].id, BackupStatus.COMPLETED)]
    assert dir_entries(backups_dir) == stored_files(outcome[0].filename)


def test_the_lock_is_per_database(ctx: Context, source_db: DbHandle, empty_db: DbHandle, tmp_path: Path) -> None:
    other = make_context(tmp_path / "other", empty_db.url)
    try:
        with table_locked(source_db.conninfo) as lock:
            first = threading.Thread(target=lambda: create_backup(ctx), daemon=True)
            first.start()
            wait_for(
                lambda: blocked_pg_dump_backend(source_db.conninfo, source_db.name),
                "the first backup's pg_dump to wait for the lock",
            )
            result = create_backup(other)  # another database: not blocked
            lock.rollback()
        first.join(60)
        assert [r.status for r in backup_rows(other)] == [BackupStatus.COMPLETED]
        assert result.size > 0
    finally:
        other.close()
    assert [r.status for r in backup_rows(ctx)] == [BackupStatus.COMPLETED]


def test_lock_is_released_after_a_backup(ctx: Context) -> None:
    create_backup(ctx)
    create_backup(ctx)
    assert [r.status for r in backup_rows(ctx)] == [BackupStatus.COMPLETED] * 2
