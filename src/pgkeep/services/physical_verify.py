"""Verifying a physical backup, at the same three levels as logical ones.

- ``checksum``: the stored artifact and its backup_manifest have the SHA-256
  and size recorded when they were stored.
- ``archive``: instead unpacks the backup into a private scratch directory,
  checking the artifact's SHA-256 and size on the way (one read, not a
  checksum pass and then an unpacking pass: a whole download, from S3),
  fetches the WAL it needs from the archive (checked by its SHA-256, as
  restore_command does), and runs ``pg_verifybackup`` against the
  manifest: every file's size and CRC-32C, and the WAL parses from the
  backup's start to its end.
- ``restore``: also restores it to its end (``recovery_target =
  'immediate'``) into a scratch data directory, starts it on a free port,
  runs amcheck on every B-tree index, stops it and removes it. A full
  backup's drill starts the very files pg_verifybackup checked (moved into
  place): the backup is read once, unless the two scratch directories are
  on different file systems.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pgkeep.catalog.models import DatabaseBackup
from pgkeep.errors import PgkeepError, VerificationError
from pgkeep.pgtools import postmaster
from pgkeep.pgtools.binaries import find_tool
from pgkeep.services.context import Context
from pgkeep.services.physical import read_pg_manifest
from pgkeep.services.pitr import (
    PitrOptions,
    RecoveryTarget,
    TargetKind,
    check_digest,
    open_stored,
    restore_physical,
    unpack_backup,
)
from pgkeep.services.verify import VerifyLevel, VerifyResult, _amcheck
from pgkeep.wal import archive as wal
from pgkeep.wal.naming import DEFAULT_SEGMENT_SIZE, parse_segment, segment_name


def verify_physical(
    ctx: Context, row: DatabaseBackup, level: VerifyLevel, on_read: Callable[[int], None] | None = None
) -> VerifyResult:
    """Verify a COMPLETED physical backup at ``level``; problems give ``valid=False``, not exceptions.

    ``on_read`` hears how much of the stored artifact each pass has read (progress).
    """
    try:
        read_pg_manifest(ctx, row)
        if level is VerifyLevel.CHECKSUM:
            reader = open_stored(ctx, row, on_read)
            try:
                reader.drain()
            finally:
                reader.close()
            check_digest(row, reader)
            return VerifyResult(True, "Backup verified successfully (checksums)", level.value)
        if level is VerifyLevel.RESTORE:
            details = _verify_and_drill(ctx, row, on_read)
            if details["amcheck"].get("errors"):
                return VerifyResult(
                    False, f"restore drill failed: amcheck: {details['amcheck']['errors'][0]}", level.value, details
                )
            return VerifyResult(
                True,
                f"Restore drill passed: restored to {row.end_lsn}, started, "
                f"{details['amcheck'].get('checked')} indexes checked by amcheck",
                level.value,
                details,
            )
        details = _verify_backup_files(ctx, row, on_read)
        return VerifyResult(True, "Backup verified successfully (pg_verifybackup with its WAL)", level.value, details)
    except VerificationError as exc:
        return VerifyResult(False, exc.message, level.value)
    except PgkeepError as exc:
        if exc.code in ("not_found", "object_not_found", "wal_not_found"):
            return VerifyResult(False, f"File not accessible: {exc.message}", level.value)
        if level is VerifyLevel.RESTORE and exc.code == "restore_failed":
            return VerifyResult(False, f"restore drill failed: {exc.message}", level.value)
        raise


def _needed_wal(row: DatabaseBackup) -> list[str]:
    size = int((row.metadata_ or {}).get("walSegmentSize") or DEFAULT_SEGMENT_SIZE)
    assert row.wal_start and row.wal_end
    tli, first = parse_segment(row.wal_start, size)
    _, last = parse_segment(row.wal_end, size)
    return [segment_name(tli, n, size) for n in range(first, last + 1)]


def _verify_and_drill(ctx: Context, row: DatabaseBackup, on_read: Callable[[int], None] | None) -> dict[str, Any]:
    """The archive level, then the drill on the very files it checked (one read of the
    backup; a second only if the drill's directory is on another file system)."""
    user = postmaster.server_user(None)
    # As root, the server runs as another OS user, which cannot reach pgkeep's private temp
    # directory: the scratch cluster then lives in the system's temp directory, in a 0700
    # directory of that user.
    parent = Path(tempfile.mkdtemp(prefix="pgkeep-drill-", dir=None if user else ctx.temp_root()))
    try:
        checked = parent / "checked"
        details = _verify_backup_files(ctx, row, on_read, keep=checked)
        details.update(_restore_drill(ctx, row, parent, user, checked if checked.exists() else None))
        return details
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _verify_backup_files(
    ctx: Context, row: DatabaseBackup, on_read: Callable[[int], None] | None = None, keep: Path | None = None
) -> dict[str, Any]:
    """Unpack (checking the artifact's SHA-256), fetch the WAL, run pg_verifybackup; with
    ``keep``, the unpacked backup is moved there afterwards (when on the same file system)."""
    major = int((row.server_version or "0").split(".")[0])
    tool = find_tool("pg_verifybackup", major, ctx.settings.pg_bin_dir)
    scratch = Path(tempfile.mkdtemp(prefix="verify-physical-", dir=ctx.temp_root()))
    try:
        backup_dir, wal_dir = scratch / "backup", scratch / "wal"
        unpack_backup(ctx, row, backup_dir, on_read)
        wal_dir.mkdir(mode=0o700)
        segments = _needed_wal(row)
        for segment in segments:
            wal.fetch(ctx.storage, segment, wal_dir / segment, identity_file=ctx.settings.age_identity_file)
        argv = [str(tool.path), "--quiet", f"--wal-directory={wal_dir}", str(backup_dir)]
        try:
            postmaster.run_as(argv, None, timeout=24 * 3600)
        except PgkeepError as exc:
            raise VerificationError(f"pg_verifybackup found problems: {exc.message}") from None
        if keep is not None:
            with contextlib.suppress(OSError):  # another file system: the drill reads the backup itself
                os.replace(backup_dir, keep)
        return {"walSegments": segments, "pgVerifybackup": tool.version}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _restore_drill(
    ctx: Context, row: DatabaseBackup, parent: Path, user: str | None, unpacked: Path | None
) -> dict[str, Any]:
    """Restore to the backup's end in ``parent``/data, start it, amcheck, stop it."""
    data_dir = parent / "data"
    postmaster.chown_tree(parent, user)
    result = None
    try:
        options = PitrOptions(
            data_dir, RecoveryTarget(TargetKind.IMMEDIATE), backup_id=row.id, start=True, unpacked=unpacked
        )
        result = restore_physical(ctx, options)
        assert result.port is not None
        target = ctx.target
        scratch = type(target)(
            params={**target.params, "host": "127.0.0.1", "port": str(result.port)}, password=target.password
        )
        return {"amcheck": _amcheck(scratch), "reachedLsn": result.reached_lsn}
    finally:
        major = int((row.server_version or "0").split(".")[0])
        if (data_dir / "postmaster.pid").exists():
            postmaster.stop(postmaster.server_bin_dir(major, ctx.settings.pg_bin_dir), data_dir, user, mode="immediate")
