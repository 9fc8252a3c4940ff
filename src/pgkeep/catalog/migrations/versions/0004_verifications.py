"""Verification levels: last verification on each backup, and a history table.

Revision ID: 0004_verifications
Revises: 0003_job_runs
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_verifications"
down_revision = "0003_job_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("database_backups") as batch:
        batch.add_column(sa.Column("last_verified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_verify_level", sa.String(16), nullable=True))
        batch.add_column(sa.Column("last_verify_ok", sa.Boolean(), nullable=True))
    op.create_table(
        "backup_verifications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("backup_id", sa.String(36), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
    )
    op.create_index("backup_verifications_backup_id_idx", "backup_verifications", ["backup_id", "started_at"])


def downgrade() -> None:
    op.drop_table("backup_verifications")
    with op.batch_alter_table("database_backups") as batch:
        batch.drop_column("last_verify_ok")
        batch.drop_column("last_verify_level")
        batch.drop_column("last_verified_at")
