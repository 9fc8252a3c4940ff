"""`pgkeep admin ...` (in-process) and `pgkeep serve` (a real process, stopped by SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from apihelpers import API, bearer
from click.testing import Result
from typer.testing import CliRunner

from helpers import DbHandle, make_settings, wait_for
from pgkeep.catalog.admin_models import Role
from pgkeep.cli.main import app
from pgkeep.errors import NotFoundError
from pgkeep.services import admin
from pgkeep.services.context import Context

PGKEEP = str(Path(sys.executable).parent / "pgkeep")


def env_for(tmp_path: Path, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGKEEP_", "DATABASE_URL"))}
    env |= {
        "PGKEEP_CATALOG_URL": f"sqlite:///{tmp_path}/catalog.db",
        "PGKEEP_STORAGE_URL": f"file://{tmp_path}/backups",
        "PGKEEP_STATE_DIR": str(tmp_path / "state"),
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def cli(tmp_path: Path, *args: str) -> Result:
    """Run a pgkeep command in-process (subprocesses cost a second of imports each)."""
    from pgkeep.cli import admin as _admin  # noqa: F401  (registers `pgkeep admin`)

    return CliRunner().invoke(app, list(args), env=env_for(tmp_path))


def test_create_list_and_revoke_tokens(tmp_path: Path) -> None:
    made = cli(tmp_path, "admin", "create-token", "--name", "ci bot", "--role", "operator", "--json")
    assert made.exit_code == 0, made.output
    token = json.loads(made.stdout)
    assert set(token) == {"id", "name", "role", "token", "expiresAt"}
    assert (token["name"], token["role"], token["expiresAt"]) == ("ci bot", "operator", None)
    assert token["token"].startswith("pgk_")

    listed = cli(tmp_path, "admin", "list-tokens", "--json")
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.stdout)
    assert entry["id"] == token["id"] and entry["revokedAt"] is None
    assert token["token"] not in listed.stdout  # the secret is never shown again
    assert token["token"].startswith(entry["prefix"])

    human = cli(tmp_path, "admin", "create-token", "--name", "me", "--role", "admin")
    assert human.exit_code == 0 and "pgk_" in human.stdout and "cannot be shown again" in human.stderr
    assert "me" in cli(tmp_path, "admin", "list-tokens").stdout

    revoked = cli(tmp_path, "admin", "revoke-token", token["id"])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    [first, _] = json.loads(cli(tmp_path, "admin", "list-tokens", "--json").stdout)
    assert first["revokedAt"] is not None
    unknown = cli(tmp_path, "admin", "revoke-token", "no-such-id")
    assert isinstance(unknown.exception, NotFoundError)  # run() maps it to exit code 3


def test_a_token_can_expire(tmp_path: Path) -> None:
    made = cli(tmp_path, "admin", "create-token", "--name", "contractor", "--role", "viewer", "--expires-days", "30")
    assert made.exit_code == 0, made.output
    [listed] = json.loads(cli(tmp_path, "admin", "list-tokens", "--json").stdout)
    expires = datetime.fromisoformat(listed["expiresAt"])
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)
    assert f"expires {listed['expiresAt']}" in made.stdout
    for bad in ("0", "-1", "soon"):
        refused = cli(tmp_path, "admin", "create-token", "--name", "x", "--role", "viewer", "--expires-days", bad)
        assert refused.exit_code == 2 and "--expires-days" in refused.output


def test_serve_answers_until_sigterm(tmp_path: Path, source_db: DbHandle) -> None:
    ctx = Context.build(make_settings(tmp_path, None))
    try:
        token = admin.create_token(ctx, "t", Role.VIEWER).token
    finally:
        ctx.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [PGKEEP, "serve", "--port", str(port), "--no-scheduler", "--log-level", "warning"],
        cwd=tmp_path,
        env=env_for(tmp_path, source_db.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert server.poll() is None, server.communicate()
            return False

    try:
        wait_for(up, "pgkeep serve to answer")
        assert httpx.get(f"{base}/readyz").json()["status"] == "ready"
        listed = httpx.get(f"{base}{API}/backups", headers=bearer(token))
        assert listed.status_code == 200 and listed.json()["backups"] == []
        assert httpx.get(f"{base}{API}/backups").status_code == 401
    finally:
        os.kill(server.pid, signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see it.
    assert server.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr
