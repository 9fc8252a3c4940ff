"""The long operations (backups, restores, point-in-time restores), run in the request or on a
job thread, with their audit entries.

Audit ordering: a restore's ``started`` entry is written before the restore
begins and its outcome entry after; an async backup's ``started`` entry is
written from ``on_started``, on the job thread, so it cannot land after the
outcome of a backup that finishes quickly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pgkeep.api.problems import problem_for
from pgkeep.api.state import AdminApi, audit_event, audit_problem
from pgkeep.catalog.admin_models import AuditOutcome
from pgkeep.catalog.models import BackupType
from pgkeep.services import admin, pitr_jobs
from pgkeep.services.audit import Actor
from pgkeep.services.backup import BackupResult, create_backup
from pgkeep.services.physical import create_physical_backup
from pgkeep.services.pitr import PitrResult
from pgkeep.services.restore import RestoreOutcome

CREATE = "backup.create"
RESTORE = "backup.restore"  # point-in-time restores too: details.kind says "physical"
LOGICAL, PHYSICAL = "logical", "physical"


def kind_details(backup_type: BackupType, kind: str) -> dict[str, Any]:
    """``type``, and ``kind`` for a physical backup (logical entries keep the shape they always had)."""
    return {"type": backup_type.value} | ({"kind": kind} if kind == PHYSICAL else {})


def backup_details(result: BackupResult, backup_type: BackupType, kind: str = LOGICAL) -> dict[str, Any]:
    return kind_details(backup_type, kind) | {"size": result.size, "filename": result.filename}


def take_backup(
    api: AdminApi,
    backup_type: BackupType,
    kind: str,
    *,
    created_by_id: str | None,
    on_started: Callable[[str], None] | None = None,
) -> BackupResult:
    """Take a logical or physical backup in this thread."""
    if kind != PHYSICAL:
        return create_backup(api.ctx, backup_type=backup_type, created_by_id=created_by_id, on_started=on_started)
    # The server's refusals (archiving off, INCREMENTAL before PostgreSQL 17, ...) are
    # PhysicalBackupRefusedError: 422 with the reason, raised before any row exists.
    return create_physical_backup(api.ctx, backup_type=backup_type, created_by_id=created_by_id, on_started=on_started)


def start_backup(api: AdminApi, backup_type: BackupType, actor: Actor, kind: str = LOGICAL) -> str:
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
            details=kind_details(backup_type, kind) | {"async": True},
        )
        started.set()

    def work() -> None:
        try:
            result = take_backup(api, backup_type, kind, created_by_id=actor.admin_id, on_started=on_started)
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
            details=backup_details(result, backup_type, kind),
        )

    api.jobs.start(f"backup-{kind}-{backup_type.value.lower()}", work)
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
        details=restore_details(prepared) | {"checksum": outcome.checksum, "safetyBackupId": outcome.safety_backup_id},
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


def pitr_details(prepared: pitr_jobs.PreparedPitr) -> dict[str, Any]:
    return prepared.plan.details() | {"jobId": prepared.job_id, "dryRun": False}


def run_pitr(api: AdminApi, prepared: pitr_jobs.PreparedPitr, actor: Actor) -> PitrResult:
    """Run a prepared point-in-time restore and audit its outcome (the caller audited its start).

    Failures are audited by whoever sees them, as for :func:`run_restore`.
    """
    result = pitr_jobs.run(api.ctx, prepared)
    audit_event(
        api,
        actor,
        RESTORE,
        AuditOutcome.SUCCESS,
        resource_id=prepared.plan.backup_id,
        details=pitr_details(prepared)
        | {k: result.as_json()[k] for k in ("started", "port", "reachedLsn", "targetReached")},
    )
    return result


def start_pitr(api: AdminApi, prepared: pitr_jobs.PreparedPitr, actor: Actor, release: Callable[[], None]) -> None:
    """Run a prepared point-in-time restore on a job thread; ``release`` is called when it ends.

    A restored server started here outlives this thread: pg_ctl forks the
    postmaster into its own session, and PDEATHSIG (which only pgkeep's own
    client children get, through pgtools.process) is not inherited across
    that fork. tests/pitr/test_pitr_api.py checks it.
    """

    def work() -> None:
        try:
            run_pitr(api, prepared, actor)
        except Exception as exc:
            audit_problem(
                api,
                actor,
                RESTORE,
                problem_for(exc),
                resource_id=prepared.plan.backup_id,
                details=pitr_details(prepared),
            )
        finally:
            release()

    # If starting fails, the caller still holds the directory and releases it.
    api.jobs.start(f"pitr-{prepared.job_id[:8]}", work)
