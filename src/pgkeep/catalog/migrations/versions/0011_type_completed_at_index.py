"""The newest success of each backup type, for ``/metrics``, without reading every row.

``pgkeep_last_success_timestamp_seconds{type}`` was a ``MAX(completed_at)
... GROUP BY type`` over every successful row: 0.13 s per Prometheus scrape
at 100,000 rows on SQLite. ``(type, completed_at)`` lets it step down each
type's newest completions and stop at the first success.

Revision ID: 0011_type_completed_at_index
Revises: 0010_restore_progress
Create Date: 2026-11-27
"""

from alembic import op

revision = "0011_type_completed_at_index"
down_revision = "0010_restore_progress"
branch_labels = None
depends_on = None

T = "database_backups"


def upgrade() -> None:
    op.create_index("database_backups_type_completed_at_idx", T, ["type", "completed_at"])


def downgrade() -> None:
    op.drop_index("database_backups_type_completed_at_idx", table_name=T)
