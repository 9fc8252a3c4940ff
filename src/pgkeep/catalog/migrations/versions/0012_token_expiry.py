"""API tokens that expire: a token made for a contractor or a CI job stops working by itself.

Revision ID: 0012_token_expiry
Revises: 0011_type_completed_at_index
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_token_expiry"
down_revision = "0011_type_completed_at_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
