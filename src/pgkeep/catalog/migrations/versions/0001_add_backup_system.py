"""add_backup_system: the spec's database_backups table and its enums.

Revision ID: 0001_add_backup_system
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_add_backup_system"
down_revision = None
branch_labels = None
depends_on = None

BACKUP_TYPES = ("FULL", "INCREMENTAL", "SCHEDULED", "MANUAL", "PRE_MIGRATION")
BACKUP_STATUSES = ("PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "EXPIRED", "DELETED")


def upgrade() -> None:
    op.create_table(
        "database_backups",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.Enum(*BACKUP_TYPES, name="BackupType"), nullable=False),
        sa.Column("status", sa.Enum(*BACKUP_STATUSES, name="BackupStatus"), nullable=False),
        sa.Column("storage_url", sa.Text(), nullable=True),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("database_name", sa.Text(), nullable=True),
        sa.Column("format", sa.String(16), nullable=True),
        sa.Column("compression", sa.String(16), nullable=True),
        sa.Column("server_version", sa.String(32), nullable=True),
        sa.Column("pg_dump_version", sa.String(32), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("bytes_written", sa.BigInteger(), nullable=False),
        sa.Column("keep", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("filename", name="database_backups_filename_key"),
    )
    op.create_index("database_backups_status_idx", "database_backups", ["status"])
    op.create_index("database_backups_type_idx", "database_backups", ["type"])
    op.create_index("database_backups_created_by_id_idx", "database_backups", ["created_by_id"])
    op.create_index("database_backups_expires_at_idx", "database_backups", ["expires_at"])
    op.create_index("database_backups_started_at_idx", "database_backups", ["started_at"])


def downgrade() -> None:
    op.drop_table("database_backups")
    sa.Enum(name="BackupType").drop(op.get_bind(), checkfirst=True)
    sa.Enum(name="BackupStatus").drop(op.get_bind(), checkfirst=True)
