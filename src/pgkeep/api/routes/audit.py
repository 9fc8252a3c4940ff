"""``/audit-logs``: read the audit log (admin role). There is no route that changes it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator, BeforeValidator, StringConstraints

from pgkeep.api.auth import Principal, require
from pgkeep.api.problems import problem_responses
from pgkeep.api.schemas import AuditLogList, Outcome, SafeText
from pgkeep.api.state import AdminApi, get_api
from pgkeep.catalog.admin_models import AuditOutcome, Role
from pgkeep.services import audit


def _as_utc(value: datetime) -> datetime:
    """Naive times are taken as UTC; out-of-range ones are a 422, not an OverflowError."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date out of range") from None


def _iso_only(value: object) -> object:
    # pydantic would read "-90196139" as a Unix timestamp; the API documents ISO 8601 only.
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+(\.\d*)?\s*", value):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T00:00:00Z")
    return value


Instant = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_as_utc)]
Filter = Annotated[SafeText, StringConstraints(max_length=128)]


def list_logs(
    api: Annotated[AdminApi, Depends(get_api)],
    _: Annotated[Principal, Depends(require(Role.ADMIN))],
    page: Annotated[int, Query(ge=1, le=1_000_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    action: Annotated[Filter | None, Query(description="e.g. backup.restore")] = None,
    adminId: Annotated[Filter | None, Query()] = None,
    resourceId: Annotated[Filter | None, Query()] = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    since: Annotated[Instant | None, Query(description="Entries at or after this time.")] = None,
    until: Annotated[Instant | None, Query(description="Entries before this time.")] = None,
) -> Any:
    """Audit entries, newest first, shaped like the backups list: ``{logs, pagination}``."""
    return audit.list_logs(
        api.ctx,
        page=page,
        limit=limit,
        action=action,
        admin_id=adminId,
        resource_id=resourceId,
        outcome=AuditOutcome(outcome) if outcome else None,
        since=since,
        until=until,
    )


def register(router: APIRouter) -> None:
    router.add_api_route(
        "/audit-logs",
        list_logs,
        methods=["GET"],
        response_model=AuditLogList,
        operation_id="listAuditLogs",
        summary="List audit entries",
        name="pgkeep_list_audit_logs",
        tags=["audit"],
        responses=problem_responses(401, 403, 422, 500),
    )
