"""Verification levels and the restore drill."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import zstandard

from helpers import DbHandle, count_local_opens
from pgkeep.config import Compression, DumpFormat, load_settings
from pgkeep.errors import InsufficientPrivilegeError, InvalidStateError
from pgkeep.pipeline.codecs import CodecOptions, compressor
from pgkeep.services import manage
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.storage import local_path_from_url


@pytest.fixture
def ctx(tmp_path: Path, source_db: DbHandle):  # type: ignore[no-untyped-def]
    context = Context.build(
        load_settings(
            database_url=source_db.url,
            catalog_url=f"sqlite:///{tmp_path}/catalog.db",
            storage_url=f"file://{tmp_path}/backups",
            state_dir=str(tmp_path / "state"),
        )
    )
    yield context
    context.close()


def _scratch_databases(source_db: DbHandle) -> list[str]:
    with psycopg.connect(source_db.conninfo) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'pgkeep_drill_%'")]


@pytest.mark.parametrize("level", ["checksum", "archive", "restore"])
def test_every_level_passes_on_a_good_backup_and_is_recorded(ctx: Context, source_db: DbHandle, level: str) -> None:
    result = create_backup(ctx)
    verdict = manage.verify_backup(ctx, result.id, level)
    assert verdict.valid, verdict.message
    assert verdict.level == level
    shown = manage.get_backup(ctx, result.id)
    assert shown["lastVerifyLevel"] == level and shown["lastVerifyOk"] is True and shown["lastVerifiedAt"]
    if level == "restore":
        assert verdict.details["mismatches"] == {}
        assert verdict.details["amcheck"]["checked"] > 0 and verdict.details["amcheck"]["errors"] == []
    assert _scratch_databases(source_db) == []


def _rewrite_backup(ctx: Context, backup_id: str, edit, *, rechecksum: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Alter a stored backup's content (zstd-compressed; a plain backup's SQL) and, unless
    told not to, re-checksum it in the catalog, so only a real restore can tell."""
    import hashlib

    from pgkeep.catalog import repository as repo

    with ctx.catalog.session() as session:
        row = repo.get_backup(session, backup_id)
        path = local_path_from_url(row.storage_url)
        sql_text = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
        comp = compressor(Compression.ZSTD, CodecOptions())
        data = comp.compress(edit(sql_text)) + comp.flush()
        path.write_bytes(data)
        if rechecksum:
            row.checksum = hashlib.sha256(data).hexdigest()
            row.size = len(data)
            session.commit()


def test_drill_catches_an_altered_but_rechecksummed_backup(ctx: Context, source_db: DbHandle) -> None:
    result = create_backup(ctx, fmt=DumpFormat.PLAIN)

    def drop_a_summary_row(sql_text: bytes) -> bytes:
        # Remove one data line from the summaries COPY block (nothing references summaries).
        head, copy, rest = sql_text.partition(b"COPY public.summaries ")
        header, newline, data = rest.partition(b"\n")
        _first_row, _, remaining = data.partition(b"\n")
        return head + copy + header + newline + remaining

    _rewrite_backup(ctx, result.id, drop_a_summary_row)
    assert manage.verify_backup(ctx, result.id, "archive").valid  # checksum and format look fine
    verdict = manage.verify_backup(ctx, result.id, "restore")
    assert not verdict.valid
    assert "public.summaries" in verdict.message and "row counts differ" in verdict.message
    assert manage.get_backup(ctx, result.id)["lastVerifyOk"] is False
    assert _scratch_databases(source_db) == []


def test_drill_that_fails_to_restore_still_drops_the_scratch_database(ctx: Context, source_db: DbHandle) -> None:
    result = create_backup(ctx, fmt=DumpFormat.PLAIN)
    _rewrite_backup(ctx, result.id, lambda s: s.replace(b"CREATE TABLE public.users", b"CREATE TABLE public.users!", 1))
    verdict = manage.verify_backup(ctx, result.id, "restore")
    assert not verdict.valid and "restore drill failed" in verdict.message
    assert _scratch_databases(source_db) == []


def test_drill_reads_the_backup_once(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drill's load checks the checksum before it commits: no separate scan first (from
    S3 that was a second download of the whole backup)."""
    result = create_backup(ctx)
    stored = Path(result.storage_url or "").name
    opened = count_local_opens(monkeypatch)
    progress: list[int] = []
    verdict = manage.verify_backup(ctx, result.id, "restore", on_read=progress.append)
    assert verdict.valid, verdict.message
    assert opened.count(stored) == 1, opened
    assert progress[-1] == result.size


@pytest.mark.parametrize("fmt", [DumpFormat.CUSTOM, DumpFormat.PLAIN])
def test_drill_names_damage_as_a_checksum_mismatch(ctx: Context, source_db: DbHandle, fmt: DumpFormat) -> None:
    result = create_backup(ctx, fmt=fmt)
    path = local_path_from_url(result.storage_url or "")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    verdict = manage.verify_backup(ctx, result.id, "restore")
    assert not verdict.valid and "checksum mismatch" in verdict.message, verdict.message
    assert _scratch_databases(source_db) == []


def test_drill_names_damage_that_decodes_cleanly_but_breaks_the_load(ctx: Context, source_db: DbHandle) -> None:
    """An altered archive, well compressed, the recorded checksum left alone: pg_restore
    fails before the stream ends, and the drill says why (the bytes are not the ones
    backed up), not only pg_restore's complaint."""
    result = create_backup(ctx, fmt=DumpFormat.CUSTOM)
    _rewrite_backup(ctx, result.id, lambda s: b"XXXXX" + s[5:], rechecksum=False)  # no "PGDMP" magic
    verdict = manage.verify_backup(ctx, result.id, "restore")
    assert not verdict.valid and "checksum mismatch" in verdict.message, verdict.message
    assert _scratch_databases(source_db) == []


