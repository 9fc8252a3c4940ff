"""A restore job's progress: the bytes of the backup read so far, out of its size.

A long restore was a bare IN_PROGRESS until it ended; the dashboard and a
client polling the job now see how far it got.

Revision ID: 0010_restore_progress
Revises: 0009_kind_list_index
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_restore_progress"
down_revision = "0009_kind_list_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("restore_jobs") as batch:
        batch.add_column(sa.Column("bytes_read", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("total_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("restore_jobs") as batch:
        batch.drop_column("total_bytes")
        batch.drop_column("bytes_read")
