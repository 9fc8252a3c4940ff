"""Every admin route's success path, against the real app and a real PostgreSQL 15."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from apihelpers import API, Tokens, bearer, build_context
from fastapi.testclient import TestClient

from helpers import DbHandle, add_long_values, backup_rows, scalar, toast_methods, wait_for
from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, utcnow
from pgkeep.services import admin
from pgkeep.services.context import Context

SPEC_RESULT_KEYS = {"id", "filename", "size", "checksum", "duration", "storageUrl"}


def create(client: TestClient, **body: object) -> dict:
    response = client.post(f"{API}/backups", json=body or None)
    assert response.status_code == 201, response.text
    return response.json()


def finished(client: TestClient, location: str, what: str) -> dict:
    """Poll an async backup or restore at ``location`` until it is no longer IN_PROGRESS."""
    return wait_for(lambda: (r := client.get(location).json())["status"] != "IN_PROGRESS" and r, what)


def test_create_backup_returns_the_spec_shape(as_admin: TestClient, ctx: Context, tokens: Tokens) -> None:
    data = create(as_admin, type="PRE_MIGRATION")
    assert data["message"] == "Backup created successfully"
    assert set(data["backup"]) == SPEC_RESULT_KEYS
    assert isinstance(data["backup"]["size"], int) and data["backup"]["size"] > 0
    assert len(data["backup"]["checksum"]) == 64
    [row] = backup_rows(ctx)
    assert row.status is BackupStatus.COMPLETED
    assert row.type.value == "PRE_MIGRATION"
    assert row.created_by_id == tokens.ids["admin"]  # createdById is the token's admin id
    used = {t.id: t.last_used_at for t in admin.list_tokens(ctx)}
    assert used[tokens.ids["admin"]] is not None and used[tokens.ids["viewer"]] is None


def test_create_backup_without_a_body_is_manual(client: TestClient, tokens: Tokens) -> None:
    response = client.post(f"{API}/backups", headers=bearer(tokens.operator))
    assert response.status_code == 201, response.text
    got = client.get(f"{API}/backups/{response.json()['backup']['id']}", headers=bearer(tokens.viewer))
    assert got.json()["type"] == "MANUAL"


def test_list_backups_paginates_newest_first_and_filters(as_admin: TestClient) -> None:
    first = create(as_admin, type="FULL")["backup"]["id"]
    second = create(as_admin)["backup"]["id"]
    page = as_admin.get(f"{API}/backups", params={"page": 1, "limit": 1}).json()
    assert [b["id"] for b in page["backups"]] == [second]
    assert page["pagination"] == {"page": 1, "limit": 1, "total": 2, "pages": 2}
    full = as_admin.get(f"{API}/backups", params={"type": "FULL", "status": "COMPLETED"}).json()
    assert [b["id"] for b in full["backups"]] == [first]
    assert isinstance(full["backups"][0]["size"], int)
    empty = as_admin.get(f"{API}/backups", params={"status": "FAILED"}).json()
    assert empty == {"backups": [], "pagination": {"page": 1, "limit": 20, "total": 0, "pages": 0}}


def test_list_backups_filters_by_kind(as_admin: TestClient, ctx: Context) -> None:
    logical = create(as_admin)["backup"]["id"]
    physical = create(as_admin)["backup"]["id"]
    with ctx.catalog.session() as session:  # as a pg_basebackup would have recorded it
        repo.update_backup(session, physical, kind="physical")
    only = as_admin.get(f"{API}/backups", params={"kind": "physical"}).json()
    assert [b["id"] for b in only["backups"]] == [physical] and only["pagination"]["total"] == 1
    assert only["backups"][0]["kind"] == "physical"
    rest = as_admin.get(f"{API}/backups", params={"kind": "logical", "status": "COMPLETED"}).json()
    assert [b["id"] for b in rest["backups"]] == [logical]
    bad = as_admin.get(f"{API}/backups", params={"kind": "snapshot"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


def test_get_backup_shows_progress_while_it_runs(as_admin: TestClient, ctx: Context) -> None:
    backup_id = create(as_admin)["backup"]["id"]
    data = as_admin.get(f"{API}/backups/{backup_id}").json()
    assert data["id"] == backup_id and data["status"] == "COMPLETED"
    assert data["bytesWritten"] == data["size"]
    # A running backup's row: bytesWritten is what has been stored so far.
    with ctx.catalog.session() as session:
        repo.update_backup(session, backup_id, status=BackupStatus.IN_PROGRESS, bytes_written=12345)
    data = as_admin.get(f"{API}/backups/{backup_id}").json()
    assert (data["status"], data["bytesWritten"]) == ("IN_PROGRESS", 12345)


def test_verify_reports_valid_and_invalid(as_admin: TestClient, tmp_path) -> None:
    backup = create(as_admin)["backup"]
    response = as_admin.post(f"{API}/backups/{backup['id']}/verify")
    assert response.status_code == 200
    assert response.json()["valid"] is True
    assert response.json()["message"] == "Backup verified successfully"
    stored = tmp_path / "backups" / backup["filename"]
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    result = as_admin.post(f"{API}/backups/{backup['id']}/verify").json()
    assert result["valid"] is False
    assert "checksum mismatch" in result["message"]


def test_dry_run_restore_changes_nothing(as_admin: TestClient, source_db: DbHandle) -> None:
    backup_id = create(as_admin)["backup"]["id"]
    psycopg.connect(source_db.conninfo, autocommit=True).execute("DELETE FROM summaries").close()
    response = as_admin.post(f"{API}/backups/{backup_id}/restore", json={"confirmRestore": True})
    assert response.status_code == 200, response.text
    assert response.json()["message"].startswith("Dry run completed")
    assert scalar(source_db.conninfo, "SELECT count(*) FROM summaries") == 0


def test_restore_replaces_the_data(as_admin: TestClient, source_db: DbHandle) -> None:
    before = scalar(source_db.conninfo, "SELECT count(*) FROM summaries")
    backup_id = create(as_admin)["backup"]["id"]
    psycopg.connect(source_db.conninfo, autocommit=True).execute("DELETE FROM summaries").close()
    response = as_admin.post(f"{API}/backups/{backup_id}/restore", json={"dryRun": False, "confirmRestore": True})
    assert response.status_code == 200, response.text
    assert response.json()["message"].startswith(f"Database restored successfully into {source_db.name}")
    assert scalar(source_db.conninfo, "SELECT count(*) FROM summaries") == before
    job = as_admin.get(f"{API}/backups/{backup_id}/restores/{response.json()['jobId']}").json()
    assert job["status"] == "COMPLETED" and job["dryRun"] is False
    size = as_admin.get(f"{API}/backups/{backup_id}").json()["size"]
    assert job["bytesRead"] == job["totalBytes"] == size > 0


def test_restore_into_another_database(as_admin: TestClient, source_db: DbHandle, empty_db: DbHandle) -> None:
    backup_id = create(as_admin)["backup"]["id"]
    response = as_admin.post(
        f"{API}/backups/{backup_id}/restore",
        json={"dryRun": False, "confirmRestore": True, "targetDatabase": empty_db.name},
    )
    assert response.status_code == 200, response.text
    count = "SELECT count(*) FROM users"
    assert scalar(empty_db.conninfo, count) == scalar(source_db.conninfo, count)


def test_restore_takes_the_toast_compression_choice(
    as_admin: TestClient, source_db: DbHandle, empty_db: DbHandle
) -> None:
    add_long_values(source_db.conninfo)
    backup_id = create(as_admin)["backup"]["id"]
    url = f"{API}/backups/{backup_id}/restore"
    body = {"dryRun": False, "confirmRestore": True, "targetDatabase": empty_db.name}
    response = as_admin.post(url, json={**body, "toastCompression": "server"})
    assert response.status_code == 200, response.text
    assert toast_methods(empty_db.conninfo) == ("pglz", "pglz")
    assert response.json()["toastCompression"] is None  # nothing set: the server's default
    response = as_admin.post(url, json={**body, "toastCompression": "zstd"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "toastCompression" in response.text
    response = as_admin.post(url, json={**body, "safetyBackup": False})  # the default: auto
    assert response.status_code == 200, response.text
    assert toast_methods(empty_db.conninfo) == ("lz4", "pglz")
    assert response.json()["toastCompression"] == "lz4"
    dry = as_admin.post(url, json={**body, "dryRun": True, "toastCompression": "server"})
    assert dry.status_code == 200, dry.text
    assert dry.json()["toastCompression"] is None
    assert dry.json()["otherSessions"] == 0
    with psycopg.connect(empty_db.conninfo):  # someone connected to the target
        dry = as_admin.post(url, json={**body, "dryRun": True})
    assert dry.status_code == 200 and dry.json()["otherSessions"] == 1, dry.text


def test_delete_marks_deleted_and_removes_the_file(as_admin: TestClient, tmp_path) -> None:
    backup = create(as_admin)["backup"]
    response = as_admin.delete(f"{API}/backups/{backup['id']}")
    assert response.status_code == 200
    assert response.json() == {"message": "Backup deleted successfully"}
    assert as_admin.get(f"{API}/backups/{backup['id']}").json()["status"] == "DELETED"
    assert not (tmp_path / "backups" / backup["filename"]).exists()


def test_cleanup_deletes_expired_backups(as_admin: TestClient, ctx: Context) -> None:
    old = create(as_admin)["backup"]["id"]
    create(as_admin)  # the newest COMPLETED backup is never cleaned up
    with ctx.catalog.session() as session:
        repo.update_backup(session, old, expires_at=utcnow() - timedelta(days=1))
    dry = as_admin.post(f"{API}/backups/cleanup", params={"dryRun": True}).json()
    assert (dry["deletedCount"], dry["dryRun"]) == (1, True)
    response = as_admin.post(f"{API}/backups/cleanup")
    assert response.status_code == 200
    data = response.json()
    assert data["message"] == "Cleaned up 1 expired backups"
    assert data["deletedCount"] == 1 and data["deletedIds"] == [old]


def test_async_backup_answers_202_and_location_to_poll(as_admin: TestClient, ctx: Context) -> None:
    response = as_admin.post(f"{API}/backups", json={"type": "FULL"}, headers={"Prefer": "respond-async"})
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    backup_id = response.json()["backup"]["id"]
    assert location == f"{API}/backups/{backup_id}"
    assert response.headers["Preference-Applied"] == "respond-async"
    assert response.json()["backup"]["status"] in ("IN_PROGRESS", "COMPLETED")
    done = finished(as_admin, location, "the backup")
    assert done["status"] == "COMPLETED" and done["type"] == "FULL"
    assert done["bytesWritten"] == done["size"] > 0


def test_async_restore_answers_202_and_a_job_to_poll(as_admin: TestClient, source_db: DbHandle) -> None:
    backup_id = create(as_admin)["backup"]["id"]
    response = as_admin.post(
        f"{API}/backups/{backup_id}/restore",
        json={"dryRun": False, "confirmRestore": True},
        headers={"Prefer": "wait=10, respond-async"},
    )
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    job = response.json()["job"]
    assert location == f"{API}/backups/{backup_id}/restores/{job['id']}"
    assert job["backupId"] == backup_id and job["dryRun"] is False
    assert source_db.name in job["target"] and "@" in job["target"]
    assert job["safetyBackupId"] is None and job["otherSessions"] is None  # known once it finished
    done = finished(as_admin, location, "restore")
    assert done["status"] == "COMPLETED", done
    assert done["message"].startswith(f"Database restored successfully into {source_db.name}")
    assert done["finishedAt"] is not None
    safety = as_admin.get(f"{API}/backups/{done['safetyBackupId']}").json()
    assert safety["status"] == "COMPLETED" and safety["databaseName"] == source_db.name
    assert done["toastCompression"] == "lz4" and done["otherSessions"] == 0

    # The dashboard's dry run is a job too: its answer says who else is connected.
    with psycopg.connect(source_db.conninfo), psycopg.connect(source_db.conninfo):
        response = as_admin.post(
            f"{API}/backups/{backup_id}/restore", json={"confirmRestore": True}, headers={"Prefer": "respond-async"}
        )
        dry = finished(as_admin, response.headers["Location"], "dry run")
    assert dry["status"] == "COMPLETED" and dry["dryRun"] is True, dry
    assert dry["otherSessions"] == 2 and dry["safetyBackupId"] is None


def test_a_running_restore_shows_how_much_of_the_backup_it_has_read(as_admin: TestClient, source_db: DbHandle) -> None:
    backup = create(as_admin)["backup"]
    # A reader of the table holds the restore at its first DROP, after it began reading.
    with psycopg.connect(source_db.conninfo) as blocker:
        blocker.execute("SELECT count(*) FROM summaries").fetchone()
        response = as_admin.post(
            f"{API}/backups/{backup['id']}/restore",
            json={"dryRun": False, "confirmRestore": True},
            headers={"Prefer": "respond-async"},
        )
        assert response.status_code == 202, response.text
        location = response.headers["Location"]
        assert response.json()["job"]["totalBytes"] == backup["size"]
        running = wait_for(lambda: (r := as_admin.get(location).json())["bytesRead"] > 0 and r, "restore progress")
        assert running["status"] == "IN_PROGRESS"
        assert 0 < running["bytesRead"] <= running["totalBytes"] == backup["size"]
        [shown] = as_admin.get(f"{API}/summary").json()["runningRestores"]
        assert (shown["id"], shown["kind"], shown["totalBytes"]) == (running["id"], "logical", backup["size"])
        assert shown["bytesRead"] > 0
        blocker.rollback()
    done = finished(as_admin, location, "restore")
    assert done["status"] == "COMPLETED", done
    assert done["bytesRead"] == backup["size"]


def test_health_and_readiness_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"catalog": "ok", "target": "ok"}}


def test_readiness_fails_when_the_target_is_down(tmp_path, migrated_catalog) -> None:
    from pgkeep.api import create_app

    dead = "postgresql://nobody:secret-pw@127.0.0.1:1/nowhere"
    ctx = build_context(tmp_path / "dead", dead, migrated_catalog)
    try:
        with TestClient(create_app(ctx)) as client:
            response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"] == {"catalog": "ok", "target": "unreachable"}
        assert "secret-pw" not in response.text
    finally:
        ctx.close()


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {f"{API}/backups", f"{API}/audit-logs", f"{API}/backups/{{backup_id}}/restore"} <= set(schema["paths"])
    restore = schema["paths"][f"{API}/backups/{{backup_id}}/restore"]["post"]
    assert restore["x-audit-action"] == "backup.restore"
    assert "application/problem+json" in restore["responses"]["409"]["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
