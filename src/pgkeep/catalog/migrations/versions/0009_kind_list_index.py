"""The list filtered by kind (``GET /backups?kind=``, ``pgkeep list --kind``) in the list's order.

With only the one-column ``kind`` index, ``kind=logical`` over 100,000 rows
(most of them logical) sorted tens of thousands of rows for each page: 60 ms
at the 95th percentile on SQLite, over the 50 ms target. ``(kind,
started_at, id)`` yields the page in order and the count from the index, like
the type and status lists (0008); it replaces the one-column index, its prefix.

Revision ID: 0009_kind_list_index
Revises: 0008_list_indexes
Create Date: 2026-11-27
"""

from alembic import op

revision = "0009_kind_list_index"
down_revision = "0008_list_indexes"
branch_labels = None
depends_on = None

T = "database_backups"


def upgrade() -> None:
    op.drop_index("database_backups_kind_idx", table_name=T)
    op.create_index("database_backups_kind_started_at_idx", T, ["kind", "started_at", "id"])


def downgrade() -> None:
    op.drop_index("database_backups_kind_started_at_idx", table_name=T)
    op.create_index("database_backups_kind_idx", T, ["kind"])
