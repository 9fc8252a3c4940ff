"""Audit entries for successful, failed and refused operations, and the audit-log route."""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg
from apihelpers import API, Tokens, audit_rows, bearer
from fastapi.testclient import TestClient

from helpers import DbHandle, wait_for
from pgkeep.catalog.models import BackupStatus, BackupType, DatabaseBackup, utcnow
from pgkeep.pgtools.server import BACKUP_LOCK_KEY
from pgkeep.services import admin
from pgkeep.services.context import Context

UNKNOWN = str(uuid.uuid4())


def create(client: TestClient, token: str) -> str:
    response = client.post(f"{API}/backups", headers=bearer(token))
    assert response.status_code == 201, response.text
    return str(response.json()["backup"]["id"])


def test_a_backup_is_audited_with_who_and_from_where(client: TestClient, ctx: Context, tokens: Tokens) -> None:
    response = client.post(
        f"{API}/backups",
        json={"type": "FULL"},
        headers=bearer(tokens.operator) | {"User-Agent": "ops-console/1.0", "X-Request-ID": "r-1"},
    )
    backup = response.json()["backup"]
    [entry] = audit_rows(ctx, action="backup.create")
    assert (entry.outcome, entry.resource, entry.resource_id) == ("success", "database_backup", backup["id"])
    assert entry.admin_id == tokens.ids["operator"]
    assert entry.details == {"type": "FULL", "size": backup["size"], "filename": backup["filename"]}
    assert (entry.client_ip, entry.user_agent, entry.request_id) == ("testclient", "ops-console/1.0", "r-1")
    assert entry.error is None and entry.created_at is not None


def test_verify_delete_and_cleanup_are_audited(as_admin: TestClient, ctx: Context, tokens: Tokens) -> None:
    backup_id = create(as_admin, tokens.admin)
    as_admin.post(f"{API}/backups/{backup_id}/verify")
    as_admin.delete(f"{API}/backups/{backup_id}")
    as_admin.post(f"{API}/backups/cleanup")
    [verify] = audit_rows(ctx, action="backup.verify")
    assert verify.outcome == "success" and verify.details["valid"] is True
    [delete] = audit_rows(ctx, action="backup.delete")
    assert (delete.outcome, delete.resource_id) == ("success", backup_id)
    [cleanup] = audit_rows(ctx, action="backup.cleanup")
    assert cleanup.outcome == "success" and cleanup.details["deletedCount"] == 0
    as_admin.get(f"{API}/backups")  # reading is not audited
    assert {e.action for e in audit_rows(ctx)} == {
        "token.create",
        "token.revoke",
        "backup.create",
        "backup.verify",
        "backup.delete",
        "backup.cleanup",
    }


def test_a_restore_is_audited_before_it_starts_and_with_its_outcome(
    as_admin: TestClient, ctx: Context, tokens: Tokens, source_db: DbHandle
) -> None:
    backup_id = create(as_admin, tokens.admin)
    response = as_admin.post(f"{API}/backups/{backup_id}/restore", json={"dryRun": False, "confirmRestore": True})
    assert response.status_code == 200
    started, done = audit_rows(ctx, action="backup.restore")
    assert (started.outcome, done.outcome) == ("started", "success")
    assert started.created_at <= done.created_at
    for entry in (started, done):
        assert entry.resource_id == backup_id and entry.admin_id == tokens.ids["admin"]
        assert entry.details["dryRun"] is False and entry.details["jobId"] == response.json()["jobId"]
    assert "@" in started.details["target"]


