"""Taking a logical backup: pg_dump -> compress -> (encrypt) -> hash -> storage -> catalog.

Write ordering (see docs/design.md): the advisory lock is taken before any
catalog row exists (a refused attempt leaves no row); the artifact is
durably committed under its final name and its checksum known, then its
manifest is written, and only then does the row say COMPLETED; any failure
removes what the backup stored and marks the row FAILED with the cause.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

import psycopg

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, BackupType, DatabaseBackup, utcnow
from pgkeep.config import Compression, DumpFormat
from pgkeep.errors import BackupFailedError, BackupInProgressError, PgkeepError, Terminated
from pgkeep.observability.logs import get_logger
from pgkeep.pgtools import server as pgserver
from pgkeep.pgtools.binaries import Tool, find_tool
from pgkeep.pgtools.commands import pg_dump_argv
from pgkeep.pgtools.conninfo import Target, client_env
from pgkeep.pgtools.process import Child
from pgkeep.pipeline import crypto
from pgkeep.pipeline.codecs import compressor, suffix
from pgkeep.pipeline.stream import CompressingSink, pump
from pgkeep.services import catalog_place
from pgkeep.services.artifacts import PLAIN_TRAILER
from pgkeep.services.context import Context
from pgkeep.services.manifest import (
    CLEANUP_PENDING,
    globals_name,
    manifest_for,
    remove_backup_files,
    write_manifest,
)
from pgkeep.services.recovery import recover_interrupted
from pgkeep.storage import ObjectWriter, Storage

log = get_logger("pgkeep.backup")
CATALOG_PROGRESS_EVERY_S = 1.0
_FORMAT_EXT = {DumpFormat.CUSTOM: ".dump", DumpFormat.PLAIN: ".sql", DumpFormat.DIRECTORY: ".dir.tar"}


@dataclass(frozen=True)
class BackupResult:
    """The spec's ``BackupResult``."""

    id: str
    filename: str
    size: int
    checksum: str
    duration: int  # milliseconds
    storage_url: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "filename": self.filename,
            "size": self.size,
            "checksum": self.checksum,
            "duration": self.duration,
            "storageUrl": self.storage_url,
        }


def filename_timestamp(when: datetime) -> str:
    """The spec's ``toISOString().replace(/[:.]/g, '-')``: 2026-11-26T02-00-00-000Z."""
    return when.strftime("%Y-%m-%dT%H-%M-%S-") + f"{when.microsecond // 1000:03d}Z"


