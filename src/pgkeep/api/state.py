"""Per-router state (the service context, background jobs) and audit helpers for routes."""

from __future__ import annotations

import logging
import re
import threading
import uuid
from typing import Any

from fastapi import Request

from pgkeep.api.jobs import JobRunner
from pgkeep.api.problems import Problem
from pgkeep.catalog.admin_models import AuditOutcome
from pgkeep.services import audit
from pgkeep.services.audit import Actor
from pgkeep.services.context import Context

log = logging.getLogger("pgkeep.api")

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
BACKUP_RESOURCE = "database_backup"


class Claims:
    """Names held by running jobs of this process (a set behind a lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[str] = set()

    def take(self, name: str) -> bool:
        """Hold ``name``; False if a running job holds it already."""
        with self._lock:
            if name in self._held:
                return False
            self._held.add(name)
            return True

    def release(self, name: str) -> None:
        with self._lock:
            self._held.discard(name)


class AdminApi:
    """What the admin routes share: the service context and the jobs running in the background.

    ``restore_lock`` lets one restore that changes data run at a time in this
    process: two restores into one database would interleave their DROPs and loads.
    ``pitr_directories`` keeps two point-in-time restores out of one data
    directory: one that failed would empty it under the other.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.jobs = JobRunner()
        self.restore_lock = threading.Lock()
        self.pitr_directories = Claims()


def get_api(request: Request) -> AdminApi:
    """The AdminApi bound to this request by the admin router's route class."""
    api = getattr(request.state, "pgkeep_api", None)
    if not isinstance(api, AdminApi):
        raise RuntimeError("pgkeep routes must be served by the router from admin_router()")
    return api


def request_id_of(request: Request) -> str:
    """The client's ``X-Request-ID`` when it is sane, else a new one."""
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID_RE.fullmatch(given):
        return given
    return uuid.uuid4().hex


def actor_of(request: Request) -> Actor:
    principal = getattr(request.state, "pgkeep_principal", None)
    return Actor(
        admin_id=principal.id if principal is not None else None,
        client_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None),
    )


def audit_event(
    api: AdminApi,
    actor: Actor,
    action: str,
    outcome: AuditOutcome,
    *,
    resource_id: str | None = None,
    details: dict[str, Any] | None = None,
    problem: Problem | None = None,
    resource: str = BACKUP_RESOURCE,
) -> None:
    """Append an audit entry. A catalog failure here is logged, not raised over the real answer."""
    try:
        audit.record(
            api.ctx,
            actor,
            action=action,
            resource=resource,
            outcome=outcome,
            resource_id=resource_id,
            details=details,
            error=problem.error_json() if problem is not None else None,
        )
    except Exception:
        log.exception("could not write the audit entry for %s (%s)", action, outcome.value)


def audit_problem(
    api: AdminApi,
    actor: Actor,
    action: str,
    problem: Problem,
    *,
    resource_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Audit a refused or failed attempt: 401/403 are ``denied``, anything else ``failure``."""
    outcome = AuditOutcome.DENIED if problem.status in (401, 403) else AuditOutcome.FAILURE
    audit_event(api, actor, action, outcome, resource_id=resource_id, details=details, problem=problem)
