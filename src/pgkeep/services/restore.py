"""Restoring a backup: verify first, then replace the target's contents.

Order: the options and the restoring role's rights are checked (from the
archive's table of contents); the person confirms; then the target is
emptied and the backup loaded *in one transaction* (psql
--single-transaction, ON_ERROR_STOP), so any error leaves the target as it
was. The stored bytes are hashed while they are loaded, and psql sees the
end of its input (and COMMITs) only once the hash matches the catalog's:
a damaged backup is found before anything changes, in one pass over it.
A dry run, a backup without a recorded checksum, a directory archive or a
selective restore reads the whole artifact first instead (:func:`scan`).

Parallel restore (``jobs > 1``) cannot be one transaction: the target is
emptied, then ``pg_restore --jobs`` loads it; a failure leaves it partial.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus
from pgkeep.config import DumpFormat, ToastCompression
from pgkeep.errors import (
    InsufficientPrivilegeError,
    InvalidRequestError,
    InvalidStateError,
    NotConfirmedError,
    PgkeepError,
    RestoreFailedError,
    TargetUnsuitableError,
    VerificationError,
)
from pgkeep.observability.logs import get_logger
from pgkeep.pgtools import server as pgserver
from pgkeep.pgtools.binaries import Tool, find_tool
from pgkeep.pgtools.clear import clear_database_sql, undroppable
from pgkeep.pgtools.commands import pg_restore_parallel_argv, pg_restore_script_argv, psql_argv, timeout_ms
from pgkeep.pgtools.conninfo import Target, client_env
from pgkeep.pgtools.process import Child, enlarge_pipe_fd
from pgkeep.pgtools.toast import SETTING as TOAST_SETTING
from pgkeep.pgtools.toast import read_server_toast, session_method, set_statement
from pgkeep.pgtools.toc import missing_extensions, missing_from_archive, privilege_problems, summarize
from pgkeep.pipeline.sqlfilter import adapt_for_server
from pgkeep.services import catalog_place
from pgkeep.services.artifacts import (
    Artifact,
    HashingReader,
    artifact_for_file,
    artifact_for_row,
    check_digest,
    checked_while_loading,
    explain_damage,
    explain_failed_load,
    extract_tar,
    pg_restore_for,
    read_toc,
    scan,
)
from pgkeep.services.context import Context
from pgkeep.services.restore_modes import (
    apply_globals,
    parse_table,
    refuse_selection_conflicts,
    require_createdb,
    restore_atomic,
    restore_selective,
    stage_archive,
    toast_choice,
)
from pgkeep.services.serialize import human_bytes, named

COPY_CHUNK = 1 << 20
# How long psql may take to finish exiting once pg_restore saw its input closed.
SIGPIPE_GRACE_S = 30
log = get_logger("pgkeep.restore")


@dataclass(frozen=True)
class RestoreOptions:
    target_url: str | None = None
    dry_run: bool = False
    jobs: int = 1
    no_owner: bool = False
    no_acl: bool = False
    create_database: bool = False
    safety_backup: bool = True  # back up the target's current contents first (if it has any)
    atomic: bool = False  # restore into a new database and swap names at the end
    tables: tuple[str, ...] = ()  # selective: "schema.table" or "table" (public)
    schemas: tuple[str, ...] = ()  # selective: whole schemas missing from the target
    into_schema: str | None = None  # selective tables go here, next to the live data
    restore_globals: bool = False  # create the backup's roles/tablespaces first
    toast_compression: ToastCompression | None = None  # None: the settings' (pgtools/toast.py)

    @property
    def selective(self) -> bool:
        """Only some tables or schemas, next to what the target holds."""
        return bool(self.tables or self.schemas)


@dataclass(frozen=True)
class RestorePlan:
    """What is about to happen, for the confirmation prompt."""

    artifact: Artifact
    checksum: str
    target: str  # user@host:port/db, no password
    toast_compression: str | None = None  # what restored long values will be compressed with, if not the default
    other_sessions: int = 0  # client sessions connected to the target: they may hold an in-place restore up


@dataclass(frozen=True)
class RestoreOutcome:
    message: str
    checksum: str
    dry_run: bool
    safety_backup_id: str | None = None
    terminated_sessions: int = 0
    plan: RestorePlan | None = None  # what was (or, in a dry run, would have been) done

    def details(self) -> dict[str, Any]:
        """What it reports beyond message and checksum: the API's RestoreDone fields, camelCase."""
        return {
            "safetyBackupId": self.safety_backup_id,
            "toastCompression": self.plan.toast_compression if self.plan else None,
            "otherSessions": self.plan.other_sessions if self.plan else None,
        }


