"""The standalone API application: ``create_app(settings or context)``.

Nothing is built at import time: the factory builds (or is given) the
service context, and the app owns it only when it built it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

import pgkeep
from pgkeep.api.problems import install_problem_handlers
from pgkeep.api.router import admin_router
from pgkeep.api.schemas import Health
from pgkeep.api.state import AdminApi
from pgkeep.catalog.db import SCHEMA_HEAD, current_revision
from pgkeep.config import Settings
from pgkeep.errors import PgkeepError
from pgkeep.observability.metrics import build_registry
from pgkeep.scheduler.worker import Worker
from pgkeep.services.context import Context
from pgkeep.web import mount_web

log = logging.getLogger("pgkeep.api")

ADMIN_PREFIX = "/api/admin"
READY_CONNECT_TIMEOUT_S = 3
SHUTDOWN_JOB_WAIT_S: float | None = None  # a stopping server lets its backups and restores finish


def start_scheduler(api: AdminApi) -> Worker:
    """Start the backup worker (scheduled backups, cleanup, drills) in this process.

    Called once at startup unless ``pgkeep serve --no-scheduler``, as the
    spec starts its worker with the app (Step 6). Several replicas may all
    run it: each tick still runs once (see pgkeep.scheduler.runner).
    """
    worker = Worker(api.ctx)
    worker.start()
    return worker


def create_app(source: Settings | Context, *, scheduler: bool = False) -> FastAPI:
    """Build the admin API app. ``scheduler``: start the backup worker at startup."""
    owns_context = isinstance(source, Settings)
    ctx = Context.build(source) if isinstance(source, Settings) else source
    api = AdminApi(ctx)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = await run_in_threadpool(start_scheduler, api) if scheduler else None
        try:
            yield
        finally:
            if worker is not None:
                await run_in_threadpool(worker.stop)
            if api.jobs.running:
                log.info("waiting for %d background jobs to finish", api.jobs.running)
            await run_in_threadpool(api.jobs.wait, SHUTDOWN_JOB_WAIT_S)
            if owns_context:
                ctx.close()

    app = FastAPI(
        title="pgkeep admin API",
        version=pgkeep.__version__,
        description="Backups, restores and the audit log of pgkeep. See docs/api.md.",
        lifespan=lifespan,
        # /docs is served by pgkeep.web from its own copy of Swagger UI (FastAPI's loads it,
        # and ReDoc, from a CDN: third-party code on a page where an admin pastes a token).
        docs_url=None,
        redoc_url=None,
    )
    app.state.pgkeep_api = api
    install_problem_handlers(app)
    app.include_router(admin_router(api), prefix=ADMIN_PREFIX)
    mount_web(app, api_prefix=ADMIN_PREFIX)  # the dashboard at /, a client of the routes above

    registry = build_registry(ctx)

    @app.get(
        "/metrics",
        tags=["health"],
        operation_id="metrics",
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
    )
    def metrics() -> PlainTextResponse:
        """Prometheus text format, read from the catalog (no auth, like /healthz: counts and times only)."""
        return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", response_model=Health, tags=["health"], operation_id="healthz", summary="Liveness")
    async def healthz() -> dict[str, Any]:
        """The process is alive (no checks, no auth)."""
        return {"status": "ok", "checks": {}}

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        operation_id="readyz",
        summary="Readiness",
        responses={503: {"description": "Not ready", "model": Health}},
    )
    def readyz() -> Any:
        """The catalog (at the code's schema) and the target database are reachable (no auth)."""
        checks = {"catalog": _check_catalog(ctx), "target": _check_target(ctx)}
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return body if ready else JSONResponse(body, status_code=503)

    return app


def _check_catalog(ctx: Context) -> str:
    try:
        with ctx.catalog.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        if current_revision(ctx.catalog.engine) != SCHEMA_HEAD:
            return "schema behind"
    except Exception as exc:  # any failure means "not ready"; the log says why
        log.warning("readiness: catalog unreachable: %s", type(exc).__name__)
        return "unreachable"
    return "ok"


def _check_target(ctx: Context) -> str:
    try:
        target = ctx.target
        with psycopg.connect(target.connect_conninfo(), connect_timeout=READY_CONNECT_TIMEOUT_S):
            pass
    except PgkeepError:
        return "not configured"
    except psycopg.Error as exc:
        log.warning("readiness: target unreachable: %s", ctx.target.error_text(exc))
        return "unreachable"
    return "ok"
