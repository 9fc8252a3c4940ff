"""A damaged backup is reported by verify and refused by restore, before the target is touched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from helpers import DbHandle, get_row, open_pipes, schema_snapshot
from pgkeep.config import Compression, DumpFormat
from pgkeep.errors import ExitCode, VerificationError
from pgkeep.fingerprint import fingerprint
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.manage import verify_backup
from pgkeep.services.restore import RestoreOptions, resolve_backup, resolve_file, restore

KINDS = [
    (DumpFormat.CUSTOM, Compression.ZSTD),
    (DumpFormat.PLAIN, Compression.NONE),  # only the checksum can notice a changed byte
    (DumpFormat.DIRECTORY, Compression.GZIP),
]


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def stored_path(ctx: Context, backup_id: str) -> Path:
    return Path(ctx.settings.storage_url.removeprefix("file://")) / get_row(ctx, backup_id).filename


def change(source_db: DbHandle) -> None:
    """Make the live database differ from the backup: a restore would show."""
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("UPDATE users SET display_name = 'after the backup' WHERE id < 50")
        conn.execute("CREATE TABLE after_backup (id int)")


def test_a_changed_byte_that_breaks_the_sql_is_named_as_damage(
    ctx: Context, source_db: DbHandle, empty_db: DbHandle
) -> None:
    # Uncompressed plain SQL: nothing but the checksum can notice. The first end-of-data
    # marker "\\." becomes "\\/": psql fails on it long before the end of the backup (the
    # rows of zz_filler, dumped last, are more than the pipes between them hold).
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("CREATE TABLE zz_filler AS SELECT g, md5(g::text) AS t FROM generate_series(1, 100000) g")
    backup_id = create_backup(ctx, fmt=DumpFormat.PLAIN, compression=Compression.NONE).id
    path = stored_path(ctx, backup_id)
    flip_byte(path, path.read_bytes().index(b"\n\\.\n") + 2)
    before = fingerprint(empty_db.conninfo)
    with pytest.raises(VerificationError, match="checksum mismatch") as info:
        restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=empty_db.url))
    assert "the load failed first" in info.value.message  # what psql said is kept
    assert info.value.exit_code is ExitCode.INVALID
    assert fingerprint(empty_db.conninfo) == before


@pytest.mark.parametrize(("fmt", "compression"), KINDS, ids=lambda v: v.value)
def test_flipped_byte_fails_verify_and_restore_leaves_target_untouched(
    ctx: Context, source_db: DbHandle, fmt: DumpFormat, compression: Compression
) -> None:
    backup_id = create_backup(ctx, fmt=fmt, compression=compression).id
    assert verify_backup(ctx, backup_id).valid
    change(source_db)
    before = fingerprint(source_db.conninfo)
    before_schema = schema_snapshot(source_db.conninfo)
    flip_byte(stored_path(ctx, backup_id))

    result = verify_backup(ctx, backup_id)
    assert not result.valid
    assert "checksum mismatch" in result.message

    with pytest.raises(VerificationError, match="checksum mismatch") as info:
        restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions())
    assert info.value.exit_code is ExitCode.INVALID
    assert info.value.backup_id == backup_id
    assert fingerprint(source_db.conninfo) == before
    assert schema_snapshot(source_db.conninfo) == before_schema


@pytest.mark.parametrize("compression", [Compression.NONE, Compression.ZSTD], ids=lambda v: v.value)
def test_damage_after_the_toc_is_caught_while_loading_and_rolled_back(
    ctx: Context, source_db: DbHandle, compression: Compression
) -> None:
    """A restore reads only the archive's head before it starts; a byte changed near the
    end is found by the load's own checksum pass, before psql may COMMIT."""
    backup_id = create_backup(ctx, fmt=DumpFormat.CUSTOM, compression=compression).id
    change(source_db)
    before = fingerprint(source_db.conninfo)
    before_schema = schema_snapshot(source_db.conninfo)
    path = stored_path(ctx, backup_id)
    flip_byte(path, offset=len(path.read_bytes()) - 40)
    pipes = open_pipes()

    with pytest.raises(VerificationError, match="checksum mismatch") as info:
        restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(safety_backup=False))
    assert info.value.backup_id == backup_id
    assert fingerprint(source_db.conninfo) == before
    assert schema_snapshot(source_db.conninfo) == before_schema
    assert open_pipes() == pipes  # the pipe held shut against psql's COMMIT is closed too


def test_corrupt_catalogued_file_restored_by_path_is_refused(ctx: Context, source_db: DbHandle) -> None:
    backup_id = create_backup(ctx, fmt=DumpFormat.PLAIN, compression=Compression.GZIP).id
    change(source_db)
    before = fingerprint(source_db.conninfo)
    path = stored_path(ctx, backup_id)
    flip_byte(path, offset=len(path.read_bytes()) - 12)  # in the gzip trailer's CRC
    with pytest.raises(VerificationError):
        restore(ctx, resolve_file(ctx, path), RestoreOptions())
    assert fingerprint(source_db.conninfo) == before


def test_truncated_file_fails_verify_even_without_a_checksum(ctx: Context, source_db: DbHandle, tmp_path: Path) -> None:
    backup_id = create_backup(ctx, fmt=DumpFormat.CUSTOM, compression=Compression.ZSTD).id
    data = stored_path(ctx, backup_id).read_bytes()
    loose = tmp_path / "copy.dump.zst"  # not in the catalog: no checksum to compare with
    loose.write_bytes(data[: len(data) * 2 // 3])
    change(source_db)
    before = fingerprint(source_db.conninfo)
    with pytest.raises(VerificationError, match="truncated"):
        restore(ctx, resolve_file(ctx, loose), RestoreOptions())
    assert fingerprint(source_db.conninfo) == before


def test_missing_file_fails_verify(ctx: Context) -> None:
    backup_id = create_backup(ctx).id
    stored_path(ctx, backup_id).unlink()
    result = verify_backup(ctx, backup_id)
    assert not result.valid
    assert "not accessible" in result.message or "not found" in result.message


def test_a_truncated_uncompressed_pg_dump_file_fails_the_dry_run(
    ctx: Context, source_db: DbHandle, tmp_path: Path
) -> None:
    """A plain `pg_dump -Fc` file from elsewhere has no checksum and no outer compression to notice a
    missing end: reading its table of contents said "valid", then the restore hit end of file."""
    whole = tmp_path / "external.dump"
    subprocess.run(
        ["/usr/lib/postgresql/15/bin/pg_dump", "-Fc", "-Z0", "-f", str(whole), "-d", source_db.conninfo], check=True
    )
    cut = tmp_path / "cut.dump"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with pytest.raises(VerificationError, match="not readable"):
        restore(ctx, resolve_file(ctx, cut), RestoreOptions(dry_run=True))
    outcome = restore(ctx, resolve_file(ctx, whole), RestoreOptions(dry_run=True))  # the whole file passes
    assert outcome.dry_run and outcome.checksum
