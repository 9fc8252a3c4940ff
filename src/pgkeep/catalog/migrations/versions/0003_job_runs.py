"""job_runs: scheduled ticks (idempotency across instances) and manual job runs.

Revision ID: 0003_job_runs
Revises: 0002_admin_tokens_audit
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_job_runs"
down_revision = "0002_admin_tokens_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("key", sa.String(200), nullable=True),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("instance", sa.String(200), nullable=True),
        sa.Column("backup_id", sa.String(36), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("key", name="job_runs_key_key"),
    )
    op.create_index("job_runs_job_started_at_idx", "job_runs", ["job", "started_at"])


def downgrade() -> None:
    op.drop_table("job_runs")
