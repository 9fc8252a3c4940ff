"""Encryption at rest: which backups are encrypted (age).

Revision ID: 0005_encryption
Revises: 0004_verifications
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_encryption"
down_revision = "0004_verifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("database_backups") as batch:
        batch.add_column(sa.Column("encryption", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("database_backups") as batch:
        batch.drop_column("encryption")
