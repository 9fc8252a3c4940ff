"""Helpers of the API tests (a module of its own: ``conftest`` names clash between directories)."""

from __future__ import annotations

import shutil
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from helpers import make_settings, wait_for
from pgkeep.catalog.admin_models import AuditLog, Role
from pgkeep.services import admin
from pgkeep.services.context import Context

API = "/api/admin"


@dataclass
class Tokens:
    viewer: str
    operator: str
    admin: str
    revoked: str
    ids: dict[str, str]

    def of(self, who: str) -> str:
        return str(getattr(self, who))


@dataclass
class Shared:
    """One app for a whole module, for tests that change nothing but the audit log."""

    ctx: Context
    app: FastAPI
    client: TestClient
    tokens: Tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def build_context(root: Path, database_url: str, migrated_catalog: Path, **overrides: Any) -> Context:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(migrated_catalog, root / "catalog.db")
    return Context.build(make_settings(root, database_url, **overrides))


def make_tokens(ctx: Context) -> Tokens:
    made = {role.value: admin.create_token(ctx, f"{role.value} token", role) for role in Role}
    revoked = admin.create_token(ctx, "revoked admin token", Role.ADMIN)
    admin.revoke_token(ctx, revoked.id)
    ids = {name: t.id for name, t in made.items()} | {"revoked": revoked.id}
    return Tokens(made["viewer"].token, made["operator"].token, made["admin"].token, revoked.token, ids)


def audit_rows(ctx: Context, **where: Any) -> list[AuditLog]:
    """Audit entries matching ``where`` (column=value), oldest first."""
    with ctx.catalog.session() as session:
        q = session.query(AuditLog).filter_by(**where).order_by(AuditLog.created_at)
        return list(q.all())


class LiveServer:
    """The app under a real uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, "uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.sock.close()
