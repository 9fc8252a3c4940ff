"""Point-in-time restores through the API: a restore job's kind and its details.

Revision ID: 0007_pitr_restore_jobs
Revises: 0006_physical_backups
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_pitr_restore_jobs"
down_revision = "0006_physical_backups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("restore_jobs") as batch:
        # Every existing job restored a pg_dump backup: the server default fills them in.
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="logical"))
        batch.add_column(sa.Column("details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("restore_jobs") as batch:
        batch.drop_column("details")
        batch.drop_column("kind")
