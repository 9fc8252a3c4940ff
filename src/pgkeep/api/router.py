"""The admin router: ``/backups``, ``/pitr-restores`` and ``/audit-logs``, mountable in any FastAPI app."""

from __future__ import annotations

from fastapi import APIRouter

from pgkeep.api.route import bound_route_class
from pgkeep.api.routes import audit, backups, check, me, pitr, summary
from pgkeep.api.state import AdminApi
from pgkeep.services.context import Context


def admin_router(ctx: Context | AdminApi) -> APIRouter:
    """The admin routes serving ``ctx``. Mount it under the host's admin prefix::

        app.include_router(admin_router(ctx), prefix="/api/admin")

    Authentication is :func:`pgkeep.api.auth.current_principal` (API tokens);
    a host app replaces it with ``app.dependency_overrides``. To wait for the
    router's background jobs at shutdown, pass an :class:`AdminApi` and call
    ``api.jobs.wait()``.
    """
    api = ctx if isinstance(ctx, AdminApi) else AdminApi(ctx)
    router = APIRouter(route_class=bound_route_class(api))
    backups.register(router)
    pitr.register(router)
    audit.register(router)
    me.register(router)
    summary.register(router)
    check.register(router)
    return router
