"""The admin router mounted in another FastAPI app, behind that app's own admin authentication."""

from __future__ import annotations

import pytest
from apihelpers import audit_rows
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from helpers import backup_rows
from pgkeep.api import Principal, Role, admin_router, current_principal
from pgkeep.services.context import Context

STAFF = {"s3cret-admin": Principal("staff-7", Role.ADMIN, "Ada"), "s3cret-ro": Principal("staff-9", Role.VIEWER)}


def host_admin(x_staff_key: str | None = Header(None)) -> Principal:
    """The host app's own admin authentication (here: a header lookup)."""
    if x_staff_key not in STAFF:
        raise HTTPException(401, "host says no")
    return STAFF[x_staff_key]


@pytest.fixture
def host(ctx: Context) -> TestClient:
    app = FastAPI()

    @app.get("/api/admin/users")
    def users() -> list[str]:  # the host's own admin routes live beside pgkeep's
        return ["ada"]

    app.include_router(admin_router(ctx), prefix="/api/admin/db")
    app.dependency_overrides[current_principal] = host_admin
    return TestClient(app, raise_server_exceptions=False)


def test_host_auth_and_prefix_are_used(host: TestClient, ctx: Context) -> None:
    assert host.get("/api/admin/users").json() == ["ada"]
    created = host.post("/api/admin/db/backups", headers={"X-Staff-Key": "s3cret-admin"})
    assert created.status_code == 201, created.text
    [row] = backup_rows(ctx)
    assert row.created_by_id == "staff-7"
    [entry] = audit_rows(ctx, action="backup.create")
    assert entry.admin_id == "staff-7" and entry.outcome == "success"

    accepted = host.post("/api/admin/db/backups", headers={"X-Staff-Key": "s3cret-admin", "Prefer": "respond-async"})
    assert accepted.status_code == 202
    assert accepted.headers["Location"].startswith("/api/admin/db/backups/")


def test_host_refusals_are_problems_and_audited(host: TestClient, ctx: Context) -> None:
    response = host.post("/api/admin/db/backups")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "host says no"
    forbidden = host.delete(
        "/api/admin/db/backups/00000000-0000-0000-0000-000000000000", headers={"X-Staff-Key": "s3cret-ro"}
    )
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
    missing = host.get("/api/admin/db/backups/nope", headers={"X-Staff-Key": "s3cret-ro"})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    outcomes = [(e.action, e.outcome, e.admin_id) for e in audit_rows(ctx) if e.action.startswith("backup.")]
    assert outcomes == [("backup.create", "denied", None), ("backup.delete", "denied", "staff-9")]
