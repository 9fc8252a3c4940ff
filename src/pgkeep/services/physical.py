"""Taking a physical backup: pg_basebackup (tar) -> compress -> (encrypt) -> hash -> storage -> catalog.

The same write ordering as logical backups (services/backup.py): the
advisory lock before any row; the artifact committed and its checksum known,
then PostgreSQL's ``backup_manifest`` stored beside it, then pgkeep's own
manifest, and only then the row says COMPLETED. pg_basebackup runs with
``-X none`` and returns only once the server has archived every WAL segment
the backup needs, so a COMPLETED physical backup is restorable from the
archive.

Times that decide which backup a point-in-time restore may use are read
from the *server's* clock, just before pg_basebackup starts and just after
it ends: ``backup_end_at`` is never earlier than the real end of the backup,
so a restore never picks a backup that is not yet consistent at its target.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import select

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import PHYSICAL, BackupStatus, BackupType, DatabaseBackup, utcnow
from pgkeep.config import Compression
from pgkeep.errors import (
    BackupFailedError,
    BackupInProgressError,
    InvalidRequestError,
    PgkeepError,
    VerificationError,
)
from pgkeep.observability.logs import get_logger
from pgkeep.pgtools import server as pgserver
from pgkeep.pgtools.archiver import read_archiver
from pgkeep.pgtools.binaries import Tool, find_tool
from pgkeep.pgtools.conninfo import Target, client_env
from pgkeep.pgtools.physical import (
    ClusterInfo,
    PhysicalBackupRefusedError,
    basebackup_argv,
    check_can_back_up,
    cluster_info,
    read_position,
)
from pgkeep.pgtools.process import Child
from pgkeep.pipeline import codecs, crypto
from pgkeep.pipeline.codecs import compressor, suffix
from pgkeep.pipeline.stream import CHUNK, CompressingSink
from pgkeep.pipeline.tarsniff import TarSniffer
from pgkeep.services.backup import (
    BackupResult,
    completion_values,
    describe_failure,
    encryption_metadata,
    filename_timestamp,
    sanitize_prefix,
)
from pgkeep.services.context import Context
from pgkeep.services.manifest import PG_MANIFEST_SUFFIX, manifest_for, remove_backup_files, write_manifest
from pgkeep.storage import Storage, locate
from pgkeep.storage.base import iter_chunks
from pgkeep.wal.naming import parse_lsn, segment_of_lsn

KIND = PHYSICAL
FORMAT = "tar"
log = get_logger("pgkeep.physical")
CATALOG_PROGRESS_EVERY_S = 1.0


def pg_manifest_name(filename: str) -> str:
    """PostgreSQL's backup_manifest, stored beside the artifact.

    Compressed but never encrypted: an incremental backup needs its parent's
    manifest, and a server that takes backups holds no private key. It
    lists file names, sizes and CRC-32C checksums, no data.
    """
    return filename + PG_MANIFEST_SUFFIX


def artifact_extension(compression: Compression, encrypted: bool) -> str:
    return ".base.tar" + suffix(compression) + (crypto.SUFFIX if encrypted else "")


def create_physical_backup(
    ctx: Context,
    *,
    backup_type: BackupType = BackupType.FULL,
    compression: Compression | None = None,
    created_by_id: str | None = None,
    progress: Callable[[int], None] | None = None,
    storage: Storage | None = None,
    on_started: Callable[[str], None] | None = None,
    target: Target | None = None,
) -> BackupResult:
    """Take a base backup of the cluster of DATABASE_URL (``INCREMENTAL``: on PostgreSQL 17+).

    Raises a PgkeepError on failure; a refusal found before pg_basebackup
    starts (archiving off, no REPLICATION, an old server for INCREMENTAL)
    leaves no row.
    """
    settings = ctx.settings
    target = target or ctx.target
    storage = storage or ctx.storage
    compression = compression or settings.default_compression
    incremental = backup_type is BackupType.INCREMENTAL
    recipients = tuple(ctx.age_recipients)
    started = utcnow()
    t0 = time.monotonic()
    prefix = settings.backup_prefix or sanitize_prefix(target.dbname)
    stamp = filename_timestamp(started)
    ext = artifact_extension(compression, bool(recipients))

    def make_name(n: int) -> str:
        return f"{prefix}-backup-{backup_type.value.lower()}-{stamp}{f'-{n}' if n else ''}{ext}"

    conn = pgserver.connect(target, operation="backup")
    with conn:
        info = cluster_info(conn)
        check_can_back_up(info, incremental=incremental)
        # pg_basebackup waits, without end or word, for its last WAL segment to be archived.
        archiving = read_archiver(conn)
        if archiving.failing:
            raise PhysicalBackupRefusedError(
                f"physical backups need working WAL archiving: {archiving.problems[0]}",
                hint="fix archive_command (the server log says why); `pgkeep archive status --server` "
                "shows when WAL leaves pg_wal again",
            )
        tool = find_tool("pg_basebackup", info.major, settings.pg_bin_dir)
        parent = _parent(ctx, info) if incremental else None
        if not pgserver.try_backup_lock(conn):
            raise BackupInProgressError(
                f"a backup of {target.dbname} is already in progress",
                operation="backup",
                hint="wait for it to finish; `pgkeep list --status IN_PROGRESS` shows it",
            )
        row = DatabaseBackup(
            status=BackupStatus.IN_PROGRESS,
            type=backup_type,
            kind=KIND,
            started_at=started,
            expires_at=started + timedelta(days=settings.retention_days(backup_type.value)),
            created_by_id=created_by_id,
            database_name=target.dbname,
            format=FORMAT,
            compression=compression.value,
            encryption=crypto.ENCRYPTION if recipients else None,
            size=0,
            bytes_written=0,
            keep=False,
            parent_id=parent.id if parent else None,
            server_version=pgserver.server_version_text(conn),
            metadata_={"lockBackendPid": conn.info.backend_pid, "host": socket.gethostname(), "pid": os.getpid()},
        )
        with ctx.catalog.session() as session:
            row = repo.insert_unique(session, row, make_name)
            row = repo.update_backup(session, row.id, storage_url=storage.url_for(row.filename))
        log.info(
            "backup started",
            backup_id=row.id,
            type=backup_type.value,
            kind=KIND,
            phase="basebackup",
            filename=row.filename,
            target=target.describe(),
            compression=compression.value,
        )
        if on_started:
            on_started(row.id)
        try:
            job = _Job(target, tool, row, info, compression, storage, progress, t0, recipients, parent)
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
            log.error(
                "backup failed", backup_id=row.id, type=backup_type.value, kind=KIND, phase="failed", error=message
            )
            ctx.notifier.send(
                "backup.failed",
                f"backup {row.filename} of {row.database_name} FAILED: {message}",
                backupId=row.id,
                type=backup_type.value,
                database=row.database_name,
                error=message,
            )
            if isinstance(exc, Exception):
                hint = exc.hint if isinstance(exc, PgkeepError) else None
                raise BackupFailedError(
                    f"backup failed: {message}", operation="backup", backup_id=row.id, hint=hint
                ) from None
            raise


def _parent(ctx: Context, info: ClusterInfo) -> DatabaseBackup:
    """The base of an incremental backup: the newest COMPLETED physical backup of this cluster."""
    with ctx.catalog.session() as session:
        rows = session.scalars(
            select(DatabaseBackup)
            .where(DatabaseBackup.kind == KIND, DatabaseBackup.status == BackupStatus.COMPLETED)
            .order_by(DatabaseBackup.started_at.desc())
        ).all()
    for row in rows:
        if (row.metadata_ or {}).get("systemIdentifier") == info.system_identifier:
            return row
    raise InvalidRequestError(
        "an incremental backup needs an earlier physical backup of this cluster, and the catalog has none",
        operation="backup",
        hint="take a full one first: pgkeep backup --kind physical --type full",
    )


@dataclass(frozen=True)
class _Job:
    target: Target
    tool: Tool
    row: DatabaseBackup
    info: ClusterInfo
    compression: Compression
    storage: Storage
    progress: Callable[[int], None] | None
    t0: float
    recipients: tuple[crypto.Recipient, ...]
    parent: DatabaseBackup | None


def _server_now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    when: datetime = row[0]
    return when


def _full_xid(xid32: int, near: int) -> int:
    """The 64-bit id of 32-bit ``xid32``, in the epoch that puts it within 2^31 of ``near``."""
    delta = (xid32 - near + (1 << 31)) % (1 << 32) - (1 << 31)
    return near + delta


def _next_xid(conn: psycopg.Connection) -> int | None:
    """A transaction id (64-bit, with epoch) below which every id was assigned when the backup ended.

    Read after pg_basebackup returned: a transaction with this id or a later
    one started, hence committed, after the backup was consistent, so a
    ``--to-xid`` restore can start from this backup (services/pitr.py).
    Not ``pg_current_xact_id()``, which assigns an id (and writes WAL). A
    snapshot's xmax alone is one past the newest *completed* transaction: a
    transaction whose commit record is written but which has not left the
    proc array yet (waiting for a synchronous standby) is at or above it. So
    the top-level ids still running, read *before* the snapshot, raise it.
    Best effort: without it, a restore to an XID falls back to the oldest backup.
    """
    snapshot = (
        "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"
        if conn.info.server_version >= 130000
        else "SELECT txid_snapshot_xmax(txid_current_snapshot())::text"
    )
    try:
        # Autocommit: each statement is its own transaction, so each reads the present.
        running = conn.execute(
            "SELECT backend_xid::text FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
            "UNION ALL SELECT transaction::text FROM pg_prepared_xacts"
        ).fetchall()
        row = conn.execute(snapshot).fetchone()
    except psycopg.Error as exc:
        log.warning("cannot read the next transaction id", error=str(exc).strip())
        return None
    assert row is not None
    xmax = int(row[0])
    return max([xmax, *(_full_xid(int(r[0]), xmax) + 1 for r in running)])


def _run(ctx: Context, conn: psycopg.Connection, job: _Job) -> BackupResult:
    row, storage = job.row, job.storage
    last_catalog = [0.0]

    def on_progress(nbytes: int) -> None:
        if job.progress:
            job.progress(nbytes)
        now = time.monotonic()
        if now - last_catalog[0] >= CATALOG_PROGRESS_EVERY_S:
            last_catalog[0] = now
            with contextlib.suppress(Exception), ctx.catalog.session() as session:
                repo.update_backup(session, row.id, bytes_written=nbytes)

    companion = pg_manifest_name(row.filename)
    # Outside the try: if the name is taken, nothing of ours is stored and nothing may be removed.
    writer = storage.open_writer(row.filename)
    sink: CompressingSink | None = None
    with tempfile.TemporaryDirectory(prefix="basebackup-", dir=ctx.temp_root()) as tmp:
        try:
            parent_manifest = _fetch_pg_manifest(ctx, job.parent, Path(tmp)) if job.parent else None
            sink = CompressingSink(writer, compressor(job.compression, ctx.codec_options), on_progress, job.recipients)
            sniffer = TarSniffer({"backup_label", "backup_manifest"}, sink.write)
            backup_start = _server_now(conn)
            argv = basebackup_argv(job.tool, job.target, f"pgkeep {row.id}", incremental_manifest=parent_manifest)
            with client_env(job.target) as env:
                child = Child(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, scrub=job.target.scrub)
                try:
                    assert child.proc.stdout is not None
                    while chunk := child.proc.stdout.read(CHUNK):
                        sniffer.write(chunk)
                    rc = child.wait()
                except BaseException:
                    child.kill()
                    raise
            failure = child.failure(rc)
            if failure:
                raise BackupFailedError(failure)
            backup_end = _server_now(conn)
            next_xid = _next_xid(conn)
            label, pg_manifest = sniffer.members.get("backup_label"), sniffer.members.get("backup_manifest")
            if not sniffer.ended or label is None or pg_manifest is None:
                raise BackupFailedError("pg_basebackup's output is incomplete (no end of archive, label or manifest)")
            position = read_position(label, pg_manifest)
            checksum = sink.finish()
            writer.commit()
            manifest_info = _store_pg_manifest(ctx, storage, companion, pg_manifest)
        except BaseException:
            if sink is not None:
                sink.abort()
            writer.abort()
            with contextlib.suppress(PgkeepError):
                # Everything this backup may have stored, the companion included.
                remove_backup_files(storage, row.filename, {"pgManifest": {"filename": companion}})
            raise

    info = job.info
    seg = info.wal_segment_size
    start, end = parse_lsn(position.start_lsn), parse_lsn(position.end_lsn)
    duration = int((time.monotonic() - job.t0) * 1000)
    physical = {
        "timeline": position.timeline,
        "start_lsn": position.start_lsn,
        "end_lsn": position.end_lsn,
        "backup_start_at": backup_start,
        "backup_end_at": backup_end,
        "wal_start": segment_of_lsn(position.timeline, start, seg),
        # The segment holding the last byte of the backup's WAL (an end on a segment
        # boundary belongs to the segment before it).
        "wal_end": segment_of_lsn(position.timeline, max(end - 1, start), seg),
    }
    metadata: dict[str, Any] = {
        "kind": KIND,
        "incremental": job.parent is not None,
        "parentId": job.parent.id if job.parent else None,
        "systemIdentifier": info.system_identifier,
        "walSegmentSize": seg,
        "serverVersion": row.server_version,
        "pgBasebackupVersion": job.tool.version,
        "compression": job.compression.value,
        "uncompressedSize": sink.raw_bytes,
        "durationMs": duration,
        "timestamp": utcnow().isoformat(),
        "pgManifest": manifest_info,
        # Also here, so pgkeep's manifest (and a rebuilt catalog) carries them.
        "physical": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in physical.items()},
    }
    if next_xid is not None:
        # Metadata only, not a column: `physical` above is also written into the row's columns.
        metadata["physical"]["nextXid"] = next_xid
    if job.recipients:
        metadata["encryption"] = encryption_metadata(job.recipients)
    final = {**completion_values(row, storage, sink, checksum, metadata, duration), **physical}
    for key, value in final.items():
        setattr(row, key, value)
    write_manifest(storage, manifest_for(row))
    with ctx.catalog.session() as session:
        done = repo.update_backup(session, row.id, **final)
    log.info(
        "backup completed",
        backup_id=done.id,
        type=done.type.value,
        kind=KIND,
        phase="completed",
        duration_ms=duration,
        size=done.size,
        raw_size=sink.raw_bytes,
        start_lsn=done.start_lsn,
        end_lsn=done.end_lsn,
    )
    return BackupResult(done.id, done.filename, done.size, checksum, duration, done.storage_url)


def _store_pg_manifest(ctx: Context, storage: Storage, name: str, data: bytes) -> dict[str, Any]:
    writer = storage.open_writer(name)
    sink = CompressingSink(writer, compressor(Compression.ZSTD, ctx.codec_options))
    try:
        sink.write(data)
        checksum = sink.finish()
        writer.commit()
    except BaseException:
        sink.abort()
        writer.abort()
        raise
    return {"filename": name, "checksum": checksum, "size": sink.stored_bytes}


def read_pg_manifest(ctx: Context, row: DatabaseBackup) -> bytes:
    """PostgreSQL's backup_manifest of a physical backup, checked against its recorded SHA-256."""
    info = (row.metadata_ or {}).get("pgManifest") or {}
    if not row.storage_url or not info.get("filename"):
        raise BackupFailedError(f"backup {row.id} has no stored backup_manifest", backup_id=row.id)
    storage, _ = locate(row.storage_url, ctx.settings)
    digest = hashlib.sha256()
    stored = []
    with storage.open_reader(info["filename"]) as reader:
        for chunk in iter_chunks(reader):
            digest.update(chunk)
            stored.append(chunk)
    if info.get("checksum") and digest.hexdigest() != info["checksum"]:
        raise VerificationError(
            f"{info['filename']} is damaged (SHA-256 {digest.hexdigest()}, {info['checksum']} recorded)",
            backup_id=row.id,
        )
    return b"".join(codecs.decompress(stored, Compression.ZSTD))


def _fetch_pg_manifest(ctx: Context, parent: DatabaseBackup, tmp: Path) -> Path:
    path = tmp / "parent_backup_manifest"
    path.write_bytes(read_pg_manifest(ctx, parent))
    return path
