"""admin_tokens_audit: API tokens, the audit log and restore jobs of the admin API.

Revision ID: 0002_admin_tokens_audit
Revises: 0001_add_backup_system
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_admin_tokens_audit"
down_revision = "0001_add_backup_system"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("key", name="api_tokens_key_key"),
    )
    op.create_table(
        "audit_logs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("admin_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(128), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("audit_logs_created_at_idx", "audit_logs", ["created_at"])
    op.create_index("audit_logs_action_idx", "audit_logs", ["action"])
    op.create_index("audit_logs_admin_id_idx", "audit_logs", ["admin_id"])
    op.create_index("audit_logs_resource_id_idx", "audit_logs", ["resource_id"])
    op.create_table(
        "restore_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("backup_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_by", sa.String(64), nullable=True),
    )
    op.create_index("restore_jobs_backup_id_idx", "restore_jobs", ["backup_id"])


def downgrade() -> None:
    op.drop_table("restore_jobs")
    op.drop_table("audit_logs")
    op.drop_table("api_tokens")
