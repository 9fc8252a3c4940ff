"""Every error is problem+json with a stable code; nothing internal leaks."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from apihelpers import API, Shared, Tokens, bearer, make_tokens
from fastapi import FastAPI
from fastapi.testclient import TestClient

from helpers import make_settings, socket_url
from pgkeep.api import create_app, current_principal
from pgkeep.api.problems import problem_for, public_detail
from pgkeep.catalog.admin_models import ApiToken, Role
from pgkeep.catalog.db import create_catalog_engine, upgrade
from pgkeep.catalog.models import BackupStatus, BackupType, DatabaseBackup, utcnow
from pgkeep.errors import BackupFailedError, ConfigError, PgkeepError
from pgkeep.services import admin
from pgkeep.services.context import Context
from pgkeep.services.serialize import backup_json, iso

UNKNOWN = str(uuid.uuid4())
ID_ROUTES = [
    ("GET", "/backups/{id}", None),
    ("DELETE", "/backups/{id}", None),
    ("POST", "/backups/{id}/verify", None),
    ("POST", "/backups/{id}/restore", {"confirmRestore": True}),
    ("GET", f"/backups/{{id}}/restores/{UNKNOWN}", None),
]


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert (body["status"], body["code"], body["type"]) == (status, code, f"urn:pgkeep:problem:{code}")
    assert body["requestId"] == response.headers["X-Request-ID"] if "requestId" in body else True
    for leak in ("Traceback", "sqlalchemy", "/work/", "site-packages"):
        assert leak not in response.text
    return body


def insert_row(ctx: Context, status: BackupStatus) -> str:
    with ctx.catalog.session() as session:
        row = DatabaseBackup(
            filename=f"x-{uuid.uuid4()}.dump",
            type=BackupType.MANUAL,
            status=status,
            started_at=utcnow(),
            size=0,
            bytes_written=0,
            keep=False,
        )
        session.add(row)
        session.commit()
        return row.id


def test_unknown_route_is_a_404_problem(client: TestClient) -> None:
    assert_problem(client.get("/nope"), 404, "not_found")
    assert_problem(client.get(f"{API}/backups/x/y/z"), 404, "not_found")


def test_wrong_method_is_a_405_problem(as_admin: TestClient) -> None:
    body = assert_problem(as_admin.put(f"{API}/backups"), 405, "method_not_allowed")
    assert body["title"] == "Method Not Allowed"
    response = as_admin.delete(f"{API}/audit-logs")
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    # Like every other answer, it carries a request id (the client's, when sane) to quote.
    response = as_admin.put(f"{API}/backups", headers={"X-Request-ID": "req-405"})
    assert assert_problem(response, 405, "method_not_allowed")["requestId"] == "req-405"
    assert response.headers["X-Request-ID"] == "req-405"
    unknown = as_admin.get("/nope")
    assert unknown.headers["X-Request-ID"] == assert_problem(unknown, 404, "not_found")["requestId"]


@pytest.mark.parametrize("bad_id", [UNKNOWN, "not-a-uuid", "1' OR '1'='1", "%00", "é" * 300])
@pytest.mark.parametrize(("method", "path", "body"), ID_ROUTES)
def test_unknown_or_malformed_id_is_404(shared: Shared, method, path, body, bad_id) -> None:
    response = shared.client.request(
        method, API + path.format(id=bad_id), json=body, headers=bearer(shared.tokens.admin)
    )
    assert_problem(response, 404, "not_found")


def test_validation_errors_name_the_field(as_admin: TestClient) -> None:
    body = assert_problem(as_admin.post(f"{API}/backups", json={"type": "INCREMENTAL"}), 422, "validation_error")
    assert body["errors"][0]["field"] == "type" and body["errors"][0]["location"] == "body"
    assert "type" in body["detail"]
    body = assert_problem(as_admin.get(f"{API}/backups", params={"limit": 101}), 422, "validation_error")
    assert body["errors"] == [{"location": "query", "field": "limit", "message": body["errors"][0]["message"]}]
    body = assert_problem(as_admin.get(f"{API}/backups", params={"page": 0}), 422, "validation_error")
    assert body["errors"][0]["field"] == "page"
    body = assert_problem(as_admin.post(f"{API}/backups", json={"typo": 1}), 422, "validation_error")
    assert body["errors"][0]["field"] == "typo"
    body = assert_problem(
        as_admin.post(f"{API}/backups", content=b"{not json", headers={"Content-Type": "application/json"}),
        422,
        "validation_error",
    )
    body = assert_problem(as_admin.get(f"{API}/audit-logs", params={"since": "yesterday"}), 422, "validation_error")
    assert body["errors"][0]["field"] == "since"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"dryRun": False},
        {"confirmRestore": False},
        {"confirmRestore": "true"},
        {"confirmRestore": 1},
        {"confirmRestore": True, "dryRun": "false"},
        {"confirmRestore": True, "dry_run": False},
        {"confirmRestore": True, "targetDatabase": ""},
        {"confirmRestore": True, "targetDatabase": "a\x00b"},
    ],
)
def test_restore_needs_literally_true_confirmation(shared: Shared, payload) -> None:
    response = shared.client.post(f"{API}/backups/{UNKNOWN}/restore", json=payload, headers=bearer(shared.tokens.admin))
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"]


def test_restore_into_a_missing_database_is_422(as_admin: TestClient) -> None:
    backup_id = as_admin.post(f"{API}/backups").json()["backup"]["id"]
    for name in ("no_such_db", "template0"):
        response = as_admin.post(
            f"{API}/backups/{backup_id}/restore", json={"confirmRestore": True, "targetDatabase": name}
        )
        assert_problem(response, 422, "invalid_target_database")


@pytest.mark.parametrize("status", [BackupStatus.IN_PROGRESS, BackupStatus.FAILED, BackupStatus.DELETED])
def test_verify_or_restore_a_backup_that_is_not_completed_is_409(
    as_admin: TestClient, ctx: Context, status: BackupStatus
) -> None:
    backup_id = insert_row(ctx, status)
    body = assert_problem(as_admin.post(f"{API}/backups/{backup_id}/verify"), 409, "invalid_state")
    assert status.value in body["detail"]
    response = as_admin.post(f"{API}/backups/{backup_id}/restore", json={"confirmRestore": True})
    assert_problem(response, 409, "invalid_state")


def test_delete_a_running_backup_is_409(as_admin: TestClient, ctx: Context) -> None:
    backup_id = insert_row(ctx, BackupStatus.IN_PROGRESS)
    assert_problem(as_admin.delete(f"{API}/backups/{backup_id}"), 409, "invalid_state")


def test_second_restore_while_one_runs_is_409(as_admin: TestClient, app: FastAPI) -> None:
    backup_id = as_admin.post(f"{API}/backups").json()["backup"]["id"]
    lock = app.state.pgkeep_api.restore_lock
    with lock:  # as if a restore were running
        response = as_admin.post(f"{API}/backups/{backup_id}/restore", json={"dryRun": False, "confirmRestore": True})
        assert_problem(response, 409, "restore_in_progress")
        # A dry run changes nothing, so it may run beside a restore.
        dry = as_admin.post(f"{API}/backups/{backup_id}/restore", json={"confirmRestore": True})
        assert dry.status_code == 200
    assert not lock.locked()


def test_missing_bad_and_revoked_tokens_are_401(client: TestClient, tokens: Tokens) -> None:
    response = client.get(f"{API}/backups")
    body = assert_problem(response, 401, "missing_credentials")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(client.get(f"{API}/backups", headers=bearer("pgk_000000000000_" + "x" * 43)), 401, "invalid_token")
    assert_problem(client.get(f"{API}/backups", headers=bearer(tokens.admin + "x")), 401, "invalid_token")
    assert_problem(client.get(f"{API}/backups", headers={"Authorization": "Basic YTpi"}), 401, "missing_credentials")
    assert_problem(client.get(f"{API}/backups", headers=bearer(tokens.revoked)), 401, "token_revoked")
    assert "detail" in body


def test_an_expired_token_is_401_and_says_since_when(client: TestClient, ctx: Context) -> None:
    made = admin.create_token(ctx, "contractor", Role.VIEWER, expires_in=timedelta(days=7))
    me = client.get(f"{API}/me", headers=bearer(made.token))
    assert me.status_code == 200 and me.json()["expiresAt"] == iso(made.expires_at)
    past = utcnow() - timedelta(seconds=1)
    with ctx.catalog.session() as session:  # a week later
        session.get(ApiToken, made.id).expires_at = past  # type: ignore[union-attr]
        session.commit()
    body = assert_problem(client.get(f"{API}/me", headers=bearer(made.token)), 401, "token_expired")
    assert body["detail"] == f"the API token expired at {iso(past)}"
    with pytest.raises(PgkeepError, match="lifetime must be positive"):
        admin.create_token(ctx, "never valid", Role.VIEWER, expires_in=timedelta(0))


def test_role_too_low_is_403(client: TestClient, tokens: Tokens) -> None:
    body = assert_problem(client.post(f"{API}/backups", headers=bearer(tokens.viewer)), 403, "forbidden")
    assert "operator" in body["detail"]
    assert_problem(client.get(f"{API}/audit-logs", headers=bearer(tokens.operator)), 403, "forbidden")


def test_request_id_is_echoed_or_made(as_admin: TestClient) -> None:
    response = as_admin.get(f"{API}/backups/{UNKNOWN}", headers={"X-Request-ID": "req-42"})
    assert response.headers["X-Request-ID"] == "req-42" and response.json()["requestId"] == "req-42"
    response = as_admin.get(f"{API}/backups/{UNKNOWN}", headers={"X-Request-ID": "bad id\twith tab"})
    assert len(response.headers["X-Request-ID"]) == 32


def test_an_unexpected_error_is_a_bare_500(ctx: Context) -> None:
    app = create_app(ctx)

    def broken() -> None:
        raise RuntimeError("password=hunter2 at /etc/secret/path: SELECT * FROM users")

    app.dependency_overrides[current_principal] = broken
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get(f"{API}/backups")
    body = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text and "SELECT" not in response.text and "/etc" not in response.text
    assert body["detail"] == "internal error; the server logged it"


def test_problem_details_drop_quoted_sql_and_config_internals() -> None:
    failed = BackupFailedError(
        "backup failed: pg_dump: error: query failed: ERROR:  permission denied for table t\n"
        "pg_dump: detail: Command was: LOCK TABLE public.t IN ACCESS SHARE MODE"
    )
    problem = problem_for(failed)
    assert problem.status == 500 and problem.code == "backup_failed"
    assert "LOCK TABLE" not in problem.detail and "permission denied" in problem.detail
    assert public_detail("ERROR: x\nLINE 1: SELECT secret\n") == "ERROR: x"
    config = problem_for(ConfigError("PGKEEP_PG_BIN_DIR=/opt/secret/bin has no pg_dump"))
    assert "/opt/secret" not in config.detail


def test_backup_rows_never_carry_the_database_password(as_admin: TestClient, ctx: Context, pg15) -> None:
    backup_id = as_admin.post(f"{API}/backups").json()["backup"]["id"]
    text = as_admin.get(f"{API}/backups/{backup_id}").text + as_admin.get(f"{API}/backups").text
    assert pg15.superuser_password not in text
    with ctx.catalog.session() as session:
        assert pg15.superuser_password not in str(backup_json(session.get(DatabaseBackup, backup_id)))


def test_query_strings_are_strict(shared: Shared) -> None:
    headers = bearer(shared.tokens.admin)
    # A typo must not turn a dry run into a real cleanup.
    response = shared.client.post(f"{API}/backups/cleanup?dry_run=true", headers=headers)
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["field"] == "dry_run"
    response = shared.client.get(f"{API}/backups?limit=5&limit=6", headers=headers)
    assert assert_problem(response, 422, "validation_error")["errors"][0]["field"] == "limit"
    response = shared.client.get(f"{API}/audit-logs", params={"since": "-90196139"}, headers=headers)
    assert assert_problem(response, 422, "validation_error")["errors"][0]["field"] == "since"
    response = shared.client.get(f"{API}/audit-logs", params={"until": "9999-12-31T23:59:59-14:00"}, headers=headers)
    assert_problem(response, 422, "validation_error")
    # A body that is not UTF-8 JSON is an invalid body like any other.
    response = shared.client.post(
        f"{API}/backups", content=b"\xff\xfe\x00", headers=headers | {"Content-Type": "application/json"}
    )
    assert assert_problem(response, 422, "validation_error")["errors"][0]["location"] == "body"


def test_restore_into_the_catalog_database_is_refused(tmp_path, source_db, pg15) -> None:
    pg15.create_database("pgkeep_catalog_guard")
    try:
        # Over the unix socket; the restore target is named over TCP: the same database all the same.
        catalog_url = socket_url(pg15, "pgkeep_catalog_guard")
        engine = create_catalog_engine(catalog_url)
        upgrade(engine)
        engine.dispose()
        ctx = Context.build(make_settings(tmp_path, source_db.url, catalog_url=catalog_url))
        try:
            tokens = make_tokens(ctx)
            with TestClient(create_app(ctx)) as client:
                client.headers.update(bearer(tokens.admin))
                backup_id = client.post(f"{API}/backups").json()["backup"]["id"]
                for dry_run in (True, False):
                    response = client.post(
                        f"{API}/backups/{backup_id}/restore",
                        json={"dryRun": dry_run, "confirmRestore": True, "targetDatabase": "pgkeep_catalog_guard"},
                    )
                    body = assert_problem(response, 409, "catalog_in_database")
                    assert body["detail"].startswith("pgkeep's catalog (PGKEEP_CATALOG_URL) is in the database ")
                    assert "pgkeep catalog rebuild" in body["hint"]
                assert client.get(f"{API}/backups/{backup_id}").json()["status"] == "COMPLETED"
        finally:
            ctx.close()
    finally:
        pg15.drop_database("pgkeep_catalog_guard")
