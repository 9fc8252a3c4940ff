"""``/me``: who the token belongs to, so a client (the dashboard) can offer what its role allows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from pgkeep.api.auth import Principal, require
from pgkeep.api.problems import problem_responses
from pgkeep.api.schemas import Me
from pgkeep.catalog.admin_models import Role
from pgkeep.services.serialize import iso

Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]


def me(principal: Viewer) -> Any:
    """The authenticated token's admin id, name, role and expiry."""
    return {
        "id": principal.id,
        "name": principal.name,
        "role": principal.role.value,
        "expiresAt": iso(principal.expires_at),
    }


def register(router: APIRouter) -> None:
    router.add_api_route(
        "/me",
        me,
        methods=["GET"],
        response_model=Me,
        operation_id="getMe",
        summary="The caller",
        name="pgkeep_me",
        tags=["auth"],
        responses=problem_responses(401, 403),
    )
