"""A backup that fails is FAILED with a clear cause and leaves no file behind."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from helpers import (
    DbHandle,
    backup_rows,
    blocked_pg_dump_backend,
    child_pids,
    dir_entries,
    fake_old_pg_dump_dir,
    make_context,
    stored_files,
    table_locked,
    truncating_pg_dump_dir,
    wait_for,
)
from pgkeep.catalog.models import BackupStatus, DatabaseBackup
from pgkeep.config import Compression, DumpFormat
from pgkeep.devcluster import DevCluster
from pgkeep.errors import BackupFailedError, ExitCode, PgkeepError
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.storage.local import PARTIAL_MARK


def only_row(ctx: Context) -> DatabaseBackup:
    rows = backup_rows(ctx)
    assert len(rows) == 1, [(r.filename, r.status) for r in rows]
    return rows[0]


def assert_failed_cleanly(
    ctx: Context,
    backups_dir: Path,
    exc: BackupFailedError,
    *needles: str,
    exit_code: ExitCode = ExitCode.FAILED,
) -> DatabaseBackup:
    """One FAILED row whose error names every needle; no file, not even a temporary one."""
    row = only_row(ctx)
    assert row.status is BackupStatus.FAILED
    assert exc.backup_id == row.id
    assert exc.exit_code is exit_code
    assert row.error_message
    for needle in needles:
        assert needle in row.error_message, (needle, row.error_message)
        assert needle in str(exc)
    assert row.completed_at is not None
    assert dir_entries(backups_dir) == []
    assert "IN_PROGRESS" not in {r.status.value for r in backup_rows(ctx)}
    return row


class BackupThread:
    """A backup running in a thread; ``join`` returns its result or raises its error."""

    def __init__(self, run: Callable[[], object]) -> None:
        self._result: list[object] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._main, args=(run,), daemon=True)
        self._thread.start()

    def _main(self, run: Callable[[], object]) -> None:
        try:
            self._result.append(run())
        except BaseException as exc:
            self._error.append(exc)

    def join(self) -> object:
        self._thread.join(60)
        assert not self._thread.is_alive(), "the backup did not finish"
        if self._error:
            raise self._error[0]
        return self._result[0]


@pytest.fixture
def blocked_backup(ctx: Context, source_db: DbHandle) -> Iterator[tuple[BackupThread, psycopg.Connection]]:
    """A backup whose pg_dump waits for a table lock: mid-run until the lock goes."""
    with table_locked(source_db.conninfo) as lock:
        running = BackupThread(lambda: create_backup(ctx))
        wait_for(
            lambda: blocked_pg_dump_backend(source_db.conninfo, source_db.name),
            "pg_dump to wait for the lock",
        )
        yield running, lock


def test_pg_dump_killed_mid_stream(tmp_path: Path, source_db: DbHandle, backups_dir: Path) -> None:
    # The real pg_dump, cut off after 64 kB of output and then SIGKILLed.
    ctx = make_context(tmp_path, source_db.url, pg_bin_dir=truncating_pg_dump_dir(tmp_path / "bin"))
    try:
        with pytest.raises(BackupFailedError) as info:
            create_backup(ctx, fmt=DumpFormat.PLAIN, compression=Compression.NONE)
        assert_failed_cleanly(ctx, backups_dir, info.value, "pg_dump", "SIGKILL")
    finally:
        ctx.close()


@pytest.mark.parametrize("fmt", [DumpFormat.CUSTOM, DumpFormat.DIRECTORY], ids=lambda f: f.value)
def test_a_table_held_exclusively_fails_the_backup_naming_the_holder(
    tmp_path: Path, source_db: DbHandle, backups_dir: Path, fmt: DumpFormat
) -> None:
    ctx = make_context(tmp_path, source_db.url, lock_wait_timeout=1)
    try:
        with table_locked(source_db.conninfo) as holder:  # a migration left open, say
            holder_pid = holder.info.backend_pid
            with pytest.raises(BackupFailedError) as info:
                create_backup(ctx, fmt=fmt)
        row = assert_failed_cleanly(
            ctx, backups_dir, info.value, "pg_dump waited 1 s for a lock on public.users and gave up"
        )
    finally:
        ctx.close()
    expected = f"exclusive locks: pid {holder_pid} holds public.users (user postgres, idle in transaction for "
    assert expected in str(row.error_message)
    # The holder's statement by its first word: its text may hold literals (a password) and this
    # message reaches logs, webhooks and viewer tokens.
    assert ", last statement LOCK)" in str(row.error_message)
    assert "ACCESS EXCLUSIVE MODE" not in str(row.error_message)
    assert info.value.hint and "PGKEEP_LOCK_WAIT_TIMEOUT" in info.value.hint


def test_pg_dump_killed_while_running(
    ctx: Context, backups_dir: Path, blocked_backup: tuple[BackupThread, psycopg.Connection]
) -> None:
    running, lock = blocked_backup
    pids = wait_for(lambda: child_pids(os.getpid(), "pg_dump"), "the pg_dump child")
    assert len(pids) == 1
    # The temporary file exists while the dump runs: the cleanup below is real.
    assert [n for n in dir_entries(backups_dir) if PARTIAL_MARK in n]
    os.kill(pids[0], signal.SIGKILL)
    lock.rollback()  # let the row counting, which waits for the same lock, finish
    with pytest.raises(BackupFailedError) as info:
        running.join()
    assert_failed_cleanly(ctx, backups_dir, info.value, "pg_dump was killed by SIGKILL")


def test_backend_terminated(
    ctx: Context,
    source_db: DbHandle,
    backups_dir: Path,
    blocked_backup: tuple[BackupThread, psycopg.Connection],
) -> None:
    running, lock = blocked_backup
    backend = blocked_pg_dump_backend(source_db.conninfo, source_db.name)
    with psycopg.connect(source_db.conninfo, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone() == (True,)
    lock.rollback()
    with pytest.raises(BackupFailedError) as info:
        running.join()
    row = assert_failed_cleanly(ctx, backups_dir, info.value, "pg_dump exited with status 1")
    assert row.error_message is not None
    assert "terminating connection due to administrator command" in row.error_message


def test_wrong_password(tmp_path: Path, pg15: DevCluster, source_db: DbHandle, backups_dir: Path) -> None:
    wrong = pg15.superuser_password + "!"
    ctx = make_context(tmp_path, pg15.url(source_db.name, password=wrong))
    try:
        with pytest.raises(BackupFailedError) as info:
            create_backup(ctx)
        row = assert_failed_cleanly(ctx, backups_dir, info.value, "password authentication failed", "cannot connect")
    finally:
        ctx.close()
    for secret in (wrong, quote(wrong, safe=""), pg15.superuser_password):
        assert secret not in str(row.error_message)
        assert secret not in str(info.value)


def test_unreachable_server(tmp_path: Path, backups_dir: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = make_context(tmp_path, f"postgresql://app:secret-pw@127.0.0.1:{port}/app")
    try:
        with pytest.raises(BackupFailedError) as info:
            create_backup(ctx)
        row = assert_failed_cleanly(ctx, backups_dir, info.value, "cannot connect", str(port))
    finally:
        ctx.close()
    assert "refused" in str(row.error_message).lower()
    assert "secret-pw" not in str(row.error_message)


def test_pg_dump_older_than_the_server(tmp_path: Path, source_db: DbHandle, backups_dir: Path) -> None:
    bin_dir = fake_old_pg_dump_dir(tmp_path / "bin", "14.1")
    ctx = make_context(tmp_path, source_db.url, pg_bin_dir=bin_dir)
    try:
        with pytest.raises(BackupFailedError) as info:
            create_backup(ctx)
        assert_failed_cleanly(ctx, backups_dir, info.value, "PostgreSQL 15", "14.1", exit_code=ExitCode.CONFIG)
    finally:
        ctx.close()
    assert "PGKEEP_PG_BIN_DIR" in str(info.value)  # the hint says how to fix it


def test_a_failed_backup_does_not_block_the_next(tmp_path: Path, source_db: DbHandle, backups_dir: Path) -> None:
    # The advisory lock and the temporary file go away with the failure.
    dying = make_context(tmp_path, source_db.url, pg_bin_dir=truncating_pg_dump_dir(tmp_path / "bin"))
    try:
        with pytest.raises(PgkeepError):
            create_backup(dying)
    finally:
        dying.close()
    ctx = make_context(tmp_path, source_db.url)
    try:
        result = create_backup(ctx)
        statuses = sorted(r.status.value for r in backup_rows(ctx))
    finally:
        ctx.close()
    assert statuses == ["COMPLETED", "FAILED"]
    assert dir_entries(backups_dir) == stored_files(result.filename)