def resolve_backup(ctx: Context, backup_id: str) -> Artifact:
    with ctx.catalog.session() as session:
        row = repo.get_backup(session, backup_id)
        if row.status is not BackupStatus.COMPLETED:
            raise InvalidStateError(
                f"backup {backup_id} is {row.status.value}; only COMPLETED backups can be restored",
                backup_id=backup_id,
            )
        if row.kind == "physical":
            raise InvalidRequestError(
                f"backup {backup_id} is a physical backup of the whole cluster; it restores into a new data "
                "directory, not into a database",
                backup_id=backup_id,
                hint=f"pgkeep restore --kind physical --data-dir DIR --backup {backup_id}",
            )
        return artifact_for_row(row, ctx.settings)


def resolve_file(ctx: Context, path: Path) -> Artifact:
    """An uncatalogued file; if the catalog knows its name, its checksum is checked too."""
    artifact = artifact_for_file(path, identity_file=ctx.settings.age_identity_file)
    with ctx.catalog.session() as session:
        row = repo.find_by_filename(session, path.name)
        if row is not None and row.checksum:
            return dataclasses.replace(
                artifact,
                checksum=row.checksum,
                size=int(row.size),
                dump_major=int(row.pg_dump_version.split(".")[0]) if row.pg_dump_version else None,
                backup_id=row.id,
            )
    return artifact


def _check_options(artifact: Artifact, options: RestoreOptions) -> None:
    if options.selective and artifact.fmt is DumpFormat.PLAIN:
        raise InvalidRequestError("selective restore needs a custom or directory backup, not a plain SQL dump")
    if options.into_schema and not options.tables:
        raise InvalidRequestError("--into-schema needs --table")
    if options.into_schema and options.schemas:
        raise InvalidRequestError("--into-schema works with --table, not --schema")
    if options.selective and options.atomic:
        raise InvalidRequestError("a selective restore cannot be atomic (it keeps the rest of the database)")
    if options.restore_globals and not artifact.globals_info:
        raise InvalidRequestError(
            "this backup has no saved roles and tablespaces (take backups with --globals or PGKEEP_BACKUP_GLOBALS=1)"
        )


