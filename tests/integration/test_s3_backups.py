"""Backups on S3 (a real SeaweedFS) end to end, and the faults that matter.

backup -> verify -> restore through S3 with a local copy; the server killed in
the middle of a backup; the server down when a verify or a restore starts; an
object tampered with behind pgkeep's back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import MIB, S3_BUCKET, DbHandle, backup_rows, dir_entries, get_row, make_context, s3_overrides
from pgkeep.catalog.models import BackupStatus
from pgkeep.devs3 import DevS3
from pgkeep.errors import BackupFailedError, StorageError, VerificationError
from pgkeep.fingerprint import diff_fingerprints, fingerprint
from pgkeep.services import manage
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.manifest import CLEANUP_PENDING, manifest_name
from pgkeep.services.recovery import finish_pending_cleanups
from pgkeep.services.restore import RestoreOptions, resolve_backup, restore
from pgkeep.storage import Storage, locate
from pgkeep.storage.base import ObjectWriter


def s3_context(tmp_path: Path, db: DbHandle, server: DevS3, **extra: Any) -> Context:
    return make_context(tmp_path, db.url, **s3_overrides(server, **extra))


def keys(ctx: Context) -> list[str]:
    """Every object under the context's prefix."""
    return [o.name for o in ctx.storage.list()]


def open_uploads(server: DevS3, ctx: Context) -> list[str]:
    prefix = ctx.settings.storage_url.removeprefix(f"s3://{S3_BUCKET}/")
    resp = server.client().list_multipart_uploads(Bucket=S3_BUCKET, Prefix=prefix)
    return [u["Key"] for u in resp.get("Uploads", [])]


@pytest.fixture
def s3_ctx(tmp_path: Path, source_db: DbHandle, devs3: DevS3) -> Iterator[Context]:
    context = s3_context(tmp_path, source_db, devs3, local_copy_dir=tmp_path / "copy")
    try:
        yield context
    finally:
        context.close()


def test_backup_verify_restore_and_delete_through_s3(
    s3_ctx: Context, source_db: DbHandle, empty_db: DbHandle, devs3: DevS3, tmp_path: Path
) -> None:
    result = create_backup(s3_ctx, include_globals=True)
    row = get_row(s3_ctx, result.id)
    assert row.status is BackupStatus.COMPLETED, row.error_message
    assert result.storage_url == f"{s3_ctx.settings.storage_url}/{result.filename}"
    globals_file = row.metadata_["globals"]["filename"]
    assert keys(s3_ctx) == sorted([result.filename, globals_file, manifest_name(result.filename)])
    assert open_uploads(devs3, s3_ctx) == []
    # The local copy holds the same bytes (and the manifest), committed with the upload.
    copy_dir = tmp_path / "copy"
    assert dir_entries(copy_dir) == keys(s3_ctx)
    storage, name = locate(row.storage_url, s3_ctx.settings)
    with storage.open_reader(name) as reader:
        assert reader.read() == (copy_dir / result.filename).read_bytes()

    assert manage.verify_backup(s3_ctx, result.id).valid
    # Parallel: staged in a private temp dir that is removed afterwards.
    restore(s3_ctx, resolve_backup(s3_ctx, result.id), RestoreOptions(target_url=empty_db.url, jobs=2))
    assert diff_fingerprints(fingerprint(source_db.conninfo), fingerprint(empty_db.conninfo)) == []
    assert dir_entries(s3_ctx.temp_root()) == []

    manage.delete_backup(s3_ctx, result.id)
    assert keys(s3_ctx) == [] and dir_entries(copy_dir) == []


@pytest.fixture
def big_db(source_db: DbHandle) -> DbHandle:
    """``source_db`` plus 12 MiB of random bytes: more than two 5 MiB parts once compressed."""
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL)")
        for i in range(12):
            conn.execute("INSERT INTO blobs VALUES (%s, %s)", (i, os.urandom(MIB)))
    return source_db


