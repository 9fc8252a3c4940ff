"""pgkeep db upgrade / db current."""

from __future__ import annotations

import typer

from pgkeep.catalog import db as catalog_db
from pgkeep.cli.main import db_app, out_console, state
from pgkeep.errors import EXIT_CODES_HELP


@db_app.command(epilog=EXIT_CODES_HELP)
def upgrade(ctx: typer.Context) -> None:
    """Apply all catalog migrations (SQLite or PostgreSQL)."""
    context = state(ctx).context(check_schema=False)
    catalog_db.upgrade(context.catalog.engine)
    out_console.print(f"catalog at revision {catalog_db.current_revision(context.catalog.engine)}")


@db_app.command(epilog=EXIT_CODES_HELP)
def current(ctx: typer.Context) -> None:
    """Show the catalog's schema revision and the one this pgkeep needs."""
    context = state(ctx).context(check_schema=False)
    engine = context.catalog.engine
    out_console.print(f"current: {catalog_db.current_revision(engine) or 'none'}")
    out_console.print(f"head:    {catalog_db.head_revision(engine)}")
