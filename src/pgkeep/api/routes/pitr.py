"""``/pitr-restores``: point-in-time restores into a new data directory under PGKEEP_PITR_DATA_ROOT.

A separate resource rather than ``/backups/{id}/restore`` with a flag: the
base backup is usually chosen by pgkeep from the target time, the result is
a new cluster rather than changed data, and the job is polled on its own.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from pgkeep.api import operations as ops
from pgkeep.api.auth import Principal, require
from pgkeep.api.problems import problem_responses
from pgkeep.api.route import audited
from pgkeep.api.routes.backups import AUTH_ERRORS, Prefer, accepted, wants_async
from pgkeep.api.schemas import PitrAccepted, PitrJob, PitrPlan, PitrRestoreRequest
from pgkeep.api.state import AdminApi, actor_of, audit_event, get_api
from pgkeep.catalog.admin_models import AuditOutcome, Role
from pgkeep.services import pitr_jobs
from pgkeep.services.pitr import RecoveryTarget

Api = Annotated[AdminApi, Depends(get_api)]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
GET_PITR_JOB = "pgkeep_get_pitr_restore"


def _service_request(body: PitrRestoreRequest, directory: str | None) -> pitr_jobs.PitrRequest:
    target = RecoveryTarget.parse(
        to_time=body.toTime,
        to_lsn=body.toLsn,
        to_xid=str(body.toXid) if body.toXid is not None else None,
        to_name=body.toName,
        latest=body.latest,
    )
    return pitr_jobs.PitrRequest(target, directory, body.backupId, body.start, body.port)


def create(body: PitrRestoreRequest, request: Request, api: Api, principal: Admin, prefer: Prefer = None) -> Any:
    """Restore a physical backup plus archived WAL into a new data directory, to a moment.

    ``dryRun``: 200 with the plan (chain, checks), nothing written. Otherwise
    201 once done (with ``start``: once recovery ended), or with
    ``Prefer: respond-async`` 202 at once; poll the job in Location.
    """
    request.state.audit_details = body.model_dump(exclude_none=True) | {"kind": ops.PHYSICAL}
    actor = actor_of(request)
    if body.dryRun:
        planned = pitr_jobs.plan(api.ctx, _service_request(body, body.directory))
        audit_event(
            api,
            actor,
            ops.RESTORE,
            AuditOutcome.SUCCESS,
            resource_id=planned.backup_id,
            details=planned.details() | {"dryRun": True},
        )
        return JSONResponse(planned.as_json())
    directory = body.directory or pitr_jobs.new_directory_name()
    if not api.pitr_directories.take(directory):
        raise pitr_jobs.DataDirectoryTakenError(
            f"another restore is writing directory {directory}",
            operation="restore",
            hint="wait for it, or name another directory",
        )
    handed_over = False
    try:
        prepared = pitr_jobs.prepare(api.ctx, _service_request(body, directory), requested_by=principal.id)
        details = ops.pitr_details(prepared)
        request.state.audit_details = details
        audit_event(api, actor, ops.RESTORE, AuditOutcome.STARTED, resource_id=prepared.plan.backup_id, details=details)
        location = request.url_for(GET_PITR_JOB, job_id=prepared.job_id).path
        if wants_async(prefer):
            ops.start_pitr(api, prepared, actor, lambda: api.pitr_directories.release(directory))
            handed_over = True
            job = pitr_jobs.get_job(api.ctx, prepared.job_id)
            return accepted({"message": "Point-in-time restore started", "job": job}, location)
        result = ops.run_pitr(api, prepared, actor)
        job = pitr_jobs.get_job(api.ctx, prepared.job_id)
        return JSONResponse({"message": result.message, "job": job}, status_code=201, headers={"Location": location})
    finally:
        if not handed_over:
            api.pitr_directories.release(directory)


def get_job(
    job_id: Annotated[str, Path(description="The job id from the answer's Location.")], api: Api, _: Admin
) -> Any:
    """A point-in-time restore's state: IN_PROGRESS, then COMPLETED (with where recovery stopped) or FAILED."""
    return pitr_jobs.get_job(api.ctx, job_id)


def register(router: APIRouter) -> None:
    """Add the point-in-time restore routes to ``router``."""
    tags: list[Any] = ["point-in-time restores"]
    location = {"Location": {"schema": {"type": "string"}, "required": True}}
    router.add_api_route(
        "/pitr-restores",
        create,
        methods=["POST"],
        status_code=201,
        response_model=PitrAccepted,
        operation_id="createPitrRestore",
        summary="Restore to a point in time into a new data directory",
        name="pgkeep_create_pitr_restore",
        tags=tags,
        openapi_extra=audited(ops.RESTORE),
        responses={
            200: {"description": "Dry run: the plan; nothing was written", "model": PitrPlan},
            201: {"description": "Restored (and, with start, recovered)", "headers": location},
            202: {
                "description": "Accepted (Prefer: respond-async); poll Location",
                "model": PitrAccepted,
                "headers": location,
            },
            **problem_responses(*AUTH_ERRORS, 404, 409, 422),
        },
    )
    router.add_api_route(
        "/pitr-restores/{job_id}",
        get_job,
        methods=["GET"],
        response_model=PitrJob,
        operation_id="getPitrRestore",
        summary="Get a point-in-time restore job",
        name=GET_PITR_JOB,
        tags=tags,
        responses=problem_responses(*AUTH_ERRORS, 404),
    )