def test_a_failed_restore_is_audited_as_failure(as_admin: TestClient, ctx: Context, tokens: Tokens, tmp_path) -> None:
    backup_id = create(as_admin, tokens.admin)
    with ctx.catalog.session() as session:
        filename = session.get(DatabaseBackup, backup_id).filename
    stored = tmp_path / "backups" / filename
    stored.write_bytes(stored.read_bytes()[:-100])  # truncated after the backup
    response = as_admin.post(f"{API}/backups/{backup_id}/restore", json={"dryRun": False, "confirmRestore": True})
    assert response.status_code == 422 and response.json()["code"] == "verification_failed"
    started, failed = audit_rows(ctx, action="backup.restore")
    assert (started.outcome, failed.outcome) == ("started", "failure")
    assert failed.error["status"] == 422 and failed.error["code"] == "verification_failed"
    job = as_admin.get(f"{API}/backups/{backup_id}/restores/{failed.details['jobId']}").json()
    assert job["status"] == "FAILED" and job["errorCode"] == "verification_failed"


def test_a_failed_async_restore_is_audited_by_its_job(
    as_admin: TestClient, ctx: Context, tokens: Tokens, tmp_path
) -> None:
    backup_id = create(as_admin, tokens.admin)
    with ctx.catalog.session() as session:
        filename = session.get(DatabaseBackup, backup_id).filename
    (tmp_path / "backups" / filename).write_bytes(b"garbage")
    response = as_admin.post(
        f"{API}/backups/{backup_id}/restore",
        json={"confirmRestore": True},
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202
    wait_for(lambda: len(audit_rows(ctx, action="backup.restore")) == 2, "the job's audit entry")
    started, failed = audit_rows(ctx, action="backup.restore")
    assert (started.outcome, failed.outcome) == ("started", "failure")
    assert failed.error["code"] == "verification_failed"
    assert failed.request_id == started.request_id


def test_an_async_backup_is_audited_started_then_success(as_admin: TestClient, ctx: Context) -> None:
    response = as_admin.post(f"{API}/backups", headers={"Prefer": "respond-async"})
    assert response.status_code == 202
    wait_for(lambda: len(audit_rows(ctx, action="backup.create")) == 2, "the backup's audit entries")
    started, done = audit_rows(ctx, action="backup.create")
    assert (started.outcome, done.outcome) == ("started", "success")
    assert started.resource_id == done.resource_id == response.json()["backup"]["id"]


def test_refused_attempts_are_audited(client: TestClient, ctx: Context, tokens: Tokens) -> None:
    client.post(f"{API}/backups")  # 401: no token
    client.delete(f"{API}/backups/{UNKNOWN}", headers=bearer(tokens.revoked))  # 401
    client.post(f"{API}/backups", headers=bearer(tokens.viewer))  # 403
    client.post(f"{API}/backups/{UNKNOWN}/restore", json={"confirmRestore": True}, headers=bearer(tokens.operator))
    client.post(f"{API}/backups/{UNKNOWN}/verify", headers=bearer(tokens.operator))  # 404
    client.get(f"{API}/backups", headers=bearer(tokens.viewer))  # allowed, and not audited
    entries = [e for e in audit_rows(ctx) if e.action.startswith("backup.")]
    summary = [(e.action, e.outcome, e.admin_id, e.error["status"]) for e in entries]
    assert summary == [
        ("backup.create", "denied", None, 401),
        ("backup.delete", "denied", None, 401),
        ("backup.create", "denied", tokens.ids["viewer"], 403),
        ("backup.restore", "denied", tokens.ids["operator"], 403),
        ("backup.verify", "failure", tokens.ids["operator"], 404),
    ]
    assert entries[1].resource_id == UNKNOWN
    assert entries[0].error["code"] == "missing_credentials"
    assert entries[1].error["code"] == "token_revoked"


def test_a_backup_refused_because_one_runs_is_audited_409(
    client: TestClient, ctx: Context, tokens: Tokens, target_db: DbHandle
) -> None:
    with psycopg.connect(target_db.conninfo, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (BACKUP_LOCK_KEY,))
        response = client.post(f"{API}/backups", headers=bearer(tokens.operator))
        assert response.status_code == 409 and response.json()["code"] == "backup_in_progress"
    [entry] = audit_rows(ctx, action="backup.create")
    assert entry.outcome == "failure"
    assert entry.error["status"] == 409 and entry.error["code"] == "backup_in_progress"
    assert entry.admin_id == tokens.ids["operator"]


def test_a_verify_refused_for_state_is_audited_409(as_admin: TestClient, ctx: Context) -> None:
    with ctx.catalog.session() as session:
        row = DatabaseBackup(
            filename="running.dump",
            type=BackupType.MANUAL,
            status=BackupStatus.IN_PROGRESS,
            started_at=utcnow(),
            size=0,
            bytes_written=0,
            keep=False,
        )
        session.add(row)
        session.commit()
    assert as_admin.post(f"{API}/backups/{row.id}/verify").status_code == 409
    [entry] = audit_rows(ctx, action="backup.verify")
    assert (entry.outcome, entry.resource_id, entry.error["code"]) == ("failure", row.id, "invalid_state")


def test_token_creation_and_revocation_are_audited(ctx: Context) -> None:
    new = admin.create_token(ctx, "deploy bot", admin.Role.OPERATOR)
    admin.revoke_token(ctx, new.id)
    entries = audit_rows(ctx, resource_id=new.id)
    assert [(e.action, e.outcome, e.resource) for e in entries] == [
        ("token.create", "success", "api_token"),
        ("token.revoke", "success", "api_token"),
    ]
    assert entries[0].details["name"] == "deploy bot" and entries[0].details["role"] == "operator"
    assert new.token not in str(entries[0].details)


def test_audit_log_route_filters_and_paginates(client: TestClient, ctx: Context, tokens: Tokens) -> None:
    headers = bearer(tokens.admin)
    backup_id = create(client, tokens.operator)
    client.post(f"{API}/backups", headers=bearer(tokens.viewer))  # denied
    client.post(f"{API}/backups/{backup_id}/verify", headers=bearer(tokens.operator))

    def logs(**params: object) -> dict:
        response = client.get(f"{API}/audit-logs", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    everything = logs(limit=100)
    total = everything["pagination"]["total"]
    assert total == len(everything["logs"]) == 5 + 3  # 4 tokens made, 1 revoked; then 3 calls
    times = [e["createdAt"] for e in everything["logs"]]
    assert times == sorted(times, reverse=True)  # newest first
    assert everything["logs"][0]["action"] == "backup.verify"
    assert set(everything["logs"][0]) >= {
        "id",
        "adminId",
        "action",
        "resource",
        "resourceId",
        "details",
        "outcome",
        "error",
        "clientIp",
        "userAgent",
        "requestId",
        "createdAt",
    }
    page2 = logs(page=2, limit=2)
    assert page2["pagination"] == {"page": 2, "limit": 2, "total": total, "pages": -(-total // 2)}
    assert [e["id"] for e in page2["logs"]] == [e["id"] for e in everything["logs"][2:4]]
    assert [e["outcome"] for e in logs(action="backup.create")["logs"]] == ["denied", "success"]
    assert {e["adminId"] for e in logs(adminId=tokens.ids["operator"])["logs"]} == {tokens.ids["operator"]}
    assert len(logs(adminId=tokens.ids["operator"])["logs"]) == 2
    assert [e["action"] for e in logs(resourceId=backup_id)["logs"]] == ["backup.verify", "backup.create"]
    assert [e["action"] for e in logs(outcome="denied")["logs"]] == ["backup.create"]
    now = utcnow()
    assert logs(since=(now + timedelta(minutes=1)).isoformat())["logs"] == []
    assert logs(until=(now - timedelta(days=1)).isoformat())["logs"] == []
    naive = (now - timedelta(minutes=5)).replace(tzinfo=None).isoformat()  # taken as UTC
    assert logs(since=naive, limit=100)["pagination"]["total"] == total


def test_nothing_in_the_api_changes_the_audit_log(as_admin: TestClient, ctx: Context) -> None:
    before = len(audit_rows(ctx))
    entry_id = audit_rows(ctx)[0].id
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert as_admin.request(method, f"{API}/audit-logs").status_code == 405
        assert as_admin.request(method, f"{API}/audit-logs/{entry_id}").status_code == 404
    assert len(audit_rows(ctx)) == before
