"""The catalog schema: migrations match the models on SQLite and PostgreSQL; upgrade policy."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from helpers import mode
from pgkeep.catalog import db as catalog_db
from pgkeep.catalog.db import Catalog, create_catalog_engine
from pgkeep.catalog.models import Base
from pgkeep.devcluster import DevCluster
from pgkeep.errors import CatalogOutdatedError, ExitCode

SPEC_COLUMNS = {
    "id",
    "filename",
    "size",
    "type",
    "status",
    "storage_url",
    "checksum",
    "metadata",
    "started_at",
    "completed_at",
    "expires_at",
    "created_by_id",
    "error_message",
}
SPEC_INDEXES = {
    "database_backups_status_idx",
    "database_backups_type_idx",
    "database_backups_created_by_id_idx",
    "database_backups_expires_at_idx",
    "database_backups_started_at_idx",
}


@pytest.fixture
def pg_catalog_url(pg15: DevCluster) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for a catalog (URL with the awkward password)."""
    name = f"catalog_{uuid.uuid4().hex[:12]}"
    pg15.create_database(name)
    try:
        yield pg15.url(name)
    finally:
        pg15.drop_database(name)


def schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)


def check_fresh_upgrade_matches_models(engine: Engine) -> None:
    assert catalog_db.current_revision(engine) is None
    catalog_db.upgrade(engine)
    assert catalog_db.current_revision(engine) == catalog_db.head_revision(engine)
    assert schema_diff(engine) == []
    inspector = inspect(engine)
    assert {c["name"] for c in inspector.get_columns("database_backups")} >= SPEC_COLUMNS
    assert {i["name"] for i in inspector.get_indexes("database_backups")} >= SPEC_INDEXES
    uniques = inspector.get_unique_constraints("database_backups")
    assert [u["column_names"] for u in uniques if u["name"] == "database_backups_filename_key"] == [["filename"]]


def test_fresh_upgrade_on_sqlite_matches_models(tmp_path: Path) -> None:
    engine = create_catalog_engine(f"sqlite:///{tmp_path}/catalog.db")
    try:
        check_fresh_upgrade_matches_models(engine)
    finally:
        engine.dispose()


def test_fresh_upgrade_on_postgresql_matches_models(pg_catalog_url: str) -> None:
    engine = create_catalog_engine(pg_catalog_url)
    try:
        check_fresh_upgrade_matches_models(engine)
        with engine.connect() as conn:
            enums = dict(
                conn.exec_driver_sql(
                    "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)::text "
                    "FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname"
                ).all()
            )
        assert enums == {
            "BackupType": "{FULL,INCREMENTAL,SCHEDULED,MANUAL,PRE_MIGRATION}",
            "BackupStatus": "{PENDING,IN_PROGRESS,COMPLETED,FAILED,EXPIRED,DELETED}",
        }
    finally:
        engine.dispose()


def test_models_diverging_from_migrations_would_be_detected(tmp_path: Path) -> None:
    # Guards the comparison itself: an unmigrated database must show differences.
    engine = create_catalog_engine(f"sqlite:///{tmp_path}/catalog.db")
    try:
        assert schema_diff(engine) != []
    finally:
        engine.dispose()


def test_postgresql_catalog_behind_is_refused(pg_catalog_url: str) -> None:
    with pytest.raises(CatalogOutdatedError) as info:
        Catalog(pg_catalog_url)
    assert "pgkeep db upgrade" in str(info.value)
    assert info.value.exit_code is ExitCode.CONFIG
    # Refusing must not have migrated anything.
    engine = create_catalog_engine(pg_catalog_url)
    try:
        assert catalog_db.current_revision(engine) is None
        assert not inspect(engine).has_table("database_backups")
        catalog_db.upgrade(engine)  # what `pgkeep db upgrade` does
    finally:
        engine.dispose()
    catalog = Catalog(pg_catalog_url)  # now accepted
    catalog.dispose()


def test_sqlite_catalog_is_created_and_migrated_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "new" / "catalog.db"
    catalog = Catalog(f"sqlite:///{path}")
    try:
        assert catalog_db.current_revision(catalog.engine) == catalog_db.head_revision(catalog.engine)
        assert inspect(catalog.engine).has_table("database_backups")
    finally:
        catalog.dispose()
    assert path.is_file()


def test_sqlite_catalog_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        catalog = Catalog(f"sqlite:///{tmp_path}/state/sub/catalog.db")
        with catalog.engine.begin() as conn:  # a write, so SQLite creates its journal too
            conn.exec_driver_sql("DELETE FROM database_backups")
        catalog.dispose()
    finally:
        os.umask(old)
    assert mode(tmp_path / "state") == 0o700
    assert mode(tmp_path / "state" / "sub") == 0o700
    assert mode(tmp_path / "state" / "sub" / "catalog.db") == 0o600
    for extra in (tmp_path / "state" / "sub").iterdir():
        assert mode(extra) == 0o600, extra.name


def _posix_locks_held_on(path: Path) -> list[str]:
    """This process's POSIX (fcntl) locks on ``path``, from /proc/locks."""
    inode = os.stat(path).st_ino
    held = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "POSIX" and fields[4] == str(os.getpid()) and fields[5].endswith(f":{inode}"):
            held.append(" ".join(fields[3:]))
    return held


def test_sqlite_keeps_its_locks_when_the_catalog_is_opened_again(tmp_path: Path) -> None:
    """pgkeep never opens and closes the catalog file itself.

    Closing any descriptor of a file drops all of the process's POSIX locks
    on it, SQLite's included: a writer in another process then believed
    itself alone, checkpointed and removed the WAL, and this process's open
    connections read stale rows (a cleanup's DELETED rows still looked
    COMPLETED). A connection reading in WAL mode holds a shared lock on the
    database file; it must still hold it after the file was opened again
    (the schema check, migration lock and mode fix of a second Catalog).
    """
    url = f"sqlite:///{tmp_path}/catalog.db"
    first = Catalog(url)
    try:
        with first.engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar()
            held = _posix_locks_held_on(tmp_path / "catalog.db")
            assert held, "SQLite's shared lock on the catalog file was already lost"
            Catalog(url).dispose()
            assert _posix_locks_held_on(tmp_path / "catalog.db") == held
    finally:
        first.dispose()


def test_concurrent_first_use_of_a_sqlite_catalog(tmp_path: Path) -> None:
    """Two pgkeep runs starting at once on a new SQLite catalog must not both migrate it."""
    url = f"sqlite:///{tmp_path}/catalog.db"
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def first_use() -> None:
        start.wait()
        try:
            Catalog(url).dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    engine = create_catalog_engine(url)
    try:
        assert catalog_db.current_revision(engine) == catalog_db.head_revision(engine)
        assert schema_diff(engine) == []
    finally:
        engine.dispose()


def test_schema_head_constant_matches_the_migration_scripts(tmp_path: Path) -> None:
    # ensure_schema compares with SCHEMA_HEAD so that commands need not import Alembic.
    engine = catalog_db.create_catalog_engine(f"sqlite:///{tmp_path}/head.db")
    try:
        assert catalog_db.head_revision(engine) == catalog_db.SCHEMA_HEAD
    finally:
        engine.dispose()