class KillingStorage:
    """The real S3 storage, whose writer kills the server once ``after`` bytes went through it.

    Deterministic: the crash comes after two parts were handed to the uploader,
    in the middle of the stream, whatever the machine's speed.
    """

    def __init__(self, inner: Storage, server: DevS3, after: int) -> None:
        self.inner = inner
        self.server = server
        self.after = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open_writer(self, name: str) -> ObjectWriter:
        inner = self.inner.open_writer(name)
        storage = self

        class Writer:
            written = 0

            def write(self, data: bytes | memoryview) -> None:
                inner.write(data)
                self.written += len(data)
                if self.written >= storage.after and storage.server.running:
                    storage.server.kill()

            def commit(self) -> None:
                inner.commit()

            def abort(self) -> None:
                inner.abort()

        return Writer()


def test_server_killed_in_the_middle_of_a_backup(tmp_path: Path, big_db: DbHandle, fragile_s3: DevS3) -> None:
    ctx = s3_context(tmp_path, big_db, fragile_s3)
    try:
        killing = KillingStorage(ctx.storage, fragile_s3, after=11 * MIB)
        with pytest.raises(BackupFailedError) as caught:
            create_backup(ctx, storage=killing)  # type: ignore[arg-type]
        assert not fragile_s3.running
        [row] = backup_rows(ctx)
        assert row.status is BackupStatus.FAILED
        assert row.id == caught.value.backup_id
        assert "cannot talk to the S3 endpoint" in row.error_message and fragile_s3.endpoint_url in row.error_message
        assert caught.value.hint and "reachable" in caught.value.hint
        # The abort could not reach the server: the row says cleanup is pending.
        assert row.metadata_[CLEANUP_PENDING] is True

        fragile_s3.restart()
        assert keys(ctx) == []  # no partial object: an upload is invisible until completed
        assert open_uploads(fragile_s3, ctx) != []  # ... but its parts are still held
        # Crash recovery (worker start, `pgkeep cleanup`) finishes the cleanup.
        assert finish_pending_cleanups(ctx) == [row.id]
        assert open_uploads(fragile_s3, ctx) == [] and keys(ctx) == []
        assert CLEANUP_PENDING not in get_row(ctx, row.id).metadata_
        assert finish_pending_cleanups(ctx) == []
    finally:
        ctx.close()


def test_server_down_when_verify_or_restore_starts(s3_ctx: Context, source_db: DbHandle, fragile_s3: DevS3) -> None:
    result = create_backup(s3_ctx)
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("UPDATE users SET display_name = 'after the backup' WHERE id <= 3")
    before = fingerprint(source_db.conninfo)
    rows_before = len(backup_rows(s3_ctx))
    fragile_s3.kill()

    with pytest.raises(StorageError, match="cannot talk to the S3 endpoint") as caught:
        manage.verify_backup(s3_ctx, result.id)
    assert not caught.value.permanent
    with pytest.raises(StorageError, match="cannot talk to the S3 endpoint"):
        restore(s3_ctx, resolve_backup(s3_ctx, result.id), RestoreOptions())
    # Nothing was touched: same data, and no safety backup was even started.
    assert fingerprint(source_db.conninfo) == before
    assert len(backup_rows(s3_ctx)) == rows_before

    fragile_s3.restart()
    assert manage.verify_backup(s3_ctx, result.id).valid


def test_tampered_object_fails_verify_and_restore_is_refused(s3_ctx: Context, empty_db: DbHandle, devs3: DevS3) -> None:
    result = create_backup(s3_ctx)
    storage, name = locate(result.storage_url or "", s3_ctx.settings)
    with storage.open_reader(name) as reader:
        data = bytearray(reader.read())
    data[len(data) // 2] ^= 0x01
    key = result.storage_url.removeprefix(f"s3://{S3_BUCKET}/")  # type: ignore[union-attr]
    devs3.client().put_object(Bucket=S3_BUCKET, Key=key, Body=bytes(data))

    outcome = manage.verify_backup(s3_ctx, result.id, "checksum")
    assert not outcome.valid and "checksum mismatch" in outcome.message
    assert not manage.verify_backup(s3_ctx, result.id).valid
    with pytest.raises(VerificationError, match="checksum mismatch"):
        restore(s3_ctx, resolve_backup(s3_ctx, result.id), RestoreOptions(target_url=empty_db.url))
    assert fingerprint(empty_db.conninfo) == {}
