"""The admin routes' route class: binds the AdminApi, answers errors as problems, audits refusals.

Doing this in the route class rather than in app-level handlers makes the
router self-contained: mounted in a host app, its errors are still
problem+json and its refused attempts are still audited.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from pgkeep.api.problems import problem_for
from pgkeep.api.state import AdminApi, actor_of, audit_problem, request_id_of

# OpenAPI extension naming the audit action of an operation (also shown in /docs).
AUDIT_KEY = "x-audit-action"


def audited(action: str) -> dict[str, Any]:
    """``openapi_extra`` for a route whose every attempt is audited as ``action``."""
    return {AUDIT_KEY: action}


class AdminRoute(APIRoute):
    api: ClassVar[AdminApi]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        action = (self.openapi_extra or {}).get(AUDIT_KEY)
        api = self.api

        async def run(request: Request) -> Response:
            request.state.pgkeep_api = api
            request_id = request_id_of(request)
            request.state.request_id = request_id
            try:
                response = await handler(request)
            except Exception as exc:
                problem = problem_for(exc, request_id=request_id)
                if action is not None:
                    backup_id = request.path_params.get("backup_id") or getattr(exc, "backup_id", None)
                    await run_in_threadpool(
                        audit_problem,
                        api,
                        actor_of(request),
                        action,
                        problem,
                        resource_id=backup_id,
                        details=getattr(request.state, "audit_details", None),
                    )
                response = problem.response(request_id)
            response.headers.setdefault("X-Request-ID", request_id)
            return response

        return run


def bound_route_class(api: AdminApi) -> type[AdminRoute]:
    """A route class whose routes serve ``api`` (one per router)."""
    return type("BoundAdminRoute", (AdminRoute,), {"api": api})