def restore(
    ctx: Context,
    artifact: Artifact,
    options: RestoreOptions,
    confirm: Callable[[RestorePlan], bool] | None = None,
) -> RestoreOutcome:
    """Verify ``artifact`` and (unless dry run, and once confirmed) restore it.

    Before anything changes: the checksum and archive are verified, the
    options checked, the target inspected (it exists or ``create_database``;
    its server has the TOAST compression asked for), and the restoring role's
    rights compared with what the archive needs (owners, extensions). A dry
    run does all of that too, so it fails where the restore would, and stops
    there.
    """
    _check_options(artifact, options)
    toc: list[str] = []
    if _checked_while_loading(artifact, options):
        # The load itself checks every stored byte against the checksum before it
        # commits (or, in parallel, before the target is emptied): reading the whole
        # backup twice would only double the time. The TOC comes from its head.
        if artifact.fmt is DumpFormat.CUSTOM:
            toc = read_toc(artifact, pg_bin_dir=ctx.settings.pg_bin_dir)
        checksum = str(artifact.checksum)
    else:
        checksum = scan(artifact, pg_bin_dir=ctx.settings.pg_bin_dir, toc=toc)
    target = Target.from_url(options.target_url, "--target-url") if options.target_url else ctx.target
    state = _inspect_target(ctx, target, options.toast_compression or ctx.settings.restore_toast_compression)
    exists, has_data, major = state.exists, state.has_data, state.major
    _refuse_what_would_fail(artifact, target, options, state, toc)
    _refuse_without_room(artifact, options, ctx.temp_root())
    plan = RestorePlan(artifact, checksum, target.describe(), state.toast, state.other_sessions)
    if options.dry_run:
        log.info("restore dry run passed", backup_id=artifact.backup_id, target=plan.target)
        return RestoreOutcome("Dry run completed - backup verified, no changes made", checksum, True, plan=plan)
    if confirm is not None and not confirm(plan):
        raise NotConfirmedError("restore cancelled: not confirmed", backup_id=artifact.backup_id)
    where = target.describe()
    ctx.notifier.send(
        "restore.started", f"restore of {artifact.name} into {where} started", backupId=artifact.backup_id, target=where
    )
    log.info("restore started", backup_id=artifact.backup_id, phase="restore", target=where)
    safety_id = None
    terminated = 0
    created = False
    try:
        if options.safety_backup and has_data and not options.selective:
            from pgkeep.services.backup import create_backup

            safety = create_backup(
                ctx, target=target, reason=f"safety backup of {target.dbname} before restoring {artifact.name}"
            )
            safety_id = safety.id
            log.info("safety backup taken", backup_id=safety.id, phase="safety-backup", target=where)
        if options.restore_globals:
            apply_globals(ctx, artifact, target if exists else target.with_dbname("postgres"), major)
        if options.create_database and not exists:
            created = _create_database_if_missing(target)
        if options.selective:
            summary = restore_selective(ctx, artifact, target, options, major, toc)
            message = f"Selective restore into {target.dbname} completed: {summary}"
        elif options.atomic:
            terminated = restore_atomic(ctx, artifact, target, options)
            message = (
                f"Database restored successfully into {target.dbname} (atomic swap; "
                f"{terminated} other sessions were terminated)"
            )
        else:
            restore_into(ctx, artifact, target, options)
            message = f"Database restored successfully into {target.dbname}"
    except BaseException as exc:
        if created:  # nothing of it was there before: do not leave an empty or partial database
            _drop_created_database(target)
        reason = exc.message if isinstance(exc, PgkeepError) else type(exc).__name__
        if safety_id:
            reason += f" (the safety backup {safety_id} holds the previous contents)"
        log.error("restore failed", backup_id=artifact.backup_id, phase="failed", target=where, error=reason)
        ctx.notifier.send(
            "restore.failed",
            f"restore of {artifact.name} into {where} FAILED: {reason}",
            backupId=artifact.backup_id,
            target=where,
            error=reason,
        )
        if isinstance(exc, PgkeepError):
            exc.backup_id = artifact.backup_id
            if safety_id:
                exc.hint = f"the safety backup {safety_id} holds the previous contents"
        raise
    if safety_id:
        message += f"; safety backup of the previous contents: {safety_id}"
    log.info("restore completed", backup_id=artifact.backup_id, phase="completed", target=where)
    ctx.notifier.send(
        "restore.succeeded",
        f"restore of {artifact.name} into {where} succeeded",
        backupId=artifact.backup_id,
        target=where,
    )
    return RestoreOutcome(message, checksum, False, safety_id, terminated, plan)


def _refuse_what_would_fail(
    artifact: Artifact, target: Target, options: RestoreOptions, state: _TargetState, toc: list[str]
) -> None:
    """Everything the restore would fail on that can be known before anything changes: a dry run
    passes only where the restore can (the archive's needs, the role's rights, the target's room)."""
    if state.holds_catalog and not options.selective:
        raise catalog_place.catalog_inside(target, "restore")
    if toc and not options.restore_globals:
        with pgserver.connect(target if state.exists else target.with_dbname("postgres"), operation="restore") as conn:
            needs = summarize(toc)
            missing = missing_extensions(conn, needs)
            problems = privilege_problems(conn, needs, no_owner=options.no_owner)
        if missing and not options.selective:
            raise TargetUnsuitableError(
                "cannot restore, nothing was changed: the backup needs extensions not installed on the target "
                f"server ({target.describe()}): {', '.join(missing)}",
                backup_id=artifact.backup_id,
                hint="install their packages on that server (for its PostgreSQL version), or restore elsewhere",
            )
        if problems:
            raise InsufficientPrivilegeError(
                "cannot restore, nothing was changed: " + "; ".join(problems), backup_id=artifact.backup_id
            )
    if options.selective:
        _check_selection(artifact, target if state.exists else None, options, toc)
    elif state.has_data and not options.atomic:
        _check_can_empty(artifact, target)
    if not state.exists and not options.create_database:
        raise RestoreFailedError(
            f"database {target.dbname} does not exist on {target.describe()}",
            hint="create it first or pass --create-db",
        )
    if not state.exists or options.atomic:  # both create a database
        what = "an atomic restore" if options.atomic else f"restoring into the new database {target.dbname}"
        with pgserver.connect(target.with_dbname("postgres"), operation="restore") as conn:
            require_createdb(conn, target, what)


def _refuse_without_room(artifact: Artifact, options: RestoreOptions, temp_dir: Path) -> None:
    """A restore that stages the uncompressed archive (directory format, parallel or selective)
    needs that much room in PGKEEP_TEMP_DIR: say so before anything changes, not half-way."""
    stages = artifact.fmt is DumpFormat.DIRECTORY or (
        artifact.fmt is DumpFormat.CUSTOM and (options.jobs > 1 or options.selective)
    )
    if not stages or not artifact.raw_size:
        return
    free = shutil.disk_usage(temp_dir).free
    if free < artifact.raw_size:
        raise RestoreFailedError(
            f"cannot restore, nothing was changed: this restore stages the uncompressed archive "
            f"({human_bytes(artifact.raw_size)}) in {temp_dir}, which has {human_bytes(free)} free",
            backup_id=artifact.backup_id,
            hint="free space there, point PGKEEP_TEMP_DIR at a larger disk, or restore a custom-format "
            "backup without --jobs (it streams)",
        )


def _check_selection(artifact: Artifact, target: Target | None, options: RestoreOptions, toc: list[str]) -> None:
    """What a selective restore asks for is in the backup, and has room in the target (dry runs too)."""
    missing = missing_from_archive(toc, [parse_table(t) for t in options.tables], list(options.schemas))
    if missing:
        raise InvalidRequestError(
            f"not in the backup, nothing was changed: {', '.join(missing)}",
            backup_id=artifact.backup_id,
            hint="names are case-sensitive and default to schema public; `pg_restore --list` shows an archive's tables",
        )
    if target is not None:
        with pgserver.connect(target, operation="restore") as conn:
            refuse_selection_conflicts(conn, options)


def _check_can_empty(artifact: Artifact, target: Target) -> None:
    """An in-place restore drops everything in the target first: the role must be allowed to."""
    with pgserver.connect(target, operation="restore") as conn:
        blocked = undroppable(conn)
        user = conn.info.user
    if blocked:
        raise InsufficientPrivilegeError(
            f"cannot restore, nothing was changed: role {user} cannot empty {target.dbname} first, "
            f"it may not drop what it does not own: {named(blocked)}",
            backup_id=artifact.backup_id,
            hint="restore as the objects' owner or a superuser, or into another database (--target-url, --create-db)",
        )


def _checked_while_loading(artifact: Artifact, options: RestoreOptions) -> bool:
    """Whether the restore checks the stored bytes before anything is committed, so no
    separate verification pass is needed first: see :func:`checked_while_loading`, for
    a whole-database restore (selective restores read the archive their way)."""
    return not options.dry_run and checked_while_loading(artifact) and not options.selective


@dataclass(frozen=True)
class _TargetState:
    exists: bool
    has_data: bool  # holds any user object
    major: int  # server major version
    toast: str | None  # the TOAST compression the restore will set
    other_sessions: int = 0  # other client sessions connected to it
    holds_catalog: bool = False  # pgkeep's own catalog is in it


def _inspect_target(ctx: Context, target: Target, toast: ToastCompression) -> _TargetState:
    """The target database as the restore will find it.

    Refuses, before anything changes, a standby (read-only) and a TOAST
    compression the server lacks.
    """
    try:
        conn = pgserver.connect(target, operation="restore")
    except PgkeepError:
        # Maybe only the database is missing: ask the server.
        with pgserver.connect(target.with_dbname("postgres"), operation="restore") as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.dbname,)).fetchone()
            if found:
                raise
            _refuse_standby(conn, target)
            method = session_method(toast, read_server_toast(conn))
            return _TargetState(False, False, pgserver.server_major(conn), method)
    with conn:
        _refuse_standby(conn, target)
        method = session_method(toast, read_server_toast(conn))
        return _TargetState(
            True,
            pgserver.has_user_objects(conn),
            pgserver.server_major(conn),
            method,
            pgserver.other_sessions(conn),
            catalog_place.holds_catalog(ctx, conn),
        )


