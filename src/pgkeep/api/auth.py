"""Who is calling: bearer API tokens by default, replaceable by a host app's own admin auth.

A host app that mounts the admin router with its own authentication overrides
:func:`current_principal`::

    app.dependency_overrides[current_principal] = my_admin_principal

where ``my_admin_principal`` is any FastAPI dependency returning a
:class:`Principal` (or raising its own 401).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pgkeep.api.problems import ApiError
from pgkeep.api.state import get_api
from pgkeep.catalog.admin_models import Role
from pgkeep.catalog.models import utcnow
from pgkeep.services import admin
from pgkeep.services.serialize import iso

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiToken",
    description="An API token made by `pgkeep admin create-token`.",
)


@dataclass(frozen=True)
class Principal:
    """An authenticated admin. ``id`` is recorded as ``createdById`` and in the audit log."""

    id: str
    role: Role
    name: str | None = None
    expires_at: datetime | None = None


def _unauthorized(code: str, detail: str) -> ApiError:
    error = "invalid_request" if code == "missing_credentials" else "invalid_token"
    return ApiError(
        401,
        code,
        detail,
        headers={"WWW-Authenticate": f'Bearer realm="pgkeep", error="{error}"'},
    )


def current_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 when missing, unknown, revoked or expired."""
    if credentials is None:
        raise _unauthorized("missing_credentials", "an API token is required (Authorization: Bearer ...)")
    info = admin.authenticate(get_api(request).ctx, credentials.credentials)
    if info is None:
        raise _unauthorized("invalid_token", "the API token is not valid")
    if info.revoked_at is not None:
        raise _unauthorized("token_revoked", "the API token was revoked")
    if info.expired(utcnow()):
        raise _unauthorized("token_expired", f"the API token expired at {iso(info.expires_at)}")
    return Principal(id=info.id, role=info.role, name=info.name, expires_at=info.expires_at)


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _declared_query(route: APIRoute) -> frozenset[str]:
    names = getattr(route, "_pgkeep_query_names", None)
    if names is None:
        names = frozenset(_query_names(route.dependant))
        route._pgkeep_query_names = names  # type: ignore[attr-defined]
    return names


def reject_unknown_query(request: Request) -> None:
    """422 for query parameters the route does not declare, or that are repeated.

    Danger: ignoring them turns ``POST /cleanup?dry_run=true`` (a typo for
    ``dryRun``) into a real cleanup. Checked after authentication, so an
    anonymous caller learns nothing from it.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    given = request.query_params
    errors = [
        {"loc": ("query", name), "msg": "unknown query parameter", "type": "extra_forbidden"}
        for name in sorted(set(given.keys()) - _declared_query(route))
    ]
    # Every parameter is a single value; silently keeping the last of several hides mistakes.
    errors += [
        {"loc": ("query", name), "msg": "given more than once", "type": "value_error"}
        for name in sorted(set(given.keys()) & _declared_query(route))
        if len(given.getlist(name)) > 1
    ]
    if errors:
        raise RequestValidationError(errors)


def require(role: Role) -> Callable[..., Principal]:
    """A dependency admitting callers whose role is ``role`` or higher (403 otherwise)."""

    def dependency(request: Request, principal: Principal = Depends(current_principal)) -> Principal:
        # Kept on the request so refusals after this point are audited under this admin.
        request.state.pgkeep_principal = principal
        granted = Role(principal.role)
        if not granted.allows(role):
            raise ApiError(403, "forbidden", f"this needs the {role.value} role; the token has {granted.value}")
        reject_unknown_query(request)
        return principal

    dependency.__name__ = f"require_{role.value}"
    return dependency
