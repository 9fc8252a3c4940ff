"""A database, schema, table and password that all need quoting, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from helpers import (
    WEIRD_ROWS,
    WEIRD_SCHEMA,
    WEIRD_SEQUENCE,
    WEIRD_TABLE,
    DbHandle,
    get_row,
    make_context,
    schema_snapshot,
)
from pgkeep.catalog.models import BackupStatus
from pgkeep.config import Compression, DumpFormat
from pgkeep.devcluster import DevCluster
from pgkeep.fingerprint import fingerprint
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.manage import verify_backup
from pgkeep.services.restore import RestoreOptions, resolve_backup, restore

WEIRD_KEY = f"{WEIRD_SCHEMA}.{WEIRD_TABLE}"


@pytest.fixture
def awkward_ctx(tmp_path: Path, awkward_db: DbHandle, pg15: DevCluster) -> Iterator[Context]:
    assert all(c in pg15.superuser_password for c in "@:/%'\"$ \\")
    context = make_context(tmp_path, awkward_db.url)
    try:
        yield context
    finally:
        context.close()


def weird_rows(conninfo: str) -> list[tuple[object, ...]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(
            sql.SQL('SELECT "Id", "Label; x", ticket FROM {} ORDER BY 1').format(
                sql.Identifier(WEIRD_SCHEMA, WEIRD_TABLE)
            )
        ).fetchall()


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [(DumpFormat.CUSTOM, Compression.ZSTD), (DumpFormat.PLAIN, Compression.GZIP)],
    ids=lambda v: v.value,
)
def test_awkward_database_round_trip(
    awkward_ctx: Context,
    awkward_db: DbHandle,
    empty_db: DbHandle,
    fmt: DumpFormat,
    compression: Compression,
) -> None:
    result = create_backup(awkward_ctx, fmt=fmt, compression=compression)
    row = get_row(awkward_ctx, result.id)
    assert row.status is BackupStatus.COMPLETED
    assert row.database_name == awkward_db.name
    assert row.metadata_ is not None and row.metadata_["tableCounts"][WEIRD_KEY] == WEIRD_ROWS
    # The database name does not leak quotes or spaces into the file name.
    assert result.filename.startswith("my_db-_quoted_")
    assert not set(result.filename) & set(" \"'/\\")
    assert verify_backup(awkward_ctx, result.id).valid

    restore(awkward_ctx, resolve_backup(awkward_ctx, result.id), RestoreOptions(target_url=empty_db.url))
    source_prints = fingerprint(awkward_db.conninfo)
    assert source_prints[WEIRD_KEY][0] == WEIRD_ROWS
    assert fingerprint(empty_db.conninfo) == source_prints
    assert schema_snapshot(empty_db.conninfo) == schema_snapshot(awkward_db.conninfo)
    assert weird_rows(empty_db.conninfo) == weird_rows(awkward_db.conninfo)


def test_restore_over_the_awkward_database_itself(awkward_ctx: Context, awkward_db: DbHandle) -> None:
    original = weird_rows(awkward_db.conninfo)
    original_schema = schema_snapshot(awkward_db.conninfo)
    result = create_backup(awkward_ctx)
    with psycopg.connect(awkward_db.conninfo) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(WEIRD_SCHEMA)))
    restore(awkward_ctx, resolve_backup(awkward_ctx, result.id), RestoreOptions())
    assert weird_rows(awkward_db.conninfo) == original
    assert schema_snapshot(awkward_db.conninfo) == original_schema
    with psycopg.connect(awkward_db.conninfo) as conn:
        # The sequence came back at its position: the next ticket follows the last one.
        next_value = conn.execute(
            sql.SQL("SELECT nextval({})").format(
                sql.Literal(sql.Identifier(WEIRD_SCHEMA, WEIRD_SEQUENCE).as_string(conn))
            )
        ).fetchone()
    assert next_value == (max(r[2] for r in original) + 1,)  # type: ignore[operator]
