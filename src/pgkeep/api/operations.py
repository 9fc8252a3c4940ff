"""The two long operations, run in the request or on a job thread, with their audit entries.

Audit ordering: a restore's ``started`` entry is written before the restore
begins and its outcome entry after; an async backup's ``started`` entry is
written from ``on_started``, on the job thread, so it cannot land after the
outcome of a backup that finishes quickly.
"""

from __future__ import annotations

import threading
from typing import Any

from pgkeep.api.problems import problem_for
from pgkeep.api.state import AdminApi, audit_event, audit_problem
from pgkeep.catalog.admin_models import AuditOutcome
from pgkeep.catalog.models import BackupType
from pgkeep.services import admin
from pgkeep.services.audit import Actor
from pgkeep.services.backup import BackupResult, create_backup
from pgkeep.services.restore import RestoreOutcome

CREATE = "backup.create"
RESTORE = "backup.restore"


def backup_details(result: BackupResult, backup_type: BackupType) -> dict[str, Any]:
    return {"type": backup_type.value, "size": result.size, "filename": result.filename}


def start_backup(api: AdminApi, backup_type: BackupType, actor: Actor) -> str:
    """Start a backup on a job thread; return its id once its catalog row exists.

    Errors raised before the row exists (another backup holds the lock: 409)
    are raised here, so the request answers them; later ones are recorded on
    the row and in the audit log by the job.
    """
    started = threading.Event()
    box: dict[str, Any] = {}

    def on_started(backup_id: str) -> None:
        box["id"] = backup_id
        audit_event(
            api,
            actor,
            CREATE,
            AuditOutcome.STARTED,
            resource_id=backup_id,
            details={"type": backup_type.value, "async": True},
        )
        started.set()

    def work() -> None:
        try:
            result = create_backup(
                api.ctx,
                backup_type=backup_type,
                created_by_id=actor.admin_id,
                on_started=on_started,
            )
        except BaseException as exc:
            if started.is_set():
                audit_problem(api, actor, CREATE, problem_for(exc), resource_id=box["id"])
            else:
                box["error"] = exc
                started.set()
            if not isinstance(exc, Exception):
                raise
            return
        audit_event(
            api,
            actor,
            CREATE,
            AuditOutcome.SUCCESS,
            resource_id=result.id,
            details=backup_details(result, backup_type),
        )

    api.jobs.start(f"backup-{backup_type.value.lower()}", work)
    started.wait()
    if "id" not in box:
        raise box["error"]
    return str(box["id"])


def run_restore(api: AdminApi, prepared: admin.PreparedRestore, actor: Actor) -> RestoreOutcome:
    """Run a prepared restore and audit its outcome (the caller audited its start).

    Failures are audited by whoever sees them: the route class when the
    request runs the restore, the job in :func:`start_restore` otherwise.
    """
    outcome = admin.run_restore(api.ctx, prepared)
    audit_event(
        api,
        actor,
        RESTORE,
        AuditOutcome.SUCCESS,
        resource_id=prepared.backup_id,
        details=restore_details(prepared)
        | {"checksum": outcome.checksum, "safetyBackupId": getattr(outcome, "safety_backup_id", None)},
    )
    return outcome


def restore_details(prepared: admin.PreparedRestore) -> dict[str, Any]:
    return {"dryRun": prepared.options.dry_run, "target": prepared.target, "jobId": prepared.job_id}


def start_restore(api: AdminApi, prepared: admin.PreparedRestore, actor: Actor, release: threading.Lock | None) -> None:
    """Run a prepared restore on a job thread; ``release`` is unlocked when it ends."""

    def work() -> None:
        try:
            run_restore(api, prepared, actor)
        except Exception as exc:
            audit_problem(
                api,
                actor,
                RESTORE,
                problem_for(exc),
                resource_id=prepared.backup_id,
                details=restore_details(prepared),
            )
        finally:
            if release is not None:
                release.release()

    # If starting fails, the caller still holds ``release`` and unlocks it.
    api.jobs.start(f"restore-{prepared.job_id[:8]}", work)
