"""Alembic environment: pgkeep passes its engine in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from pgkeep.catalog import admin_models  # noqa: F401  (registers the admin API's tables)
from pgkeep.catalog.models import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
