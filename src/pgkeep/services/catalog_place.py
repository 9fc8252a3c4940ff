"""Where the catalog lives: never inside a database pgkeep backs up or restores whole.

A PostgreSQL catalog (PGKEEP_CATALOG_URL) in the backed-up database is
dumped with it, and restoring that database replaces the catalog with the
backup's copy: it forgets every backup taken since (and the restored
backup's own row reads IN_PROGRESS, as it did while pg_dump ran). So logical
backups of that database and whole-database restores into it are refused
before anything starts, naming the fix; selective restores, which empty
nothing, and restores into other databases are not.

Databases are compared by identity, not by URL: the server's system
identifier and the database's OID are the same however two URLs spell
host and port (a standby of the catalog's server matches too: its dumps
carry the catalog all the same).
"""

from __future__ import annotations

import psycopg
from sqlalchemy import text

from pgkeep.errors import CatalogInsideError
from pgkeep.pgtools.conninfo import Target
from pgkeep.services.context import Context

# Both executable by every role.
IDENTITY_SQL = (
    "SELECT system_identifier, (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "FROM pg_control_system()"
)

FIX = (
    "give the catalog a database of its own: create one (e.g. pgkeep_catalog), point PGKEEP_CATALOG_URL at it, "
    "run `pgkeep db upgrade`, then `pgkeep catalog rebuild` (it reads every backup back from storage)"
)


def _catalog_identity(ctx: Context) -> tuple[int, int] | None:
    """The catalog's (system identifier, database OID); None for a SQLite catalog."""
    engine = ctx.catalog.engine
    if engine.url.get_backend_name() != "postgresql":
        return None
    with engine.connect() as conn:
        row = conn.execute(text(IDENTITY_SQL)).one()
    return int(row[0]), int(row[1])


def holds_catalog(ctx: Context, conn: psycopg.Connection) -> bool:
    """Whether the database ``conn`` is connected to is the one holding pgkeep's catalog."""
    catalog = _catalog_identity(ctx)
    if catalog is None:
        return False
    row = conn.execute(IDENTITY_SQL).fetchone()
    return row is not None and (int(row[0]), int(row[1])) == catalog


def catalog_inside(target: Target, operation: str) -> CatalogInsideError:
    """The refusal of a backup or whole restore of the catalog's own database."""
    what = {
        "backup": "backing it up would store the catalog in the backup, and restoring that",
        "restore": "restoring it",
    }[operation]
    return CatalogInsideError(
        f"pgkeep's catalog (PGKEEP_CATALOG_URL) is in the database {target.describe()}: "
        f"{what} would rewind the catalog to the backup's moment, forgetting every newer backup",
        operation=operation,
        hint=FIX,
    )
