"""GET /api/admin/check: pgkeep check over the API, on the per-test source database."""

from __future__ import annotations

from pathlib import Path

from apihelpers import API
from fastapi.testclient import TestClient

from helpers import dir_entries
from pgkeep.services.context import Context


def test_check_reports_every_check_and_changes_nothing(as_admin: TestClient, ctx: Context) -> None:
    response = as_admin.get(f"{API}/check")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["ok"] is True, report
    assert [c["name"] for c in report["checks"]] == [
        "catalog",
        "storage",
        "encryption",
        "server",
        "client tools",
        "access",
        "archiving",
    ]
    assert {c["status"] for c in report["checks"]} == {"ok"}
    storage_dir = ctx.settings.storage_url.removeprefix("file://")
    assert dir_entries(Path(storage_dir)) == []  # the probe is gone


def test_physical_fails_on_a_server_that_does_not_archive_and_is_still_200(as_admin: TestClient) -> None:
    response = as_admin.get(f"{API}/check", params={"physical": "true"})
    assert response.status_code == 200, response.text
    report = response.json()
    archiving = {c["name"]: c for c in report["checks"]}["archiving"]
    assert report["ok"] is False and archiving["status"] == "fail"
    assert "archive_mode = off" in archiving["detail"] and archiving["hint"]