def _refuse_standby(conn: psycopg.Connection, target: Target) -> None:
    if pgserver.in_recovery(conn):
        raise TargetUnsuitableError(
            f"cannot restore into {target.describe()}: the server is a standby (in recovery), read-only",
            hint="restore into the primary (--target-url, or DATABASE_URL pointing at it); "
            "backups may still be taken from the standby",
        )


def _create_database_if_missing(target: Target) -> bool:
    """Create the target database unless it exists; whether this call created it."""
    maintenance = target.with_dbname("postgres")
    with pgserver.connect(maintenance, operation="restore") as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.dbname,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.dbname)))
        except psycopg.Error as exc:
            raise RestoreFailedError(
                f"cannot create database {target.dbname}: {str(exc).strip()}",
                hint="the restoring role needs CREATEDB, or create the database first",
            ) from None
        return True


def _drop_created_database(target: Target) -> None:
    with contextlib.suppress(Exception), pgserver.connect(target.with_dbname("postgres"), operation="restore") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target.dbname)))


def restore_into(ctx: Context, artifact: Artifact, target: Target, options: RestoreOptions) -> None:
    """Replace ``target``'s contents with ``artifact`` (no verification pass, no notifications)."""
    with pgserver.connect(target, operation="restore") as conn:
        major = pgserver.server_major(conn)
        clear_sql = clear_database_sql(conn)
        toast = toast_choice(ctx, conn, options)
    bin_dir = ctx.settings.pg_bin_dir
    psql = find_tool("psql", major, bin_dir)
    restore_tool = pg_restore_for(artifact, bin_dir) if artifact.fmt is not DumpFormat.PLAIN else None
    # Emptying the target takes every table exclusively: a session using one (an application's
    # open transaction) would hold the restore up for good, and every query behind it.
    lock_wait = ctx.settings.lock_wait_timeout
    lock_ms = timeout_ms(lock_wait)
    try:
        # pg_restore 17+ sends SET transaction_timeout on its own connections, which
        # an older server rejects; only the script path can filter it out, so such
        # a restore runs as one transaction instead of in parallel.
        if restore_tool is not None and options.jobs > 1 and not _sends_unknown_settings(restore_tool, major):
            # pg_restore's workers open their own sessions
            wanted = {TOAST_SETTING: toast, "lock_timeout": None if lock_ms is None else str(lock_ms)}
            settings = {name: value for name, value in wanted.items() if value is not None}
            _restore_parallel(ctx, artifact, target.with_session_settings(**settings), options, restore_tool, clear_sql)
            return
        # The one session's script starts with them (poolers reject startup options).
        prelude = (set_statement(toast) if toast else "") + (f"SET lock_timeout = {lock_ms};\n" if lock_ms else "")
        _restore_single_transaction(ctx, artifact, target, options, psql, restore_tool, prelude + clear_sql, major)
    except RestoreFailedError as exc:
        if "canceling statement due to lock timeout" not in exc.message:
            raise
        holders = pgserver.lock_holders(target)
        held = f"; sessions holding its tables: {'; '.join(holders)}" if holders else ""
        raise RestoreFailedError(
            f"{exc.message.rstrip('.')} (waited {lock_wait:g} s for a table of {target.dbname} another session "
            f"uses){held}",
            hint="stop the application's sessions on that database (or restore with --atomic, which ends them) "
            "and restore again; PGKEEP_LOCK_WAIT_TIMEOUT sets the wait (0: forever)",
        ) from None


def _sends_unknown_settings(tool: Tool, server_major: int) -> bool:
    return tool.major >= 17 > server_major


