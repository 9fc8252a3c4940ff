"""Indexes for the admin API's lists and the dashboard's summary (issue 7: 100,000 rows).

Every list is ``ORDER BY started_at DESC, id DESC`` with an optional
``type`` and/or ``status`` filter: each shape gets an index that yields its
rows already in that order and holds ``id``, so a page (even a deep one) and
its count are read from the index alone. ``completed_at`` serves "when did a
backup last succeed"; ``backup_verifications (level, started_at)`` the last
restore drill.

Revision ID: 0008_list_indexes
Revises: 0007_pitr_restore_jobs
Create Date: 2026-11-26
"""

from alembic import op

revision = "0008_list_indexes"
down_revision = "0007_pitr_restore_jobs"
branch_labels = None
depends_on = None

T = "database_backups"
NEW = {
    "database_backups_status_started_at_idx": ["status", "started_at", "id"],
    "database_backups_type_started_at_idx": ["type", "started_at", "id"],
    "database_backups_type_status_started_at_idx": ["type", "status", "started_at", "id"],
    "database_backups_completed_at_idx": ["completed_at"],
}


def upgrade() -> None:
    # started_at alone left ties on started_at to a sort; with id it gives the list's whole order.
    op.drop_index("database_backups_started_at_idx", table_name=T)
    op.create_index("database_backups_started_at_idx", T, ["started_at", "id"])
    for name, columns in NEW.items():
        op.create_index(name, T, columns)
    op.create_index("backup_verifications_level_started_at_idx", "backup_verifications", ["level", "started_at"])


def downgrade() -> None:
    op.drop_index("backup_verifications_level_started_at_idx", table_name="backup_verifications")
    for name in reversed(NEW):
        op.drop_index(name, table_name=T)
    op.drop_index("database_backups_started_at_idx", table_name=T)
    op.create_index("database_backups_started_at_idx", T, ["started_at"])