def test_drill_without_createdb_names_the_privilege(tmp_path: Path, source_db: DbHandle, pg15) -> None:  # type: ignore[no-untyped-def]
    pg15.create_role("drill_no_createdb", "pw-Xy12", login=True)
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("GRANT pg_read_all_data TO drill_no_createdb")
    url = pg15.url(source_db.name, user="drill_no_createdb", password="pw-Xy12")
    ctx = Context.build(
        load_settings(
            database_url=url,
            catalog_url=f"sqlite:///{tmp_path}/c.db",
            storage_url=f"file://{tmp_path}/b",
            state_dir=str(tmp_path / "s"),
        )
    )
    try:
        result = create_backup(ctx)
        with pytest.raises(InsufficientPrivilegeError, match="CREATEDB") as err:
            manage.verify_backup(ctx, result.id, "restore")
        assert err.value.hint == (
            'ALTER ROLE "drill_no_createdb" CREATEDB, or set PGKEEP_SCRATCH_URL to a scratch server'
        )
        # With it, the drill passes as this role although the tables belong to the superuser: it
        # restores without owners and grants (it failed every week on "must be member of role").
        pg15.execute("ALTER ROLE drill_no_createdb CREATEDB")
        verdict = manage.verify_backup(ctx, result.id, "restore")
        assert verdict.valid, verdict.message
        assert verdict.details["mismatches"] == {} and verdict.details["tables"] > 0
        assert _scratch_databases(source_db) == []
    finally:
        ctx.close()
        pg15.execute("DROP OWNED BY drill_no_createdb", dbname=source_db.name)
        pg15.execute("DROP ROLE drill_no_createdb")


def test_verify_refuses_a_failed_backup(ctx: Context) -> None:
    from pgkeep.catalog.models import BackupStatus, BackupType, DatabaseBackup

    with ctx.catalog.session() as session:
        row = DatabaseBackup(filename="x-failed.dump.zst", type=BackupType.MANUAL, status=BackupStatus.FAILED)
        session.add(row)
        session.commit()
        backup_id = row.id
    with pytest.raises(InvalidStateError):
        manage.verify_backup(ctx, backup_id, "restore")


def test_scheduled_drill_restores_the_newest_backup_and_sets_the_metric(ctx: Context) -> None:
    from datetime import UTC, datetime

    from prometheus_client import generate_latest

    from pgkeep.observability.metrics import build_registry
    from pgkeep.scheduler.runner import run_tick

    assert b"\npgkeep_last_restore_drill_success_timestamp_seconds " not in generate_latest(build_registry(ctx))
    create_backup(ctx)
    newest = create_backup(ctx)
    outcome = run_tick(ctx, "drill", datetime(2026, 11, 22, 4, 0, tzinfo=UTC))
    assert outcome.status == "succeeded", outcome.message
    assert outcome.backup_id == newest.id
    assert manage.get_backup(ctx, newest.id)["lastVerifyLevel"] == "restore"
    assert b"\npgkeep_last_restore_drill_success_timestamp_seconds " in generate_latest(build_registry(ctx))


def test_verifications_are_recorded_beside_the_backup_and_survive_a_catalog_rebuild(
    tmp_path: Path, ctx: Context
) -> None:
    from pgkeep.services.rebuild import rebuild_catalog

    result = create_backup(ctx)
    manage.verify_backup(ctx, result.id, "checksum")
    manage.verify_backup(ctx, result.id, "archive")
    records = sorted(p.name for p in (tmp_path / "backups").glob("*.verification-*.json"))
    assert len(records) == 2
    shown = manage.get_backup(ctx, result.id)

    # The catalog is lost; a rebuild from storage alone knows the last verification.
    ctx.close()
    (tmp_path / "catalog.db").unlink()
    rebuilt = Context.build(ctx.settings)
    try:
        rebuild_catalog(rebuilt)
        again = manage.get_backup(rebuilt, result.id)
        assert again["lastVerifyLevel"] == "archive" and again["lastVerifyOk"] is True
        assert again["lastVerifiedAt"] == shown["lastVerifiedAt"]
        manage.delete_backup(rebuilt, result.id)
    finally:
        rebuilt.close()
    assert list((tmp_path / "backups").iterdir()) == []