def sanitize_prefix(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._-")
    return cleaned or "db"


def artifact_extension(fmt: DumpFormat, compression: Compression, encrypted: bool = False) -> str:
    age = crypto.SUFFIX if encrypted else ""
    if fmt is DumpFormat.PLAIN and compression is Compression.GZIP:
        return ".sql.gz" + age  # the spec's own name
    return _FORMAT_EXT[fmt] + suffix(compression) + age


def create_backup(
    ctx: Context,
    *,
    backup_type: BackupType = BackupType.MANUAL,
    fmt: DumpFormat | None = None,
    compression: Compression | None = None,
    jobs: int = 1,
    created_by_id: str | None = None,
    progress: Callable[[int], None] | None = None,
    storage: Storage | None = None,
    on_started: Callable[[str], None] | None = None,
    target: Target | None = None,
    reason: str | None = None,
    include_globals: bool | None = None,
) -> BackupResult:
    """Take one backup of the configured database (or ``target``). Raises a PgkeepError on failure.

    ``on_started`` receives the new row's id once it exists (the API uses it
    to answer 202 before the dump ends). ``reason`` is recorded in the
    metadata (e.g. a safety backup before a restore). ``include_globals``
    also stores ``pg_dumpall --globals-only`` (roles, tablespaces) beside it.
    """
    settings = ctx.settings
    target = target or ctx.target
    include_globals = settings.backup_globals if include_globals is None else include_globals
    storage = storage or ctx.storage
    fmt = fmt or settings.default_format
    compression = compression or settings.default_compression
    started = utcnow()
    t0 = time.monotonic()
    prefix = settings.backup_prefix or sanitize_prefix(target.dbname)
    stamp = filename_timestamp(started)
    recipients = tuple(ctx.age_recipients)
    ext = artifact_extension(fmt, compression, encrypted=bool(recipients))

    def make_name(n: int) -> str:
        return f"{prefix}-backup-{backup_type.value.lower()}-{stamp}{f'-{n}' if n else ''}{ext}"

    base_row: dict[str, Any] = {
        "type": backup_type,
        "started_at": started,
        "expires_at": started + timedelta(days=settings.retention_days(backup_type.value)),
        "created_by_id": created_by_id,
        "database_name": target.dbname,
        "format": fmt.value,
        "compression": compression.value,
        "encryption": crypto.ENCRYPTION if recipients else None,
        "size": 0,
        "bytes_written": 0,
        "keep": False,
    }

    def insert(status: BackupStatus, **extra: Any) -> DatabaseBackup:
        with ctx.catalog.session() as session:
            row = DatabaseBackup(status=status, **base_row, **extra)
            return repo.insert_unique(session, row, make_name)

    def refuse_before_start(exc: PgkeepError) -> BackupFailedError:
        row = insert(
            BackupStatus.FAILED,
            error_message=exc.message,
            completed_at=utcnow(),
            duration_ms=int((time.monotonic() - t0) * 1000),
        )
        if on_started:
            on_started(row.id)
        _report_failure(ctx, row, exc.message)
        failed = _failed(exc.message, row.id, exc.hint)
        # Keep the documented exit code of the cause (6 for an unusable pg_dump).
        failed.exit_code = exc.exit_code
        return failed

    try:
        conn = pgserver.connect(target, operation="backup")
    except PgkeepError as exc:
        raise refuse_before_start(exc) from None

    with conn:
        try:
            if catalog_place.holds_catalog(ctx, conn):
                raise catalog_place.catalog_inside(target, "backup")
            tool = find_tool("pg_dump", pgserver.server_major(conn), settings.pg_bin_dir)
        except PgkeepError as exc:
            raise refuse_before_start(exc) from None
        if not pgserver.try_backup_lock(conn):
            raise BackupInProgressError(
                f"a backup of {target.dbname} is already in progress",
                operation="backup",
                hint="wait for it to finish; `pgkeep list --status IN_PROGRESS` shows it",
            )
        # Holding the lock, any other IN_PROGRESS row of this database is a dead process's:
        # settle it now (cron users run no worker, whose start would otherwise do it).
        _settle_interrupted(ctx, target)
        row = insert(
            BackupStatus.IN_PROGRESS,
            # Who holds the lock: crash recovery checks this session is gone
            # before it declares the backup dead.
            metadata_={"lockBackendPid": conn.info.backend_pid, "host": socket.gethostname(), "pid": os.getpid()},
            server_version=pgserver.server_version_text(conn),
            pg_dump_version=tool.version,
        )
        # From here the row exists: whatever stops the backup (SIGTERM included) marks it FAILED.
        try:
            # The URL names the final filename (a same-millisecond clash may have
            # added a suffix): crash recovery finds partial files through it.
            with ctx.catalog.session() as session:
                row = repo.update_backup(session, row.id, storage_url=storage.url_for(row.filename))
            log.info(
                "backup started",
                backup_id=row.id,
                type=backup_type.value,
                phase="dump",
                file=row.filename,
                target=target.describe(),
                format=fmt.value,
                compression=compression.value,
            )
            if on_started:
                on_started(row.id)
            job = _Job(
                target, tool, row, fmt, compression, jobs, storage, progress, t0, reason, include_globals, recipients
            )
            return _run(ctx, conn, job)
        except BaseException as exc:
            message = describe_failure(exc)
            with contextlib.suppress(Exception), ctx.catalog.session() as session:
                repo.update_backup(
                    session,
                    row.id,
                    status=BackupStatus.FAILED,
                    error_message=message,
                    completed_at=utcnow(),
                    duration_ms=int((time.monotonic() - t0) * 1000),
                )
            _report_failure(ctx, row, message)
            if isinstance(exc, Exception):
                hint = exc.hint if isinstance(exc, PgkeepError) else None
                raise _failed(message, row.id, hint) from None
            raise


def _settle_interrupted(ctx: Context, target: Target) -> None:
    if target.dbname != ctx.target.dbname:
        return  # crash recovery looks at the configured database's rows
    try:
        recover_interrupted(ctx)  # it logs what it settled
    except PgkeepError as exc:
        log.warning("crash recovery skipped", error=exc.message)


def _discard(ctx: Context, storage: Storage, row: DatabaseBackup) -> None:
    """Remove whatever a failed backup stored (partial uploads, a committed artifact, companions).

    If the storage cannot be reached (that may be why the backup failed), the
    row is flagged so that crash recovery and cleanup finish the job later.
    """
    try:
        remove_backup_files(storage, row.filename)
    except PgkeepError as exc:
        log.warning("could not remove the files of a failed backup", backup_id=row.id, error=exc.message)
        with contextlib.suppress(Exception), ctx.catalog.session() as session:
            current = repo.get_backup(session, row.id)
            repo.update_backup(session, row.id, metadata_={**(current.metadata_ or {}), CLEANUP_PENDING: True})


def _report_failure(ctx: Context, row: DatabaseBackup, message: str) -> None:
    log.error("backup failed", backup_id=row.id, type=row.type.value, phase="failed", error=message)
    ctx.notifier.send(
        "backup.failed",
        f"backup {row.filename} of {row.database_name} FAILED: {message}",
        backupId=row.id,
        type=row.type.value,
        database=row.database_name,
        error=message,
    )


def encryption_metadata(recipients: Any) -> dict[str, Any]:
    """What the catalog and manifest say about an encrypted backup: format and key fingerprints."""
    return {"format": crypto.ENCRYPTION, "recipients": [crypto.fingerprint(str(r)) for r in recipients]}


def completion_values(
    row: DatabaseBackup, storage: Storage, sink: CompressingSink, checksum: str, metadata: dict[str, Any], duration: int
) -> dict[str, Any]:
    """The row's values once its artifact is committed: what makes it COMPLETED."""
    return {
        "status": BackupStatus.COMPLETED,
        "size": sink.stored_bytes,
        "bytes_written": sink.stored_bytes,
        "checksum": checksum,
        "metadata_": metadata,
        "completed_at": utcnow(),
        "duration_ms": duration,
        "storage_url": storage.url_for(row.filename),
    }


def _failed(message: str, backup_id: str, hint: str | None) -> BackupFailedError:
    return BackupFailedError(f"backup failed: {message}", operation="backup", backup_id=backup_id, hint=hint)


def describe_failure(exc: BaseException) -> str:
    """The cause of a failed backup, for its row's error_message (never a password)."""
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    if isinstance(exc, PgkeepError):
        return exc.message
    if isinstance(exc, psycopg.Error):
        return f"database error: {str(exc).strip()}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _Job:
    target: Target
    tool: Tool
    row: DatabaseBackup
    fmt: DumpFormat
    compression: Compression
    jobs: int
    storage: Storage
    progress: Callable[[int], None] | None
    t0: float
    reason: str | None
    include_globals: bool
    recipients: tuple[crypto.Recipient, ...] = ()


def _run(ctx: Context, conn: psycopg.Connection, job: _Job) -> BackupResult:
    target, row, storage, progress = job.target, job.row, job.storage, job.progress
    snapshot = pgserver.export_snapshot(conn)
    db_size = pgserver.database_size(conn)
    last_catalog = [0.0]

    def on_progress(nbytes: int) -> None:
        if progress:
            progress(nbytes)
        now = time.monotonic()
        if now - last_catalog[0] >= CATALOG_PROGRESS_EVERY_S:
            last_catalog[0] = now
            with contextlib.suppress(Exception), ctx.catalog.session() as session:
                repo.update_backup(session, row.id, bytes_written=nbytes)

    # Counting scans every table: it runs beside pg_dump, in the same snapshot,
    # so the counts describe exactly the dumped data without doubling the time.
    counter = pgserver.TableCounter(target, snapshot)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgkeep-counts") as pool:
        counts_future: Future[dict[str, int]] = pool.submit(counter.run)
        writer: ObjectWriter | None = None
        try:
            writer = storage.open_writer(row.filename)
            return _store(ctx, conn, job, writer, snapshot, db_size, counts_future, on_progress)
        except BaseException as exc:
            counter.cancel()  # the pool's exit waits for the count: stop it first
            if writer is not None:
                _discard(ctx, storage, row)
            elif not isinstance(exc, Exception):
                # Stopped (SIGTERM, Ctrl-C) while opening it: a partial file of ours may exist,
                # nothing is committed. A refused open (the name taken) stored nothing of ours.
                with contextlib.suppress(Exception):
                    storage.remove_incomplete(row.filename)
            raise


def _store(
    ctx: Context,
    conn: psycopg.Connection,
    job: _Job,
    writer: ObjectWriter,
    snapshot: str,
    db_size: int,
    counts_future: Future[dict[str, int]],
    on_progress: Callable[[int], None],
) -> BackupResult:
    """Dump into ``writer``, commit, write the manifest, mark the row COMPLETED."""
    target, tool, row, fmt, compression, storage = (
        job.target,
        job.tool,
        job.row,
        job.fmt,
        job.compression,
        job.storage,
    )
    sink: CompressingSink | None = None
    try:
        sink = CompressingSink(writer, compressor(compression, ctx.codec_options), on_progress, job.recipients)
        with client_env(target) as env:
            if fmt is DumpFormat.DIRECTORY:
                _dump_directory(ctx, tool, target, env, snapshot, job.jobs, sink)
            else:
                _dump_stream(tool, target, env, fmt, snapshot, sink, ctx.settings.lock_wait_timeout)
        if fmt is DumpFormat.PLAIN and PLAIN_TRAILER not in sink.tail:
            raise BackupFailedError("the plain dump has no end marker: the output is incomplete")
        checksum = sink.finish()
        counts = counts_future.result()
        globals_info = (
            _dump_globals(ctx, conn, target, row.filename, storage, job.recipients) if job.include_globals else None
        )
        writer.commit()
    except BaseException:
        if sink is not None:
            sink.abort()
        writer.abort()
        raise

    duration = int((time.monotonic() - job.t0) * 1000)
    metadata = {
        "kind": "logical",
        "tableCounts": counts,
        "tableCount": len(counts),
        "databaseSize": db_size,
        "uncompressedSize": sink.raw_bytes,
        "serverVersion": row.server_version,
        "pgDumpVersion": tool.version,
        "format": fmt.value,
        "compression": compression.value,
        "durationMs": duration,
        "timestamp": utcnow().isoformat(),
    }
    if job.reason:
        metadata["reason"] = job.reason
    if globals_info:
        metadata["globals"] = globals_info
    if job.recipients:
        metadata["encryption"] = encryption_metadata(job.recipients)
    final = completion_values(row, storage, sink, checksum, metadata, duration)
    for key, value in final.items():
        setattr(row, key, value)  # the detached row, as the catalog is about to hold it
    # The manifest after the artifact, before COMPLETED: a manifest always describes
    # a complete artifact, and a rebuilt catalog never lists one that is not.
    write_manifest(storage, manifest_for(row))
    with ctx.catalog.session() as session:
        done = repo.update_backup(session, row.id, **final)
    log.info(
        "backup completed",
        backup_id=done.id,
        type=done.type.value,
        phase="completed",
        duration_ms=duration,
        size=done.size,
        raw_size=sink.raw_bytes,
        tables=len(counts),
    )
    return BackupResult(done.id, done.filename, done.size, checksum, duration, done.storage_url)


def _dump_globals(
    ctx: Context,
    conn: psycopg.Connection,
    target: Target,
    filename: str,
    storage: Storage,
    recipients: tuple[crypto.Recipient, ...] = (),
) -> dict[str, Any]:
    """Roles and tablespaces (``pg_dumpall --globals-only``), stored beside the backup.

    A role that cannot read pg_authid gets ``--no-role-passwords``; the roles
    are then restored without passwords.
    """
    tool = find_tool("pg_dumpall", pgserver.server_major(conn), ctx.settings.pg_bin_dir)
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    superuser = bool(row and row[0])
    argv = [str(tool.path), f"--dbname={target.conninfo()}", "--no-password", "--globals-only"]
    if not superuser:
        argv.append("--no-role-passwords")
    name = globals_name(filename, encrypted=bool(recipients))
    writer = storage.open_writer(name)
    sink: CompressingSink | None = None
    try:
        # Role password hashes are secrets too: encrypted like the backup itself.
        sink = CompressingSink(writer, compressor(Compression.ZSTD, ctx.codec_options), recipients=recipients)
        with client_env(target) as env:
            failure = _stream_child(argv, env, target, sink)
        if failure:
            raise BackupFailedError(f"saving roles and tablespaces failed: {failure}")
        checksum = sink.finish()
        writer.commit()
    except BaseException:
        if sink is not None:
            sink.abort()
        writer.abort()
        raise
    info: dict[str, Any] = {
        "filename": name,
        "checksum": checksum,
        "size": sink.stored_bytes,
        "rolePasswords": superuser,
    }
    if recipients:
        info["encryption"] = crypto.ENCRYPTION
    return info


def _dump_stream(
    tool: Tool,
    target: Target,
    env: dict[str, str],
    fmt: DumpFormat,
    snapshot: str,
    sink: CompressingSink,
    lock_wait_timeout_s: float,
) -> None:
    argv = pg_dump_argv(tool, target, fmt, snapshot=snapshot, lock_wait_timeout_s=lock_wait_timeout_s)
    failure = _stream_child(argv, env, target, sink)
    if failure:
        raise _dump_failed(failure, target, lock_wait_timeout_s)


def _dump_failed(failure: str, target: Target, lock_wait_timeout_s: float) -> BackupFailedError:
    """pg_dump's failure; a lock it waited too long for is named with the sessions holding tables."""
    table = pgserver.lock_timeout_table(failure)
    if table is None:
        return BackupFailedError(failure)
    holders = pgserver.lock_holders(target, exclusive=True)
    held = f"; exclusive locks: {'; '.join(holders)}" if holders else " (its holder has let go since)"
    return BackupFailedError(
        f"pg_dump waited {lock_wait_timeout_s:g} s for a lock on {table} and gave up{held}",
        hint="let that session finish (or end it: SELECT pg_terminate_backend(pid)) and back up again; "
        "PGKEEP_LOCK_WAIT_TIMEOUT sets the wait (0: forever)",
    )


def _stream_child(argv: list[str], env: dict[str, str], target: Target, sink: CompressingSink) -> str | None:
    """Run a client whose stdout is the data, pumped into ``sink``; return its failure, if any.

    The child is killed if anything goes wrong on our side (storage, Ctrl-C).
    """
    child = Child(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, scrub=target.scrub)
    try:
        assert child.proc.stdout is not None
        pump(child.proc.stdout, sink)
        rc = child.wait()
    except BaseException:
        child.kill()
        raise
    return child.failure(rc)


def _dump_directory(
    ctx: Context,
    tool: Tool,
    target: Target,
    env: dict[str, str],
    snapshot: str,
    jobs: int,
    sink: CompressingSink,
) -> None:
    """pg_dump -Fd -j N into a private staging dir, then one tar stream as the artifact."""
    staging = Path(tempfile.mkdtemp(prefix="dump-", dir=ctx.temp_root()))
    try:
        out_dir = staging / "dump"
        child = Child(
            pg_dump_argv(
                tool,
                target,
                DumpFormat.DIRECTORY,
                snapshot=snapshot,
                jobs=jobs,
                out_dir=out_dir,
                lock_wait_timeout_s=ctx.settings.lock_wait_timeout,
            ),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            scrub=target.scrub,
        )
        try:
            rc = child.wait()
        except BaseException:
            child.kill()
            raise
        failure = child.failure(rc)
        if failure:
            raise _dump_failed(failure, target, ctx.settings.lock_wait_timeout)
        with tarfile.open(fileobj=cast(IO[bytes], sink), mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(out_dir.iterdir()):
                tar.add(path, arcname=path.name, recursive=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
