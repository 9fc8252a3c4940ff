"""``/check``: ``pgkeep check`` over the API (operator role): is this installation ready to back up?

The same checks as the command (catalog, storage probe, server, client tools,
role access, archiving), without the WAL switch of ``--archive-test``: a GET
changes nothing but the probe object it writes and deletes. Always 200 when
the checks ran: the report's ``ok`` and each check's ``status`` say how they
went. Details name tables and roles, so viewers may not read it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from pgkeep.api.auth import Principal, require
from pgkeep.api.problems import problem_responses
from pgkeep.api.state import AdminApi, get_api
from pgkeep.catalog.admin_models import Role
from pgkeep.services.check import CheckOptions, run_checks

Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]


class CheckResult(BaseModel):
    name: str = Field(description="catalog, storage, server, client tools, access, archiving (replication: physical)")
    status: Literal["ok", "warn", "fail", "skip"]
    detail: str
    hint: str | None = Field(None, description="How to fix a failure or warning.")


class CheckReport(BaseModel):
    ok: bool = Field(description="False when any check failed (warnings do not count).")
    checks: list[CheckResult]


def check(
    principal: Operator,
    api: Annotated[AdminApi, Depends(get_api)],
    physical: Annotated[
        bool, Query(description="Require what physical backups and point-in-time recovery need.")
    ] = False,
) -> Any:
    """Readiness of the catalog, storage, database server, client tools, backup role and WAL archiving."""
    checks = run_checks(api.ctx, CheckOptions(physical=physical))
    return {"ok": not any(c.status == "fail" for c in checks), "checks": [c.as_json() for c in checks]}


def register(router: APIRouter) -> None:
    router.add_api_route(
        "/check",
        check,
        methods=["GET"],
        response_model=CheckReport,
        operation_id="getCheck",
        summary="Readiness checks (pgkeep check)",
        name="pgkeep_check",
        tags=["health"],
        responses=problem_responses(401, 403, 422),
    )
