"""``/backups``: the spec's admin routes. Each parses input, calls services, maps the result.

Endpoints are plain ``def``: FastAPI runs them on its thread pool, so the
blocking service calls (pg_dump, catalog queries) never block the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from pgkeep.api import operations as ops
from pgkeep.api.auth import Principal, require
from pgkeep.api.problems import Problem, problem_responses
from pgkeep.api.route import audited
from pgkeep.api.schemas import (
    Backup,
    BackupAccepted,
    BackupCreated,
    BackupKind,
    BackupList,
    BackupStatusName,
    BackupTypeName,
    CleanupRequest,
    CleanupResult,
    CreateBackupRequest,
    KeepRequest,
    Message,
    RestoreAccepted,
    RestoreDone,
    RestoreJob,
    RestoreRequest,
    VerifyRequest,
    VerifyResult,
)
from pgkeep.api.state import AdminApi, actor_of, audit_event, audit_problem, get_api
from pgkeep.catalog.admin_models import AuditOutcome, Role
from pgkeep.catalog.models import BackupStatus, BackupType
from pgkeep.config import ToastCompression
from pgkeep.services import admin, manage
from pgkeep.services.restore import RestoreOptions

Api = Annotated[AdminApi, Depends(get_api)]
Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
BackupId = Annotated[str, Path(description="A backup id (UUID); anything else is a 404.")]
Prefer = Annotated[
    str | None,
    Header(description="`respond-async`: answer 202 at once with a Location to poll (RFC 7240)."),
]

# Every route can refuse the caller; 500 is a server-side failure (storage, pg_dump), never input.
AUTH_ERRORS = (401, 403, 500)
GET_BACKUP = "pgkeep_get_backup"
GET_RESTORE_JOB = "pgkeep_get_restore_job"


def wants_async(prefer: str | None) -> bool:
    if not prefer:
        return False
    return any(p.split(";")[0].strip().lower() == "respond-async" for p in prefer.split(","))


def accepted(body: dict[str, Any], location: str) -> JSONResponse:
    return JSONResponse(body, status_code=202, headers={"Location": location, "Preference-Applied": "respond-async"})


def create(
    request: Request,
    api: Api,
    principal: Operator,
    prefer: Prefer = None,
    body: CreateBackupRequest | None = None,
) -> Any:
    """Take a backup (the spec's ``POST /``): logical (pg_dump, the default) or ``kind: physical``
    (a base backup of the cluster, for point-in-time restores).

    With ``Prefer: respond-async``: 202 at once, and poll ``GET /{id}`` (the Location).
    """
    body = body or CreateBackupRequest()
    backup_type = BackupType(body.backup_type())
    request.state.audit_details = ops.kind_details(backup_type, body.kind)
    actor = actor_of(request)
    if wants_async(prefer):
        backup_id = ops.start_backup(api, backup_type, actor, body.kind)
        location = request.url_for(GET_BACKUP, backup_id=backup_id).path
        return accepted({"message": "Backup started", "backup": manage.get_backup(api.ctx, backup_id)}, location)
    result = ops.take_backup(api, backup_type, body.kind, created_by_id=principal.id)
    audit_event(
        api,
        actor,
        ops.CREATE,
        AuditOutcome.SUCCESS,
        resource_id=result.id,
        details=ops.backup_details(result, backup_type, body.kind),
    )
    return {"message": "Backup created successfully", "backup": result.as_json()}


def list_all(
    api: Api,
    _: Viewer,
    page: Annotated[int, Query(ge=1, le=1_000_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    type: Annotated[BackupTypeName | None, Query()] = None,
    status: Annotated[BackupStatusName | None, Query()] = None,
    kind: Annotated[BackupKind | None, Query(description="Only logical or only physical backups.")] = None,
) -> Any:
    """Backups, newest first (the spec's ``GET /``)."""
    return manage.list_backups(
        api.ctx,
        page=page,
        limit=limit,
        backup_type=BackupType(type) if type else None,
        status=BackupStatus(status) if status else None,
        kind=kind,
    )


def get_one(backup_id: BackupId, api: Api, _: Viewer) -> Any:
    """One backup; while it runs, ``bytesWritten`` says how far it got."""
    return manage.get_backup(api.ctx, backup_id)


def verify(backup_id: BackupId, request: Request, api: Api, _: Operator, body: VerifyRequest | None = None) -> Any:
    """Verify at ``level`` (default ``archive``: checksum and archive readable; ``restore``: a
    restore drill into a scratch database); ``valid: false`` says why not."""
    level = body.level if body is not None else "archive"
    request.state.audit_details = {"level": level}
    result = manage.verify_backup(api.ctx, backup_id, level)
    audit_event(
        api,
        actor_of(request),
        "backup.verify",
        AuditOutcome.SUCCESS,
        resource_id=backup_id,
        details=result.as_json(),
    )
    return result.as_json()


def restore(
    backup_id: BackupId,
    body: RestoreRequest,
    request: Request,
    api: Api,
    principal: Admin,
    prefer: Prefer = None,
) -> Any:
    """Verify, then (``dryRun: false``) replace the target's data with the backup.

    One data-changing restore runs at a time (409 otherwise). With
    ``Prefer: respond-async``: 202 and poll the restore job in Location.
    """
    request.state.audit_details = {"dryRun": body.dryRun, "targetDatabase": body.targetDatabase}
    actor = actor_of(request)
    guard = None if body.dryRun else api.restore_lock
    if guard is not None and not guard.acquire(blocking=False):
        raise admin.RestoreInProgressError(
            "another restore is running on this server",
            operation="restore",
            backup_id=backup_id,
            hint="wait for it to finish; its job is listed in the audit log",
        )
    handed_over = False
    try:
        prepared = admin.prepare_restore(
            api.ctx,
            backup_id,
            dry_run=body.dryRun,
            target_database=body.targetDatabase,
            requested_by=principal.id,
            options=RestoreOptions(
                atomic=body.atomic,
                safety_backup=body.safetyBackup,
                tables=tuple(body.tables),
                schemas=tuple(body.schemas),
                into_schema=body.intoSchema,
                no_owner=body.noOwner,
                no_acl=body.noAcl,
                toast_compression=ToastCompression(body.toastCompression) if body.toastCompression else None,
            ),
        )
        details = ops.restore_details(prepared)
        request.state.audit_details = details
        audit_event(api, actor, ops.RESTORE, AuditOutcome.STARTED, resource_id=backup_id, details=details)
        if wants_async(prefer):
            ops.start_restore(api, prepared, actor, guard)
            handed_over = True
            location = request.url_for(GET_RESTORE_JOB, backup_id=backup_id, job_id=prepared.job_id).path
            job = admin.get_restore_job(api.ctx, backup_id, prepared.job_id)
            return accepted({"message": "Restore started", "job": job}, location)
        outcome = ops.run_restore(api, prepared, actor)
        return {
            "message": outcome.message,
            "jobId": prepared.job_id,
            "checksum": outcome.checksum,
            **outcome.details(),
        }
    finally:
        if guard is not None and not handed_over:
            guard.release()


def get_restore_job(
    backup_id: BackupId,
    job_id: Annotated[str, Path(description="The job id from the 202's Location.")],
    api: Api,
    _: Admin,
) -> Any:
    """A restore's state: IN_PROGRESS, then COMPLETED or FAILED with its message."""
    return admin.get_restore_job(api.ctx, backup_id, job_id)


def delete(backup_id: BackupId, request: Request, api: Api, _: Admin) -> Any:
    """Remove the backup's file and mark it DELETED."""
    message = manage.delete_backup(api.ctx, backup_id)
    audit_event(api, actor_of(request), "backup.delete", AuditOutcome.SUCCESS, resource_id=backup_id)
    return {"message": message}


def cleanup(
    request: Request,
    api: Api,
    _: Admin,
    dryRun: Annotated[bool, Query(description="Only report what would be deleted.")] = False,
    body: CleanupRequest | None = None,
) -> Any:
    """Apply the retention policy; with ``{"dryRun": true}`` (or ``?dryRun=true``) only return the
    plan: every backup's keep/delete decision and its reasons."""
    dry_run = dryRun or (body is not None and body.dryRun)
    result = manage.cleanup_expired(api.ctx, dry_run=dry_run)
    data = result.as_json()
    actor = actor_of(request)
    details = {k: data[k] for k in ("deletedCount", "deletedIds", "failed", "dryRun")}
    if result.failed:
        problem = Problem(
            500,
            "cleanup_incomplete",
            "Cleanup incomplete",
            f"{len(result.failed)} expired backups could not be deleted",
        )
        audit_problem(api, actor, "backup.cleanup", problem, details=details)
    else:
        audit_event(api, actor, "backup.cleanup", AuditOutcome.SUCCESS, details=details)
    return data


def set_keep(backup_id: BackupId, body: KeepRequest, request: Request, api: Api, principal: Operator) -> Any:
    """Mark a backup to keep (retention never deletes it) or release it."""
    request.state.audit_details = {"keep": body.keep}
    data = manage.set_keep(api.ctx, backup_id, body.keep, by=principal.id)
    audit_event(
        api, actor_of(request), "backup.keep", AuditOutcome.SUCCESS, resource_id=backup_id, details={"keep": body.keep}
    )
    return data


def register(router: APIRouter) -> None:
    """Add the backup routes to ``router`` (whose route class binds the AdminApi)."""
    tags: list[str | Any] = ["backups"]
    router.add_api_route(
        "/backups",
        create,
        methods=["POST"],
        status_code=201,
        response_model=BackupCreated,
        operation_id="createBackup",
        summary="Create a backup",
        name="pgkeep_create_backup",
        tags=tags,
        openapi_extra=audited(ops.CREATE),
        responses={
            202: {
                "description": "Accepted (Prefer: respond-async); poll Location",
                "model": BackupAccepted,
                "headers": {"Location": {"schema": {"type": "string"}, "required": True}},
            },
            **problem_responses(*AUTH_ERRORS, 409, 422, 500),
        },
    )
    router.add_api_route(
        "/backups",
        list_all,
        methods=["GET"],
        response_model=BackupList,
        operation_id="listBackups",
        summary="List backups",
        name="pgkeep_list_backups",
        tags=tags,
        responses=problem_responses(*AUTH_ERRORS, 422),
    )
    router.add_api_route(
        "/backups/cleanup",
        cleanup,
        methods=["POST"],
        response_model=CleanupResult,
        operation_id="cleanupBackups",
        summary="Delete expired backups",
        name="pgkeep_cleanup_backups",
        tags=tags,
        openapi_extra=audited("backup.cleanup"),
        responses=problem_responses(*AUTH_ERRORS, 422),
    )
    router.add_api_route(
        "/backups/{backup_id}",
        get_one,
        methods=["GET"],
        response_model=Backup,
        operation_id="getBackup",
        summary="Get one backup",
        name=GET_BACKUP,
        tags=tags,
        responses=problem_responses(*AUTH_ERRORS, 404),
    )
    router.add_api_route(
        "/backups/{backup_id}",
        delete,
        methods=["DELETE"],
        response_model=Message,
        operation_id="deleteBackup",
        summary="Delete a backup",
        name="pgkeep_delete_backup",
        tags=tags,
        openapi_extra=audited("backup.delete"),
        responses=problem_responses(*AUTH_ERRORS, 404, 409),
    )
    router.add_api_route(
        "/backups/{backup_id}/verify",
        verify,
        methods=["POST"],
        response_model=VerifyResult,
        operation_id="verifyBackup",
        summary="Verify a backup",
        name="pgkeep_verify_backup",
        tags=tags,
        openapi_extra=audited("backup.verify"),
        responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
    )
    router.add_api_route(
        "/backups/{backup_id}/keep",
        set_keep,
        methods=["POST"],
        response_model=Backup,
        operation_id="keepBackup",
        summary="Keep a backup (or release it) from retention",
        name="pgkeep_keep_backup",
        tags=tags,
        openapi_extra=audited("backup.keep"),
        responses=problem_responses(*AUTH_ERRORS, 404, 409, 422),
    )
    router.add_api_route(
        "/backups/{backup_id}/restore",
        restore,
        methods=["POST"],
        response_model=RestoreDone,
        operation_id="restoreBackup",
        summary="Restore a backup",
        name="pgkeep_restore_backup",
        tags=tags,
        openapi_extra=audited(ops.RESTORE),
        responses={
            202: {
                "description": "Accepted (Prefer: respond-async); poll Location",
                "model": RestoreAccepted,
                "headers": {"Location": {"schema": {"type": "string"}, "required": True}},
            },
            **problem_responses(*AUTH_ERRORS, 404, 409, 422, 500),
        },
    )
    router.add_api_route(
        "/backups/{backup_id}/restores/{job_id}",
        get_restore_job,
        methods=["GET"],
        response_model=RestoreJob,
        operation_id="getRestoreJob",
        summary="Get a restore job",
        name=GET_RESTORE_JOB,
        tags=tags,
        responses=problem_responses(*AUTH_ERRORS, 404),
    )
