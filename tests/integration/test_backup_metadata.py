"""What a completed backup records, where its files go, and with which modes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from helpers import (
    DbHandle,
    dir_entries,
    get_row,
    make_context,
    mode,
    stored_files,
    truncating_pg_dump_dir,
)
from pgkeep.catalog.models import BackupStatus, BackupType
from pgkeep.config import Compression, DumpFormat
from pgkeep.errors import BackupFailedError
from pgkeep.fingerprint import fingerprint
from pgkeep.services import backup as backup_service
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.manage import delete_backup, verify_backup


def test_metadata_counts_every_user_table(ctx: Context, source_db: DbHandle) -> None:
    with psycopg.connect(source_db.conninfo) as conn:
        # Tables no fixed list could know about, including an empty one and a partitioned one.
        conn.execute("CREATE SCHEMA audit")
        conn.execute("CREATE TABLE audit.log AS SELECT generate_series(1, 7) AS n")
        conn.execute("CREATE TABLE public.empty_one (id int)")
        conn.execute("CREATE TABLE parted (k int) PARTITION BY RANGE (k)")
        conn.execute("CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (50)")
        conn.execute("CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM (50) TO (100)")
        conn.execute("INSERT INTO parted SELECT generate_series(0, 59)")
    expected = {name: count for name, (count, _) in fingerprint(source_db.conninfo).items()}
    assert expected["audit.log"] == 7 and expected["parted_high".join(["public.", ""])] == 10

    result = create_backup(ctx, fmt=DumpFormat.PLAIN, compression=Compression.GZIP)
    row = get_row(ctx, result.id)
    meta = row.metadata_
    assert meta is not None
    assert meta["tableCounts"] == expected
    assert meta["tableCount"] == len(expected)
    assert meta["serverVersion"].startswith("15.")
    assert meta["pgDumpVersion"].startswith("15.")
    assert meta["format"] == "plain"
    assert meta["compression"] == "gzip"
    assert meta["databaseSize"] > 0
    assert meta["uncompressedSize"] > result.size
    assert isinstance(meta["durationMs"], int)
    assert (row.server_version, row.pg_dump_version) == (meta["serverVersion"], meta["pgDumpVersion"])
    assert row.database_name == source_db.name
    assert row.completed_at is not None and row.completed_at >= row.started_at
    assert row.error_message is None


def test_counts_describe_the_dumped_snapshot(ctx: Context, source_db: DbHandle) -> None:
    # Rows added while nothing runs are counted; the count matches what was dumped.
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("INSERT INTO organizations (name, slug, created_at) VALUES ('x', 'x', now())")
    result = create_backup(ctx, fmt=DumpFormat.PLAIN, compression=Compression.NONE)
    row = get_row(ctx, result.id)
    assert row.metadata_ is not None
    assert row.metadata_["tableCounts"]["public.organizations"] == 21
    stored = Path(ctx.settings.storage_url.removeprefix("file://")) / result.filename
    dump = stored.read_text()
    copy_start = dump.index("COPY public.organizations")
    copy_rows = dump[copy_start:].split("\n\\.\n", 1)[0].count("\n")
    assert copy_rows == 21
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == row.checksum == result.checksum


@pytest.mark.parametrize("fmt", [DumpFormat.CUSTOM, DumpFormat.DIRECTORY], ids=lambda v: v.value)
def test_files_and_directories_are_private_whatever_the_umask(
    tmp_path: Path, source_db: DbHandle, private_umask: None, fmt: DumpFormat
) -> None:
    storage_root = tmp_path / "store" / "deep" / "backups"
    context = make_context(
        tmp_path,
        source_db.url,
        storage_url=f"file://{storage_root}",
        catalog_url=f"sqlite:///{tmp_path}/cat/catalog.db",
        state_dir=tmp_path / "state" / "pgkeep",
    )
    try:
        result = create_backup(context, fmt=fmt, jobs=2)
    finally:
        context.close()
    for directory in (
        tmp_path / "store",
        tmp_path / "store" / "deep",
        storage_root,
        tmp_path / "cat",
    ):
        assert mode(directory) == 0o700, directory
    assert mode(storage_root / result.filename) == 0o600
    assert mode(tmp_path / "cat" / "catalog.db") == 0o600
    if fmt is DumpFormat.DIRECTORY:  # staged in the state dir's tmp
        for directory in (tmp_path / "state", tmp_path / "state" / "pgkeep", tmp_path / "state" / "pgkeep" / "tmp"):
            assert mode(directory) == 0o700, directory
        assert dir_entries(tmp_path / "state" / "pgkeep" / "tmp") == []  # staging removed
    assert dir_entries(storage_root) == stored_files(result.filename)
    for name in dir_entries(storage_root):
        assert mode(storage_root / name) == 0o600, name


EXPECTED_DAYS = {
    BackupType.PRE_MIGRATION: 365,
    BackupType.SCHEDULED: 7,
    BackupType.MANUAL: 30,
    BackupType.FULL: 30,
    BackupType.INCREMENTAL: 30,
}


def test_expiry_by_type(ctx: Context) -> None:
    for backup_type, days in EXPECTED_DAYS.items():
        row = get_row(ctx, create_backup(ctx, backup_type=backup_type).id)
        assert row.type is backup_type
        assert row.expires_at is not None
        assert row.expires_at - row.started_at == timedelta(days=days), backup_type
        assert f"-backup-{backup_type.value.lower()}-" in row.filename


def test_expiry_is_configurable(tmp_path: Path, source_db: DbHandle) -> None:
    context = make_context(tmp_path, source_db.url, retention_days_scheduled=2)
    try:
        row = get_row(context, create_backup(context, backup_type=BackupType.SCHEDULED).id)
    finally:
        context.close()
    assert row.expires_at is not None
    assert row.expires_at - row.started_at == timedelta(days=2)


def test_prefix_setting_names_the_files(tmp_path: Path, source_db: DbHandle) -> None:
    context = make_context(tmp_path, source_db.url, backup_prefix="zigznote")
    try:
        result = create_backup(context)
    finally:
        context.close()
    assert result.filename.startswith("zigznote-backup-manual-")
    assert result.filename.endswith(".dump.zst")


def test_same_millisecond_backups_keep_their_own_files(
    tmp_path: Path,
    source_db: DbHandle,
    ctx: Context,
    backups_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two backups stamped in the same millisecond: distinct names, and each row points at
    its own file, so deleting a failed one never removes the other's file."""
    fixed = datetime(2026, 11, 26, 2, 0, 0, 123_000, tzinfo=UTC)
    monkeypatch.setattr(backup_service, "utcnow", lambda: fixed)
    first = create_backup(ctx)
    assert first.filename == f"{source_db.name}-backup-manual-2026-11-26T02-00-00-123Z.dump.zst"

    second = create_backup(ctx)
    assert second.filename == f"{source_db.name}-backup-manual-2026-11-26T02-00-00-123Z-1.dump.zst"
    assert second.storage_url != first.storage_url

    dying = make_context(tmp_path, source_db.url, pg_bin_dir=truncating_pg_dump_dir(tmp_path / "bin"))
    try:
        with pytest.raises(BackupFailedError) as info:
            create_backup(dying)
    finally:
        dying.close()
    failed = get_row(ctx, str(info.value.backup_id))
    assert failed.filename.endswith("-2.dump.zst")
    assert failed.storage_url in (None, (backups_dir / failed.filename).as_uri())

    delete_backup(ctx, failed.id)
    assert dir_entries(backups_dir) == stored_files(first.filename, second.filename)
    assert verify_backup(ctx, first.id).valid
    assert verify_backup(ctx, second.id).valid
    assert get_row(ctx, failed.id).status is BackupStatus.DELETED


def test_backup_of_a_database_with_quoted_table_names_only(ctx: Context, source_db: DbHandle) -> None:
    # Counting uses quoted identifiers: names with quotes, dots and spaces work.
    name = 'a "b".c d'
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} AS SELECT 1 AS x").format(sql.Identifier(name)))
    meta = get_row(ctx, create_backup(ctx).id).metadata_
    assert meta is not None
    assert meta["tableCounts"][f"public.{name}"] == 1
