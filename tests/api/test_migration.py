"""Migration 0002: a fresh upgrade to head matches the models, and it downgrades cleanly."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from pgkeep.catalog import admin_models  # noqa: F401  (registers the tables on Base.metadata)
from pgkeep.catalog.db import alembic_config, create_catalog_engine, current_revision, head_revision, upgrade
from pgkeep.catalog.models import Base

ADMIN_TABLES = {"api_tokens", "audit_logs", "restore_jobs"}


def test_fresh_upgrade_matches_the_models_on_sqlite(tmp_path: Path) -> None:
    engine = create_catalog_engine(f"sqlite:///{tmp_path}/catalog.db")
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) >= ADMIN_TABLES
        assert {i["name"] for i in inspector.get_indexes("audit_logs")} == {
            "audit_logs_created_at_idx",
            "audit_logs_action_idx",
            "audit_logs_admin_id_idx",
            "audit_logs_resource_id_idx",
        }
    finally:
        engine.dispose()


def test_downgrade_to_0001_drops_only_the_admin_tables(tmp_path: Path) -> None:
    engine = create_catalog_engine(f"sqlite:///{tmp_path}/catalog.db")
    try:
        upgrade(engine, "0002_admin_tokens_audit")
        command.downgrade(alembic_config(engine), "0001_add_backup_system")
        tables = set(inspect(engine).get_table_names())
        assert not tables & ADMIN_TABLES and "database_backups" in tables
        upgrade(engine, "0002_admin_tokens_audit")
        assert set(inspect(engine).get_table_names()) >= ADMIN_TABLES
    finally:
        engine.dispose()
