"""The role matrix: every route x every role, and no / bad / revoked token.

viewer: list, get. operator: also create and verify. admin: also restore,
delete, cleanup, restore jobs and the audit log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from apihelpers import API, Shared, bearer

UNKNOWN = str(uuid.uuid4())
RANK = {"viewer": 0, "operator": 1, "admin": 2}


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # the OpenAPI path, under /api/admin
    needs: str
    allowed: int  # the status when the caller may call it
    kwargs: dict[str, Any] = field(default_factory=dict)
    unknown_id: bool = False  # call it with an unknown backup id

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


ROUTES = [
    Route("POST", "/backups", "operator", 201, {"json": {"type": "MANUAL"}}),
    Route("GET", "/backups", "viewer", 200, {"params": {"limit": 5}}),
    Route("GET", "/backups/{backup_id}", "viewer", 200),
    Route("POST", "/backups/{backup_id}/verify", "operator", 200),
    Route("POST", "/backups/{backup_id}/restore", "admin", 200, {"json": {"confirmRestore": True}}),
    Route("GET", "/backups/{backup_id}/restores/{job_id}", "admin", 200),
    # Deleting the module's backup would spoil the other cases: an unknown id's 404 proves access.
    Route("DELETE", "/backups/{backup_id}", "admin", 404, unknown_id=True),
    Route("POST", "/backups/cleanup", "admin", 200, {"params": {"dryRun": True}}),
    Route("GET", "/audit-logs", "admin", 200),
    Route("POST", "/backups/{backup_id}/keep", "operator", 200, {"json": {"keep": False}}),
    Route("GET", "/me", "viewer", 200),
    Route("GET", "/summary", "viewer", 200),
    Route("GET", "/check", "operator", 200),
    # This app has no PGKEEP_PITR_DATA_ROOT: its 409 proves access (tests/pitr restores for real).
    Route("POST", "/pitr-restores", "admin", 409, {"json": {"latest": True}}),
    # A logical restore's job is not a point-in-time restore's: its 404 proves access.
    Route("GET", "/pitr-restores/{job_id}", "admin", 404),
]
CALLERS = ["no token", "bad token", "revoked token", "viewer", "operator", "admin"]


@pytest.fixture(scope="module")
def ids(shared: Shared) -> dict[str, str]:
    """A COMPLETED backup and a (dry-run) restore job of it, made by an admin."""
    headers = bearer(shared.tokens.admin)
    response = shared.client.post(f"{API}/backups", headers=headers)
    assert response.status_code == 201, response.text
    backup_id = response.json()["backup"]["id"]
    restored = shared.client.post(f"{API}/backups/{backup_id}/restore", json={"confirmRestore": True}, headers=headers)
    assert restored.status_code == 200, restored.text
    return {"backup_id": backup_id, "job_id": restored.json()["jobId"]}


def headers_for(shared: Shared, caller: str) -> dict[str, str]:
    if caller == "no token":
        return {}
    if caller == "bad token":
        return bearer("pgk_0123456789ab_" + "A" * 43)
    if caller == "revoked token":
        return bearer(shared.tokens.revoked)
    return bearer(shared.tokens.of(caller))


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_role_matrix(shared: Shared, ids: dict[str, str], route: Route, caller: str) -> None:
    path = route.template.format(**(ids | ({"backup_id": UNKNOWN} if route.unknown_id else {})))
    response = shared.client.request(
        route.method,
        API + path,
        headers=headers_for(shared, caller),
        **route.kwargs,
    )
    if caller not in RANK:
        expected = 401
    elif RANK[caller] < RANK[route.needs]:
        expected = 403
    else:
        expected = route.allowed
    assert response.status_code == expected, response.text
    if expected in (401, 403):
        assert response.headers["content-type"] == "application/problem+json"


def test_every_route_is_in_the_matrix(shared: Shared) -> None:
    schema = shared.client.get("/openapi.json").json()
    documented = {
        (method.upper(), path.removeprefix(API))
        for path, operations in schema["paths"].items()
        if path.startswith(API)
        for method in operations
    }
    assert documented == {(r.method, r.template) for r in ROUTES}
