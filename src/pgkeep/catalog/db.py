"""Catalog database: engine creation and schema migrations (Alembic).

An embedded SQLite catalog is created and migrated on first use. A
PostgreSQL catalog that is behind is refused: it may be shared, and
migrating someone's shared database unasked would surprise its owner.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from pgkeep.errors import CatalogOutdatedError, ConfigError
from pgkeep.fsutil import locked_dir, private_dir, private_mode

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration. Alembic is imported only to migrate: it costs every
# command a third of a second and tens of MB. tests/migration checks that
# this matches the migration scripts' head.
SCHEMA_HEAD = "0012_token_expiry"


def sqlalchemy_url(catalog_url: str) -> str:
    """Map user-facing catalog URLs to SQLAlchemy URLs (psycopg 3 driver)."""
    for prefix in ("postgresql://", "postgres://"):
        if catalog_url.startswith(prefix):
            return "postgresql+psycopg://" + catalog_url[len(prefix) :]
    return catalog_url


def create_catalog_engine(catalog_url: str) -> Engine:
    url = make_url(sqlalchemy_url(catalog_url))
    if url.get_backend_name() == "sqlite":
        db_path = Path(url.database) if url.database and url.database != ":memory:" else None
        if db_path is not None:
            private_dir(db_path.parent)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            if db_path is not None:
                # SQLite has just created or opened the file. Never open and close it
                # ourselves: closing any descriptor of a file drops every POSIX lock this
                # process holds on it, SQLite's included, and another process could then
                # checkpoint and remove the WAL under our connections. A new file is
                # still empty here: nothing is written before its mode is 0600.
                private_mode(db_path)  # before WAL: SQLite gives -wal and -shm this mode
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # WAL: readers (the API, the dashboard's polling) never wait for a writer (a
            # backup's progress updates), and a commit costs one append instead of a
            # rollback journal's create/fsync/delete. The mode is stored in the file, so
            # only the first connection switches; one that finds the file busy leaves it
            # to the next (the mode changes speed, not safety).
            if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                with contextlib.suppress(sqlite3.OperationalError):
                    cur.execute("PRAGMA journal_mode=WAL")
            # FULL, not NORMAL: NORMAL may lose the last commits on power loss, and
            # "EXPIRED before the files are deleted" needs that commit durable first.
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    if url.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    raise ConfigError(f"PGKEEP_CATALOG_URL: unsupported database {url.get_backend_name()!r}")


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    """The head of the migration scripts (read by Alembic; see SCHEMA_HEAD)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The catalog's schema revision (Alembic's version table), None for an empty database."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (``pgkeep db upgrade``)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


@contextlib.contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """Serialize migrations of one SQLite file between processes.

    flock on the catalog's (private) directory, not on the database file:
    closing a descriptor of the database file would drop SQLite's POSIX locks
    on it held by this process's open connections (see create_catalog_engine).
    """
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with locked_dir(Path(database).parent):
        yield


def ensure_schema(engine: Engine) -> None:
    """Make the catalog usable: auto-migrate SQLite, refuse a PostgreSQL catalog that is behind."""
    current = current_revision(engine)
    head = SCHEMA_HEAD
    if current == head:
        return
    if engine.dialect.name == "sqlite":
        with _sqlite_migration_lock(engine):
            # Two first runs at once (cron and a person) would both create the
            # tables; the second one re-reads the revision once it has the lock.
            if current_revision(engine) != head:
                upgrade(engine)
        return
    raise CatalogOutdatedError(
        f"the catalog database is at schema revision {current or 'none'}, this pgkeep needs {head}",
        hint="run `pgkeep db upgrade` to migrate the catalog",
    )


class Catalog:
    """Owns the catalog engine and hands out sessions."""

    def __init__(self, catalog_url: str, *, check_schema: bool = True) -> None:
        self.engine = create_catalog_engine(catalog_url)
        if check_schema:
            ensure_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._sessions()

    def dispose(self) -> None:
        self.engine.dispose()
