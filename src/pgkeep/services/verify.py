"""Verification levels, including the restore drill.

- ``checksum``: the stored bytes match their SHA-256.
- ``archive``: also decompresses to the end and reads the archive
  (``pg_restore --list``, or a plain dump's header and end marker).
- ``restore`` (a drill): also restores into a scratch database, compares
  every table's row count with the counts recorded at backup time, runs
  amcheck on the restored B-tree indexes where the extension is available,
  and drops the scratch database whatever happens. For custom and plain
  backups the drill is the only read: its load checks every stored byte
  against the checksum before it commits, and a load that fails before
  the end reads the rest and checks it (``explain_failed_load``), so that
  damage is named as damage.

Every verification is recorded (``backup_verifications``, and the backup's
``last_verified_*`` columns).
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import psycopg
from psycopg import sql

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, BackupVerification, utcnow
from pgkeep.errors import (
    InvalidStateError,
    PgkeepError,
    RestoreFailedError,
    VerificationError,
)
from pgkeep.observability.logs import get_logger
from pgkeep.pgtools import server as pgserver
from pgkeep.pgtools.conninfo import Target
from pgkeep.services.artifacts import Artifact, artifact_for_row, checked_while_loading, scan
from pgkeep.services.context import Context
from pgkeep.services.manifest import write_verification
from pgkeep.services.restore_modes import require_createdb
from pgkeep.storage import locate

log = get_logger("pgkeep.verify")
DRILL_PREFIX = "pgkeep_drill_"


class VerifyLevel(str, Enum):
    CHECKSUM = "checksum"
    ARCHIVE = "archive"
    RESTORE = "restore"


@dataclass(frozen=True)
class VerifyResult:
    valid: bool
    message: str
    level: str = VerifyLevel.ARCHIVE.value
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "message": self.message, "level": self.level, "details": self.details}


def verify_backup(
    ctx: Context,
    backup_id: str,
    level: VerifyLevel | str = VerifyLevel.ARCHIVE,
    on_read: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Verify a COMPLETED backup at ``level`` and record the outcome.

    ``on_read`` hears how much of the stored backup each pass has read (progress).
    """
    level = VerifyLevel(level)
    with ctx.catalog.session() as session:
        row = repo.get_backup(session, backup_id)
        if row.status is not BackupStatus.COMPLETED:
            raise InvalidStateError(
                f"backup {backup_id} is {row.status.value}; only COMPLETED backups can be verified",
                backup_id=backup_id,
            )
        physical = row if row.kind == "physical" else None
        artifact = None if physical else dataclasses.replace(artifact_for_row(row, ctx.settings), on_read=on_read)
        expected_counts = dict((row.metadata_ or {}).get("tableCounts") or {})
    started = utcnow()
    t0 = time.monotonic()
    if physical is not None:
        from pgkeep.services.physical_verify import verify_physical  # it imports this module

        result = verify_physical(ctx, physical, level, on_read)
    else:
        assert artifact is not None
        result = _run(ctx, artifact, level, expected_counts)
    _record(ctx, backup_id, result, started, int((time.monotonic() - t0) * 1000))
    return result


def _run(ctx: Context, artifact: Artifact, level: VerifyLevel, expected: dict[str, int]) -> VerifyResult:
    try:
        if level is VerifyLevel.RESTORE and checked_while_loading(artifact):
            # One read: the drill's load checks every stored byte against the checksum
            # before it commits, and a load that fails is checked for damage.
            return restore_drill(ctx, artifact, expected)
        scan(artifact, pg_bin_dir=ctx.settings.pg_bin_dir, check_archive=level is not VerifyLevel.CHECKSUM)
        if level is VerifyLevel.RESTORE:
            return restore_drill(ctx, artifact, expected)
    except VerificationError as exc:
        return VerifyResult(False, exc.message, level.value)
    except PgkeepError as exc:
        if exc.code in ("not_found", "object_not_found"):
            return VerifyResult(False, f"File not accessible: {exc.message}", level.value)
        raise
    return VerifyResult(True, "Backup verified successfully", level.value)


def _record(ctx: Context, backup_id: str, result: VerifyResult, started: Any, duration_ms: int) -> None:
    with ctx.catalog.session() as session:
        session.add(
            BackupVerification(
                backup_id=backup_id,
                level=result.level,
                valid=result.valid,
                message=result.message,
                details=result.details or None,
                started_at=started,
                duration_ms=duration_ms,
            )
        )
        row = repo.get_backup(session, backup_id)
        row.last_verified_at, row.last_verify_level, row.last_verify_ok = started, result.level, result.valid
        session.commit()
        filename, storage_url = row.filename, row.storage_url
    # Also beside the backup, so a catalog rebuilt from storage knows it was verified.
    if storage_url:
        record = {
            "backupId": backup_id,
            "filename": filename,
            "level": result.level,
            "valid": result.valid,
            "message": result.message,
            "startedAt": started.isoformat(),
            "durationMs": duration_ms,
        }
        try:
            storage, _ = locate(storage_url, ctx.settings)
            write_verification(storage, filename, record, started)
        except PgkeepError as exc:  # the catalog has it; storage may be down right now
            log.warning("verification record not stored", backup_id=backup_id, error=exc.message)
    log.info("backup verified", backup_id=backup_id, level=result.level, valid=result.valid, duration_ms=duration_ms)


