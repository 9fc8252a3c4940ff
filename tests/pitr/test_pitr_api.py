"""Physical backups and point-in-time restores through the admin API, on a PostgreSQL 15 cluster that archives.

One history per module: a small table, two physical backups taken through
the API (one synchronous, one with ``Prefer: respond-async``), then writes
with a fingerprint recorded at a time and at an LSN. Restores go into
``PGKEEP_PITR_DATA_ROOT``; every server a test starts is stopped by that test.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from pitr_helpers import (
    APP_DB,
    PG15_BIN_DIR,
    Archiving,
    add_rows,
    give_to_server_user,
    server_now,
    switch_and_wait_archived,
)
from pitr_helpers import wait_for as wait_until

from helpers import get_row
from pgkeep.api import create_app
from pgkeep.api.state import AdminApi
from pgkeep.catalog.admin_models import AuditLog, Role
from pgkeep.fingerprint import Fingerprint, diff_fingerprints, fingerprint
from pgkeep.pgtools import postmaster
from pgkeep.services import admin
from pgkeep.services.context import Context

API = "/api/admin"
RESTORE_WAIT_S = 180.0


@dataclass
class Env:
    """The app with a PITR root, one without, and tokens of every role."""

    arch: Archiving
    ctx: Context
    client: TestClient
    api: AdminApi
    unconfigured: TestClient
    root: Path
    tokens: dict[str, str]

    def headers(self, role: str = "admin", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}", **extra}

    def post(self, path: str, body: dict[str, Any] | None = None, role: str = "admin", **headers: str) -> Response:
        return self.client.post(API + path, json=body, headers=self.headers(role, **headers))

    def get(self, path: str, role: str = "admin") -> Response:
        return self.client.get(API + path, headers=self.headers(role))


@dataclass(frozen=True)
class History:
    sync_id: str
    async_id: str
    at_time: datetime
    fp_time: Fingerprint
    at_lsn: str
    fp_lsn: Fingerprint


@pytest.fixture(scope="module")
def env(pg15_archiving: Archiving) -> Iterator[Env]:
    arch = pg15_archiving
    root = arch.root / "pitr-data"
    root.mkdir(mode=0o700)
    give_to_server_user(root)  # the restored servers run as the server's OS user and must reach their directory
    # The same catalog and storage as the cluster's context, plus a root for restored data directories.
    ctx = Context(
        settings=arch.ctx.settings.model_copy(update={"pitr_data_root": root}),
        catalog=arch.ctx.catalog,
        storage=arch.ctx.storage,
    )
    tokens = {role.value: admin.create_token(arch.ctx, f"pitr {role.value}", role).token for role in Role}
    app = create_app(ctx)
    with (
        TestClient(app, raise_server_exceptions=False) as client,
        TestClient(create_app(arch.ctx), raise_server_exceptions=False) as unconfigured,
    ):
        yield Env(arch, ctx, client, app.state.pgkeep_api, unconfigured, root, tokens)


def wait_done(env: Env, path: str, key: str | None = None) -> dict[str, Any]:
    """Poll a backup or job until it leaves IN_PROGRESS; return it."""

    def done() -> dict[str, Any] | None:
        response = env.client.get(path, headers=env.headers())
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] != "IN_PROGRESS" else None

    return wait_until(done, f"{path} to finish", timeout=RESTORE_WAIT_S)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def history(env: Env) -> History:
    arch = env.arch
    add_rows(arch, 500)
    sync = env.post("/backups", {"kind": "physical"})
    assert sync.status_code == 201, sync.text
    accepted = env.post("/backups", {"kind": "physical", "type": "FULL"}, Prefer="respond-async")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["backup"]["kind"] == "physical"
    done = wait_done(env, accepted.headers["Location"])
    assert done["status"] == "COMPLETED", done
    conninfo = arch.cluster.admin_conninfo(APP_DB)
    add_rows(arch, 300)
    at_time = server_now(arch.cluster)
    fp_time = fingerprint(conninfo)
    add_rows(arch, 300)
    at_lsn = arch.cluster.query("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    fp_lsn = fingerprint(conninfo)
    add_rows(arch, 300)
    switch_and_wait_archived(arch.cluster)
    return History(sync.json()["backup"]["id"], done["id"], at_time, fp_time, at_lsn, fp_lsn)


@pytest.fixture
def cleanup_restores(env: Env) -> Iterator[None]:
    """Stop every server a test started under the root (and only those) and remove their directories."""
    before = set(env.root.iterdir())
    yield
    user = postmaster.server_user(None)
    for data_dir in set(env.root.iterdir()) - before:
        if postmaster.postmaster_pid(data_dir) is not None:
            postmaster.stop(PG15_BIN_DIR, data_dir, user, mode="immediate")
        shutil.rmtree(data_dir, ignore_errors=True)


def restored_fingerprint(env: Env, port: int) -> Fingerprint:
    conninfo = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=port, user="postgres", password=env.arch.cluster.superuser_password, dbname=APP_DB
    )
    return fingerprint(conninfo)


def assert_same(expected: Fingerprint, actual: Fingerprint) -> None:
    assert diff_fingerprints(expected, actual, a_label="recorded", b_label="restored") == []


def assert_problem(response: Response, status: int, code: str, *needles: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    for needle in needles:
        assert needle in body["detail"], body
    return body


def audit(env: Env, **where: Any) -> list[AuditLog]:
    with env.ctx.catalog.session() as session:
        return list(session.query(AuditLog).filter_by(**where).order_by(AuditLog.created_at).all())


# --- physical backups ---------------------------------------------------------------------------


def test_physical_backups_from_the_api_are_listed_with_their_kind_and_wal_positions(env: Env, history: History) -> None:
    listed = env.get("/backups?limit=100", role="viewer")
    assert listed.status_code == 200, listed.text
    by_id = {b["id"]: b for b in listed.json()["backups"]}
    for backup_id in (history.sync_id, history.async_id):
        backup = by_id[backup_id]
        assert backup["kind"] == "physical" and backup["type"] == "FULL" and backup["status"] == "COMPLETED"
        assert backup["timeline"] == 1 and backup["startLsn"] and backup["endLsn"] and backup["walStart"]
        assert backup["backupEndAt"] >= backup["backupStartAt"]
    entries = [(e.resource_id, e.outcome, (e.details or {}).get("kind")) for e in audit(env, action="backup.create")]
    assert (history.sync_id, "success", "physical") in entries
    assert [o for r, o, _ in entries if r == history.async_id] == ["started", "success"]


def test_an_incremental_backup_before_postgresql_17_is_a_clear_4xx(env: Env, history: History) -> None:
    refused = env.post("/backups", {"kind": "physical", "type": "INCREMENTAL"}, role="operator")
    assert_problem(refused, 422, "physical_backup_refused", "PostgreSQL 17")
    refused_async = env.post("/backups", {"kind": "physical", "type": "INCREMENTAL"}, Prefer="respond-async")
    assert_problem(refused_async, 422, "physical_backup_refused", "PostgreSQL 17")
    logical = env.post("/backups", {"type": "INCREMENTAL"})
    assert_problem(logical, 422, "validation_error", "physical")


# --- point-in-time restores ---------------------------------------------------------------------


def test_a_dry_run_returns_the_plan_and_writes_nothing(env: Env, history: History) -> None:
    before = sorted(env.root.iterdir())
    response = env.post(
        "/pitr-restores", {"toTime": history.at_time.isoformat(), "directory": "dry", "dryRun": True, "start": True}
    )
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["dryRun"] is True and plan["directory"] == "dry" and plan["dataDir"] == str(env.root / "dry")
    assert plan["backupId"] == history.async_id  # the newest backup that ended before the target
    assert [link["id"] for link in plan["chain"]] == [history.async_id]
    assert plan["target"]["kind"] == "time"
    assert datetime.fromisoformat(plan["target"]["value"]) == history.at_time
    assert any("no hole" in check for check in plan["checks"]), plan["checks"]
    assert any("server binaries" in check for check in plan["checks"]), plan["checks"]
    assert sorted(env.root.iterdir()) == before
    (entry,) = [e for e in audit(env, action="backup.restore") if (e.details or {}).get("directory") == "dry"]
    assert entry.outcome == "success" and entry.details and entry.details["dryRun"] is True


def test_restore_to_a_time_starts_a_server_with_that_moments_data(
    env: Env, history: History, cleanup_restores: None
) -> None:
    """Synchronous, directory chosen by pgkeep, start: true."""
    response = env.post("/pitr-restores", {"toTime": history.at_time.isoformat(), "start": True})
    assert response.status_code == 201, response.text
    job = response.json()["job"]
    assert response.headers["Location"] == f"{API}/pitr-restores/{job['id']}"
    assert job["status"] == "COMPLETED" and job["kind"] == "physical" and job["backupId"] == history.async_id
    assert job["directory"].startswith("pitr-") and job["dataDir"] == str(env.root / job["directory"])
    result = job["result"]
    assert result["started"] is True and result["targetReached"] is True and result["reachedLsn"]
    assert_same(history.fp_time, restored_fingerprint(env, result["port"]))
    assert env.get(f"/pitr-restores/{job['id']}").json() == job
    # Its progress (the dashboard's "X of Y read"): the whole stored backup was read.
    assert job["totalBytes"] == int(get_row(env.ctx, history.async_id).size) > 0
    assert job["bytesRead"] == job["totalBytes"]


def test_an_async_restore_to_an_lsn_leaves_a_server_that_outlives_the_job_thread(
    env: Env, history: History, cleanup_restores: None
) -> None:
    response = env.post(
        "/pitr-restores", {"toLsn": history.at_lsn, "directory": "by-lsn", "start": True}, Prefer="respond-async"
    )
    assert response.status_code == 202, response.text
    assert response.headers["Preference-Applied"] == "respond-async"
    job = wait_done(env, response.headers["Location"])
    assert job["status"] == "COMPLETED", job
    assert job["target"] == {"kind": "lsn", "value": history.at_lsn.upper()}
    # The job's thread has ended; the postmaster pg_ctl started from it must still run.
    assert env.api.jobs.wait(timeout=30)
    data_dir = env.root / "by-lsn"
    pid = postmaster.postmaster_pid(data_dir)
    assert pid is not None and postmaster.running(pid)
    assert_same(history.fp_lsn, restored_fingerprint(env, job["result"]["port"]))
    outcomes = [e.outcome for e in audit(env, action="backup.restore") if (e.details or {}).get("jobId") == job["id"]]
    assert outcomes == ["started", "success"]


def test_restore_without_start_prepares_the_directory_for_the_operator(
    env: Env, history: History, cleanup_restores: None
) -> None:
    """An existing empty directory is fine; recovery waits for whoever starts the server."""
    (env.root / "latest").mkdir()
    response = env.post("/pitr-restores", {"latest": True, "directory": "latest", "backupId": history.sync_id})
    assert response.status_code == 201, response.text
    job = response.json()["job"]
    assert job["backupId"] == history.sync_id and job["result"]["started"] is False
    data_dir = env.root / "latest"
    assert (data_dir / "PG_VERSION").exists() and (data_dir / "recovery.signal").exists()
    assert postmaster.postmaster_pid(data_dir) is None


def test_refusals_are_problems_and_write_nothing(env: Env, history: History) -> None:
    occupied = env.root / "occupied"
    occupied.mkdir(exist_ok=True)
    (occupied / "PG_VERSION").write_text("15\n")
    before = sorted(env.root.iterdir())
    at = history.at_time.isoformat()

    assert_problem(
        env.post("/pitr-restores", {"latest": True, "directory": "occupied"}),
        409,
        "data_directory_exists",
        "not an empty directory",
    )
    for bad in ("..", "a/b", "../escape", ".hidden", "/abs", ""):
        assert_problem(env.post("/pitr-restores", {"latest": True, "directory": bad}), 422, "validation_error")
    not_configured = env.unconfigured.post(f"{API}/pitr-restores", json={"latest": True}, headers=env.headers())
    assert_problem(not_configured, 409, "pitr_not_configured")
    assert "PGKEEP_PITR_DATA_ROOT" in not_configured.json()["hint"]
    assert_problem(
        env.post("/pitr-restores", {"toTime": "2001-01-01T00:00:00Z"}),
        422,
        "invalid_request",
        "older than the oldest physical backup",
    )
    assert_problem(
        env.post("/pitr-restores", {"toLsn": "FF/0"}), 422, "invalid_request", "later than the end of the archived WAL"
    )
    assert_problem(
        env.post("/pitr-restores", {"toTime": at, "dryRun": True, "backupId": history.sync_id[:8]}), 404, "not_found"
    )
    assert_problem(env.post("/pitr-restores", {}), 422, "validation_error", "exactly one recovery target")
    assert_problem(env.post("/pitr-restores", {"toTime": at, "latest": True}), 422, "validation_error")
    assert_problem(env.post("/pitr-restores", {"toTime": "tuesday"}), 422, "validation_error", "ISO 8601")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_problem(env.post("/pitr-restores", {"latest": True, "start": True, "port": port}), 409, "port_in_use")
    assert sorted(env.root.iterdir()) == before
    assert (occupied / "PG_VERSION").read_text() == "15\n"
    failures = [
        e
        for e in audit(env, action="backup.restore", outcome="failure")
        if (e.error or {}).get("code") == "pitr_not_configured"
    ]
    assert failures


def test_only_admins_may_restore_or_read_jobs(env: Env, history: History) -> None:
    for role in ("viewer", "operator"):
        assert_problem(env.post("/pitr-restores", {"latest": True, "dryRun": True}, role=role), 403, "forbidden")
        assert_problem(env.get(f"/pitr-restores/{history.sync_id}", role=role), 403, "forbidden")
    assert_problem(env.get(f"/pitr-restores/{history.sync_id}"), 404, "not_found")
    assert_problem(env.get("/pitr-restores/not-a-uuid"), 404, "not_found")
    assert [e.outcome for e in audit(env, action="backup.restore", outcome="denied")]