def _restore_single_transaction(
    ctx: Context,
    artifact: Artifact,
    target: Target,
    options: RestoreOptions,
    psql: Tool,
    pg_restore: Tool | None,
    clear_sql: str,
    server_major: int,
) -> None:
    reader = artifact.reader()
    staging: Path | None = None
    children: list[Child] = []
    try:
        with client_env(target) as env:
            stored = artifact.decoded(reader.chunks())
            archive: Path | None = None
            if artifact.fmt is DumpFormat.DIRECTORY:
                staging = Path(tempfile.mkdtemp(prefix="restore-", dir=ctx.temp_root()))
                archive = extract_tar(stored, staging / "dump")
                reader.drain()
            if pg_restore is not None and not _sends_unknown_settings(pg_restore, server_major):
                script_argv = pg_restore_script_argv(
                    pg_restore, archive, no_owner=options.no_owner, no_acl=options.no_acl
                )
                _load_direct(
                    artifact,
                    reader,
                    stored,
                    archive,
                    psql_argv(psql, target),
                    script_argv,
                    clear_sql,
                    env,
                    target,
                    children,
                )
            else:
                _load_relay(
                    artifact,
                    reader,
                    stored,
                    archive,
                    psql_argv(psql, target),
                    pg_restore,
                    options,
                    clear_sql,
                    server_major,
                    env,
                    target,
                    children,
                )
    except BaseException as exc:
        for child in reversed(children):
            child.kill()
        if isinstance(exc, VerificationError):
            explain_damage(artifact, reader, exc)
        elif isinstance(exc, RestoreFailedError):
            explain_failed_load(artifact, reader, exc)
        raise
    finally:
        reader.close()
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _load_direct(
    artifact: Artifact,
    reader: HashingReader,
    stored: Iterator[bytes],
    archive: Path | None,
    psql_args: list[str],
    script_argv: list[str],
    clear_sql: str,
    env: dict[str, str],
    target: Target,
    children: list[Child],
) -> None:
    """pg_restore's script goes straight into psql through a pipe pgkeep also holds open.

    The script never passes through this process (a gigabyte of SQL copied twice
    less). The commit is still gated on the checksum: psql sees the end of its
    input, and COMMITs, only when pgkeep closes its own write end of the pipe,
    after the stored bytes matched. On any failure psql is killed first, with
    the pipe still open, so it can only roll back.
    """
    read_end, gate = os.pipe()
    try:
        enlarge_pipe_fd(gate)
        try:
            loader = Child(psql_args, env=env, stdin=read_end, stdout=subprocess.DEVNULL, scrub=target.scrub)
        finally:
            os.close(read_end)
        children.append(loader)
        stopped = not _write_fd(gate, clear_sql.encode())
        if not stopped:
            script_child = Child(
                script_argv,
                env=env,
                stdin=subprocess.PIPE if archive is None else subprocess.DEVNULL,
                stdout=gate,
            )
            children.append(script_child)
            if archive is None:
                stdin = script_child.proc.stdin
                assert stdin is not None
                try:
                    for chunk in stored:
                        stdin.write(chunk)
                    stdin.close()
                except BrokenPipeError:
                    pass  # pg_restore stopped (psql's error stopped it, or its own): see below
            script_rc = script_child.wait()
            script_failure = script_child.failure(script_rc)
            if script_rc == -signal.SIGPIPE:
                # Only psql reads pg_restore's output: it closed it, so it is exiting. Its exit
                # closes the pipe before its status can be collected, so wait for that status
                # (pg_restore's SIGPIPE may be seen first): psql's error is the cause.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    loader.proc.wait(timeout=SIGPIPE_GRACE_S)
            # pg_restore's output is read only by psql: if psql has exited, its error is the cause.
            stopped = loader.proc.poll() is not None
            if script_failure and not stopped:
                raise RestoreFailedError(f"restore failed, nothing was changed: {script_failure}")
        if not stopped:
            reader.drain()
            check_digest(artifact, reader)  # raises with psql still waiting: it is killed, never commits
            os.close(gate)  # psql sees the end of its input and COMMITs
            gate = -1
        failure = loader.failure(loader.wait())
        if failure is None and gate >= 0:
            failure = "psql ended before the end of its input"  # cannot happen: psql reads to the end
        if failure:
            raise _rolled_back(failure)
    finally:
        if gate >= 0:
            if children:
                children[0].kill()  # never let psql see a clean end of input after a failure
            os.close(gate)


def _rolled_back(failure: str) -> RestoreFailedError:
    return RestoreFailedError(f"restore failed, nothing was changed (the transaction was rolled back): {failure}")