def scratch_server(ctx: Context) -> Target:
    """Where drills run: PGKEEP_SCRATCH_URL if set, else the target's own server."""
    if ctx.settings.scratch_url:
        return Target.from_url(ctx.settings.scratch_url, "PGKEEP_SCRATCH_URL")
    return ctx.target


def restore_drill(ctx: Context, artifact: Artifact, expected: dict[str, int]) -> VerifyResult:
    """Restore into a scratch database, compare row counts, amcheck, drop it."""
    from pgkeep.services.restore import RestoreOptions, restore_into  # restore imports verify's peers

    server = scratch_server(ctx)
    maintenance = server.with_dbname("postgres")
    name = f"{DRILL_PREFIX}{(artifact.backup_id or 'file')[:8]}_{secrets.token_hex(3)}"
    with pgserver.connect(maintenance, operation="restore drill") as conn:
        require_createdb(conn, server, "a restore drill", "or set PGKEEP_SCRATCH_URL to a scratch server")
        _drop_stale_scratch(conn)
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    scratch = server.with_dbname(name)
    try:
        # Without owners and grants: the drill proves the schema and the data restore, as the role
        # running it (a backup role is rarely a superuser, the scratch server may lack the app's
        # roles); ownership would fail it every week on a good backup.
        restore_into(ctx, artifact, scratch, RestoreOptions(no_owner=True, no_acl=True))
        actual = pgserver.table_counts(scratch, None)
        mismatches = {
            table: {"recorded": count, "restored": actual.get(table)}
            for table, count in expected.items()
            if actual.get(table) != count
        }
        extra = sorted(set(actual) - set(expected)) if expected else []
        amcheck = _amcheck(scratch)
        details = {"tables": len(actual), "mismatches": mismatches, "unexpectedTables": extra, "amcheck": amcheck}
        if mismatches or extra:
            first = next(iter(mismatches.items()), None)
            why = (
                f"{first[0]}: {first[1]['restored']} rows restored, {first[1]['recorded']} recorded"
                if first
                else f"tables not in the backup's record: {', '.join(extra)}"
            )
            return VerifyResult(False, f"restore drill failed: row counts differ ({why})", "restore", details)
        if amcheck.get("errors"):
            return VerifyResult(False, f"restore drill failed: amcheck: {amcheck['errors'][0]}", "restore", details)
        return VerifyResult(
            True,
            f"Restore drill passed: {len(actual)} tables restored with the recorded row counts"
            + ("" if amcheck.get("checked") is None else f", {amcheck['checked']} indexes checked by amcheck"),
            "restore",
            details,
        )
    except (VerificationError, RestoreFailedError) as exc:  # a failed load has checked the bytes
        return VerifyResult(False, f"restore drill failed: {exc.message}", "restore")
    except PgkeepError as exc:
        return VerifyResult(False, f"restore drill failed: {_damage(ctx, artifact) or exc.message}", "restore")
    finally:
        # Whatever happened (including Ctrl-C), the scratch database goes.
        with contextlib.suppress(Exception), pgserver.connect(maintenance, operation="restore drill") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _damage(ctx: Context, artifact: Artifact) -> str | None:
    """Why a load failed, if the stored bytes are not the ones checksummed (then that, not
    the loader's complaint about what it read, is the cause). Reads the backup again."""
    if artifact.checksum is None:
        return None
    try:
        scan(dataclasses.replace(artifact, on_read=None), pg_bin_dir=ctx.settings.pg_bin_dir, check_archive=False)
    except VerificationError as exc:
        return exc.message
    except PgkeepError:
        return None
    return None


def _drop_stale_scratch(conn: psycopg.Connection) -> None:
    """Scratch databases left by a drill that was SIGKILLed, unless something still uses them."""
    for (name,) in conn.execute(
        "SELECT datname FROM pg_database d WHERE datname LIKE %s AND NOT EXISTS "
        "(SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)",
        (DRILL_PREFIX.replace("_", "\\_") + "%",),
    ).fetchall():
        with contextlib.suppress(psycopg.Error):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _amcheck(target: Target) -> dict[str, Any]:
    """bt_index_check on every user B-tree index, if amcheck can be installed."""
    with psycopg.connect(target.connect_conninfo(), autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        except psycopg.Error as exc:
            return {"checked": None, "skipped": f"amcheck not available: {str(exc).strip()}"}
        indexes = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE am.amname = 'btree' AND c.relpersistence <> 't' AND i.indisvalid "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'"
        ).fetchall()
        errors = []
        for (index,) in indexes:
            try:
                conn.execute("SELECT bt_index_check(%s::regclass, true)", (index,))
            except psycopg.Error as exc:
                errors.append(f"{index}: {str(exc).strip()}")
        return {"checked": len(indexes), "errors": errors}
