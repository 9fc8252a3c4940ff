"""The audit log: append an entry, read pages of entries. Nothing here changes or deletes one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pgkeep.catalog.admin_models import AuditLog, AuditOutcome
from pgkeep.services.context import Context
from pgkeep.services.serialize import iso, pagination

USER_AGENT_MAX = 512
RESOURCE_ID_MAX = 128
REQUEST_ID_MAX = 128


@dataclass(frozen=True)
class Actor:
    """Who acts, and from where. Every field is optional (the CLI has no client IP)."""

    admin_id: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


def add_entry(
    session: Session,
    actor: Actor,
    *,
    action: str,
    resource: str,
    outcome: AuditOutcome,
    resource_id: str | None = None,
    details: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an entry to ``session``; the caller commits (with the change it describes)."""
    entry = AuditLog(
        admin_id=_clip(actor.admin_id, 64),
        action=action,
        resource=resource,
        resource_id=_clip(resource_id, RESOURCE_ID_MAX),
        details=details,
        outcome=outcome.value,
        error=error,
        client_ip=_clip(actor.client_ip, 64),
        user_agent=_clip(actor.user_agent, USER_AGENT_MAX),
        request_id=_clip(actor.request_id, REQUEST_ID_MAX),
    )
    session.add(entry)
    return entry


def record(
    ctx: Context,
    actor: Actor,
    *,
    action: str,
    resource: str,
    outcome: AuditOutcome,
    resource_id: str | None = None,
    details: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> str:
    """Append one entry in its own transaction; return its id."""
    with ctx.catalog.session() as session:
        entry = add_entry(
            session,
            actor,
            action=action,
            resource=resource,
            outcome=outcome,
            resource_id=resource_id,
            details=details,
            error=error,
        )
        session.commit()
        return entry.id


def log_json(row: AuditLog) -> dict[str, Any]:
    return {
        "id": row.id,
        "adminId": row.admin_id,
        "action": row.action,
        "resource": row.resource,
        "resourceId": row.resource_id,
        "details": row.details,
        "outcome": row.outcome,
        "error": row.error,
        "clientIp": row.client_ip,
        "userAgent": row.user_agent,
        "requestId": row.request_id,
        "createdAt": iso(row.created_at),
    }


def list_logs(
    ctx: Context,
    *,
    page: int = 1,
    limit: int = 20,
    action: str | None = None,
    admin_id: str | None = None,
    resource_id: str | None = None,
    outcome: AuditOutcome | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """A page of entries, newest first: ``{logs, pagination}`` like the backups list.

    ``since`` is inclusive, ``until`` exclusive; both must be UTC-aware.
    """
    conditions = []
    if action is not None:
        conditions.append(AuditLog.action == action)
    if admin_id is not None:
        conditions.append(AuditLog.admin_id == admin_id)
    if resource_id is not None:
        conditions.append(AuditLog.resource_id == resource_id)
    if outcome is not None:
        conditions.append(AuditLog.outcome == outcome.value)
    if since is not None:
        conditions.append(AuditLog.created_at >= since)
    if until is not None:
        conditions.append(AuditLog.created_at < until)
    with ctx.catalog.session() as session:
        total = int(session.scalar(select(func.count()).select_from(AuditLog).where(*conditions)) or 0)
        rows = session.scalars(
            select(AuditLog)
            .where(*conditions)
            # created_at can tie within a clock tick; the id breaks ties so pages are stable.
            .order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
            .offset((page - 1) * limit)
            .limit(limit)
        ).all()
        return {"logs": [log_json(r) for r in rows], "pagination": pagination(page, limit, total)}
