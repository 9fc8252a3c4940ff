"""Physical backups: kind, WAL positions and times, timeline, incremental parent.

Revision ID: 0006_physical_backups
Revises: 0005_encryption
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_physical_backups"
down_revision = "0005_encryption"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("database_backups") as batch:
        # Every existing row is a pg_dump backup: the server default fills them in.
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="logical"))
        batch.add_column(sa.Column("timeline", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("start_lsn", sa.String(32), nullable=True))
        batch.add_column(sa.Column("end_lsn", sa.String(32), nullable=True))
        batch.add_column(sa.Column("backup_start_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("backup_end_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("wal_start", sa.String(64), nullable=True))
        batch.add_column(sa.Column("wal_end", sa.String(64), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
    op.create_index("database_backups_kind_idx", "database_backups", ["kind"])


def downgrade() -> None:
    op.drop_index("database_backups_kind_idx", table_name="database_backups")
    with op.batch_alter_table("database_backups") as batch:
        for column in (
            "parent_id",
            "wal_end",
            "wal_start",
            "backup_end_at",
            "backup_start_at",
            "end_lsn",
            "start_lsn",
            "timeline",
            "kind",
        ):
            batch.drop_column(column)