def _write_fd(fd: int, data: bytes) -> bool:
    """Write all of ``data``; False if the reader has gone away."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        return False
    return True


def _load_relay(
    artifact: Artifact,
    reader: HashingReader,
    stored: Iterator[bytes],
    archive: Path | None,
    psql_args: list[str],
    pg_restore: Tool | None,
    options: RestoreOptions,
    clear_sql: str,
    server_major: int,
    env: dict[str, str],
    target: Target,
    children: list[Child],
) -> None:
    """The script passes through pgkeep on its way to psql: a plain dump (it is the stored
    data), or a newer pg_restore's script whose preamble an older server must not see."""
    loader = Child(psql_args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, scrub=target.scrub)
    children.append(loader)
    feeder_error: list[BaseException] = []
    feeder = None
    if pg_restore is None:
        script: Iterator[bytes] = stored
    else:
        script_child = Child(
            pg_restore_script_argv(pg_restore, archive, no_owner=options.no_owner, no_acl=options.no_acl),
            env=env,
            stdin=subprocess.PIPE if archive is None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        children.append(script_child)
        if archive is None:
            feeder = threading.Thread(target=_feed, args=(stored, script_child, feeder_error), daemon=True)
            feeder.start()
        script = _read_pipe(script_child)
    assert loader.proc.stdin is not None
    psql_stopped = False
    try:
        loader.proc.stdin.write(clear_sql.encode())
        for chunk in adapt_for_server(script, server_major):
            loader.proc.stdin.write(chunk)
    except BrokenPipeError:
        psql_stopped = True  # psql stopped on an error; its stderr says which
    if psql_stopped:
        for child in children[1:]:
            child.kill()  # nobody reads its output any more
    if feeder is not None:
        feeder.join()
    if feeder_error:
        raise feeder_error[0]
    if not psql_stopped:
        for child in children[1:]:
            failure = child.failure(child.wait())
            if failure:
                raise RestoreFailedError(f"restore failed, nothing was changed: {failure}")
        reader.drain()
        # Only now may psql see the end of its input and COMMIT.
        check_digest(artifact, reader)
        with contextlib.suppress(BrokenPipeError):
            loader.proc.stdin.close()
    failure = loader.failure(loader.wait())
    if failure:
        raise _rolled_back(failure)


def _feed(data: Iterator[bytes], child: Child, errors: list[BaseException]) -> None:
    stdin = child.proc.stdin
    assert stdin is not None
    try:
        for chunk in data:
            stdin.write(chunk)
    except BrokenPipeError:
        pass
    except BaseException as exc:  # VerificationError from a corrupt stream
        errors.append(exc)
        child.kill()
    finally:
        with contextlib.suppress(OSError):
            stdin.close()


def _read_pipe(child: Child) -> Iterator[bytes]:
    stdout = child.proc.stdout
    assert stdout is not None
    while True:
        chunk = stdout.read(COPY_CHUNK)
        if not chunk:
            return
        yield chunk


def _restore_parallel(
    ctx: Context,
    artifact: Artifact,
    target: Target,
    options: RestoreOptions,
    pg_restore: Tool,
    clear_sql: str,
) -> None:
    staging = Path(tempfile.mkdtemp(prefix="restore-", dir=ctx.temp_root()))
    try:
        archive = stage_archive(artifact, staging)
        with pgserver.connect(target, operation="restore") as conn:
            try:
                with conn.transaction():
                    conn.execute(clear_sql)
            except psycopg.Error as exc:
                raise RestoreFailedError(
                    f"could not empty {target.dbname} before the restore: {str(exc).strip()}"
                ) from None
        with client_env(target) as env:
            child = Child(
                pg_restore_parallel_argv(
                    pg_restore,
                    target,
                    archive,
                    jobs=options.jobs,
                    no_owner=options.no_owner,
                    no_acl=options.no_acl,
                ),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                scrub=target.scrub,
            )
            try:
                failure = child.failure(child.wait())
            except BaseException:
                child.kill()
                raise
        if failure:
            raise RestoreFailedError(
                f"parallel restore failed; {target.dbname} is incomplete: {failure}",
                hint="restore again without --jobs for an all-or-nothing restore",
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
