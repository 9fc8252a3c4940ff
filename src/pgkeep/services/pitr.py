"""Point-in-time restore: a physical backup plus archived WAL, into a new data directory.

Order, and what is refused before anything is written:

1. The target (time, LSN, XID, restore point name, latest) is parsed; the
   data directory must be absent or empty (a running cluster's never is).
2. The base backup is chosen: the newest COMPLETED physical backup that
   ended at or before the target (or the one named), with its incremental
   chain. For an XID, "ended before" is judged by the next transaction id
   recorded at the backup's end; a restore point's position is unknown, so
   it gets the oldest backup (:func:`choose_base`). A target before the oldest backup's end, or after the end of the
   archived WAL (unless ``latest``), or a hole in the archive between the
   backup and the target, is refused.
3. The backup (each link of a chain) is streamed from storage, decrypted,
   decompressed and unpacked, while its SHA-256 is checked; a chain is
   combined with ``pg_combinebackup``. Any failure empties the directory
   again.
4. Recovery settings are appended to ``postgresql.auto.conf``
   (``restore_command`` through ``pgkeep wal-fetch``, ``recovery_target_*``,
   ``recovery_target_action = promote``) and ``recovery.signal`` is created.
   The restored cluster does not archive (``archive_mode = off``) unless
   asked: it must not write a new timeline into the source's archive.
5. With ``start``, the server runs on its own port beside the source; pgkeep
   waits until recovery ends and reports where it stopped. PostgreSQL 13+
   stops with a FATAL error instead of promoting when the target was not
   reached, and ``wal-fetch`` exits above 125 for a damaged segment, so a
   promoted server has reached its target, and anything else is a failure.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg

from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, DatabaseBackup, utcnow
from pgkeep.config import Compression, Settings
from pgkeep.errors import (
    ConfigError,
    ExitCode,
    InvalidRequestError,
    InvalidStateError,
    NotFoundError,
    PgkeepError,
    RestoreFailedError,
    TargetNotReachedError,
    VerificationError,
)
from pgkeep.fsutil import locked_dir
from pgkeep.observability.logs import get_logger
from pgkeep.pgtools import postmaster
from pgkeep.pgtools.binaries import find_tool
from pgkeep.pgtools.conninfo import Target
from pgkeep.pipeline import codecs, crypto
from pgkeep.services.archive import PHYSICAL, physical_backups
from pgkeep.services.artifacts import HashingReader, extract_tar
from pgkeep.services.context import Context
from pgkeep.storage import locate
from pgkeep.wal.naming import (
    DEFAULT_SEGMENT_SIZE,
    format_lsn,
    parse_lsn,
    parse_segment,
)
from pgkeep.wal.spool import FETCHER
from pgkeep.wal.status import ArchivedFile, find_holes, list_archive

log = get_logger("pgkeep.pitr")
RESTORE_ENV = "pgkeep-restore.env"
PREFETCH_SPOOL = "pgkeep-prefetch"  # wal-fetch's spool during recovery, removed once it ends
RECOVERY_LOG = "pgkeep-recovery.log"
CONF_MARK = "# --- pgkeep restore"


class TargetKind(StrEnum):
    TIME = "time"
    LSN = "lsn"
    XID = "xid"
    NAME = "name"
    LATEST = "latest"
    IMMEDIATE = "immediate"  # the end of the base backup (verify's restore drill)


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without a zone is UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequestError(
            f"--to-time {text!r} is not an ISO 8601 time", hint="e.g. 2026-11-26T14:05:00+01:00 (no zone: UTC)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class RecoveryTarget:
    kind: TargetKind
    value: str | None = None
    time: datetime | None = None
    lsn: int | None = None

    @classmethod
    def parse(
        cls,
        *,
        to_time: str | None = None,
        to_lsn: str | None = None,
        to_xid: str | None = None,
        to_name: str | None = None,
        latest: bool = False,
    ) -> RecoveryTarget:
        """Exactly one target; none at all means ``latest`` (the end of the archive)."""
        given = [
            k
            for k, v in (("--to-time", to_time), ("--to-lsn", to_lsn), ("--to-xid", to_xid), ("--to-name", to_name))
            if v is not None
        ]
        if latest:
            given.append("--latest")
        if len(given) > 1:
            raise InvalidRequestError(f"give one recovery target, not {' and '.join(given)}")
        if to_time is not None:
            when = parse_time(to_time)
            return cls(TargetKind.TIME, when.isoformat(), time=when)
        if to_lsn is not None:
            lsn = parse_lsn(to_lsn)
            return cls(TargetKind.LSN, format_lsn(lsn), lsn=lsn)
        if to_xid is not None:
            if not to_xid.strip().isdigit():
                raise InvalidRequestError(f"--to-xid {to_xid!r} is not a transaction id (a number)")
            return cls(TargetKind.XID, to_xid.strip())
        if to_name is not None:
            if not to_name or len(to_name) > 63:
                raise InvalidRequestError("--to-name must be a restore point name of 1 to 63 characters")
            return cls(TargetKind.NAME, to_name)
        return cls(TargetKind.LATEST)

    def describe(self) -> str:
        return self.kind.value if self.value is None else f"{self.kind.value} {self.value}"

    def settings(self) -> dict[str, str]:
        """The recovery_target_* settings PostgreSQL needs."""
        if self.kind is TargetKind.TIME:
            assert self.time is not None
            return {"recovery_target_time": self.time.isoformat(sep=" ")}
        if self.kind is TargetKind.LSN:
            return {"recovery_target_lsn": str(self.value)}
        if self.kind is TargetKind.XID:
            return {"recovery_target_xid": str(self.value)}
        if self.kind is TargetKind.NAME:
            return {"recovery_target_name": str(self.value)}
        if self.kind is TargetKind.IMMEDIATE:
            return {"recovery_target": "immediate"}
        return {}


@dataclass(frozen=True)
class PitrOptions:
    data_dir: Path
    target: RecoveryTarget = field(default_factory=lambda: RecoveryTarget(TargetKind.LATEST))
    backup_id: str | None = None
    start: bool = False
    port: int | None = None
    os_user: str | None = None  # who runs the restored server when pgkeep runs as root (default postgres)
    keep_archiving: bool = False
    config_file: Path | None = None  # settings for restore_command; else written into the data directory
    prefetch: bool = True  # restore_command with a spool in the data directory: segments fetched ahead
    # The (full) backup already unpacked and checked, e.g. by a verification: moved into
    # data_dir instead of reading the backup again (unless it is on another file system).
    unpacked: Path | None = None
    wait_timeout_s: float = 3600.0
    # Progress: stored bytes read so far, counted across the whole chain (its sizes' sum is the end),
    # and that sum, told once before the first byte is read.
    on_read: Callable[[int], None] | None = field(default=None, compare=False, repr=False)
    on_total: Callable[[int], None] | None = field(default=None, compare=False, repr=False)


@dataclass
class PitrResult:
    backup_id: str
    chain: list[str]
    data_dir: Path
    target: RecoveryTarget
    started: bool = False
    port: int | None = None
    reached_lsn: str | None = None
    reached_time: datetime | None = None
    timeline: int | None = None
    target_reached: bool | None = None
    log_file: Path | None = None
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "backupId": self.backup_id,
            "chain": self.chain,
            "dataDir": str(self.data_dir),
            "target": {"kind": self.target.kind.value, "value": self.target.value},
            "started": self.started,
            "port": self.port,
            "reachedLsn": self.reached_lsn,
            "reachedTime": self.reached_time.isoformat() if self.reached_time else None,
            "timeline": self.timeline,
            "targetReached": self.target_reached,
            "logFile": str(self.log_file) if self.log_file else None,
        }


# --- planning: everything that is refused is refused here, before anything is written -----


@dataclass(frozen=True)
class _Plan:
    chain: list[DatabaseBackup]  # full backup first, then its incrementals in order
    segment_size: int
    major: int


class DataDirectoryTakenError(PgkeepError):
    """The data directory exists and is not empty, or another restore is writing it."""

    exit_code = ExitCode.CONFLICT
    http_status = 409
    code = "data_directory_exists"
    title = "The data directory is not free"


CLAIM_SUFFIX = ".pgkeep-restore"


@contextlib.contextmanager
def _claim(data_dir: Path) -> Iterator[None]:
    """Keep every other restore, in any process, out of ``data_dir`` while this one writes it.

    Two restores given the same empty directory both pass the emptiness
    check. A hidden marker beside the directory, created with O_EXCL, lets
    one of them on; the emptiness is checked again under it. Once written
    the directory is not empty, so the marker is not needed after that.
    """
    marker = data_dir.parent / f".{data_dir.name}{CLAIM_SUFFIX}"
    try:
        try:
            fd = _create_exclusive(marker)
        except FileExistsError:
            fd = _take_over(marker)
    except FileExistsError:
        raise DataDirectoryTakenError(
            f"another restore is writing {data_dir} (it holds {marker})",
            operation="restore",
            hint=f"wait for it to finish; if no restore is running (one was killed), remove {marker}",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot claim {data_dir} for the restore: {exc.strerror} ({marker})") from None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{socket.gethostname()} pid {os.getpid()} since {utcnow().isoformat()}\n")
        if _occupied(data_dir):
            raise DataDirectoryTakenError(
                f"{data_dir} is no longer empty: another restore wrote it", operation="restore"
            )
        yield
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()


def _create_exclusive(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def _take_over(marker: Path) -> int:
    """Replace the claim of a restore that died; FileExistsError while its owner may live.

    Takeovers hold a flock on the directory, so between reading an abandoned
    claim and removing it no other takeover can have put a fresh one there
    (and a plain O_EXCL create cannot, while the old one exists).
    """
    with locked_dir(marker.parent):
        try:
            return _create_exclusive(marker)
        except FileExistsError:
            if not _abandoned(marker):
                raise
        log.warning("removing the claim of a restore that died", marker=str(marker))
        marker.unlink(missing_ok=True)
        return _create_exclusive(marker)


def _abandoned(marker: Path) -> bool:
    """Whether ``marker`` was left by a restore process on this host that no longer exists.

    Only then is it safe to take over: a live process (or one on another
    host, which cannot be checked from here) may still be writing.
    """
    try:
        host, _, pid, *_ = marker.read_text().split()
        alive_pid = int(pid)
    except (OSError, ValueError):
        return False
    if host != socket.gethostname() or alive_pid <= 0:
        return False
    try:
        os.kill(alive_pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # it exists, owned by someone else
    return False


def _refuse(message: str, hint: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(message, operation="restore", hint=hint)


def _occupied(path: Path) -> bool:
    """``path`` exists and is not an empty directory: a restore may not write there."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _check_data_dir(path: Path) -> None:
    if _occupied(path):
        raise _refuse(
            f"{path} exists and is not an empty directory; a physical restore never overwrites one",
            hint="give a new (absent or empty) --data-dir; stop and move away the old cluster yourself if needed",
        )


def _end(row: DatabaseBackup) -> datetime:
    assert row.backup_end_at is not None
    return row.backup_end_at


def _chain(ctx: Context, last: DatabaseBackup) -> list[DatabaseBackup]:
    chain = [last]
    while chain[0].parent_id:
        with ctx.catalog.session() as session:
            try:
                parent = repo.get_backup(session, chain[0].parent_id)
            except NotFoundError:
                parent = None
        if parent is None or parent.status is not BackupStatus.COMPLETED:
            raise _refuse(
                f"backup {last.id} is incremental and its base {chain[0].parent_id} is "
                f"{'missing' if parent is None else parent.status.value}",
                hint="restore an older complete chain with --backup ID",
            )
        chain.insert(0, parent)
    return chain


def _choose(ctx: Context, options: PitrOptions) -> list[DatabaseBackup]:
    target = options.target
    if options.backup_id:
        with ctx.catalog.session() as session:
            row = repo.get_backup(session, options.backup_id)
        if (row.kind or "logical") != PHYSICAL:
            raise _refuse(
                f"backup {row.id} is a logical backup; --kind physical restores physical ones",
                hint="restore it with `pgkeep restore ID`",
            )
        if row.status is not BackupStatus.COMPLETED:
            raise InvalidStateError(
                f"backup {row.id} is {row.status.value}; only COMPLETED backups restore", backup_id=row.id
            )
        if not _usable(row, target):
            raise _refuse(
                f"the target ({target.describe()}) is before the end of backup {row.id} "
                f"({format_end(row)}): it cannot be restored to an earlier moment",
                hint="choose an older backup, or omit --backup",
            )
        return _chain(ctx, row)
    rows = [r for r in physical_backups(ctx) if r.backup_end_at and r.end_lsn]
    if not rows:
        raise _refuse(
            "the catalog has no COMPLETED physical backup", hint="take one with `pgkeep backup --kind physical`"
        )
    usable = [r for r in rows if _usable(r, target)]
    if not usable:
        oldest = min(rows, key=_end)
        raise _refuse(
            f"the target ({target.describe()}) is older than the oldest physical backup, "
            f"which is consistent from {format_end(oldest)}",
            hint="a physical backup can only be rolled forward; restore a logical backup for older data",
        )
    chosen, warning = choose_base(usable, target)
    if warning:
        log.warning(warning, backup_id=chosen.id, target=target.describe())
    return _chain(ctx, chosen)


def format_end(row: DatabaseBackup) -> str:
    return f"{row.end_lsn} at {_end(row).isoformat()}"


def _usable(row: DatabaseBackup, target: RecoveryTarget) -> bool:
    """Whether recovery from ``row`` can stop at ``target``, as far as the catalog knows.

    Times and LSNs are compared with the backup's end. An XID or a restore
    point cannot be placed in the WAL from the catalog, so every backup may
    do (:func:`choose_base` prefers safe ones; recovery fails loudly if the
    target lies before the chosen backup's end).
    """
    if target.time is not None:
        return _end(row) <= target.time
    if target.lsn is not None:
        return row.end_lsn is not None and parse_lsn(row.end_lsn) <= target.lsn
    return True


XID_SPACE = 1 << 32  # PostgreSQL's 32-bit transaction ids wrap around; an epoch counts the wraps


def next_xid_of(row: DatabaseBackup) -> int | None:
    """The first transaction id (64-bit, with epoch) not yet assigned when ``row`` ended.

    Recorded by services/physical.py (``metadata.physical.nextXid``, so manifests and a
    rebuilt catalog carry it); None for rows taken before it was recorded.
    """
    value = ((row.metadata_ or {}).get("physical") or {}).get("nextXid")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def xid_assigned_after(xid: int, next_xid: int) -> bool:
    """Whether transaction ``xid`` was assigned at or after ``next_xid`` (so it committed later).

    A target of 2^32 or more carries its epoch (``pg_current_xact_id()``,
    ``txid_current()``) and compares exactly. A smaller one may be a bare
    32-bit id (``xmin``, ``backend_xid``, the server log): it is placed in the
    epoch that puts it nearest to the backup's next id, the way PostgreSQL
    compares 32-bit ids (``TransactionIdFollowsOrEquals``: modulo 2^32,
    within 2^31). Taking the backup's own epoch instead would misplace a
    target from just before an epoch wrap, for a backup taken just after it.
    """
    if xid >= XID_SPACE:
        return xid >= next_xid
    return (xid - next_xid) % XID_SPACE < XID_SPACE // 2


def choose_base(usable: list[DatabaseBackup], target: RecoveryTarget) -> tuple[DatabaseBackup, str | None]:
    """The base backup for ``target`` among ``usable`` ones (pure), and a warning if it is a guess.

    - time, LSN, latest: the newest (its end is known to be at or before the target);
    - XID: the newest whose next transaction id at its end is at or below the
      target, so the target transaction started, hence committed, after the
      backup was consistent. If none qualifies (the target started before every
      backup ended, or the rows predate the recorded id), the OLDEST: it replays
      the most WAL and is the likeliest to pass the target; if the target
      committed before even that backup ended, recovery stops with an error;
    - restore point name: the OLDEST. Where ``pg_create_restore_point`` wrote
      its record is unknown to the catalog; an older backup only replays more
      WAL, a newer one may have started after the point and never reach it.
      ``--backup`` chooses a newer one when the operator knows better.
    """
    newest_first = sorted(usable, key=lambda r: (_end(r), r.started_at), reverse=True)
    oldest = newest_first[-1]
    if target.kind is TargetKind.XID:
        xid = int(str(target.value))
        for row in newest_first:
            next_xid = next_xid_of(row)
            if next_xid is not None and xid_assigned_after(xid, next_xid):
                return row, None
        return oldest, (
            f"no physical backup is known to have ended before transaction {xid} started; "
            f"using the oldest, {oldest.id}: if the transaction committed before it ended, "
            "recovery stops with an error"
        )
    if target.kind is TargetKind.NAME:
        return oldest, None
    return newest_first[0], None


def target_hint(target: RecoveryTarget, backup_id: str) -> str:
    """What to try when recovery to ``target`` from ``backup_id`` stopped short."""
    if target.kind in (TargetKind.XID, TargetKind.NAME):
        return (
            f"; if the {target.kind.value} target lies before the end of backup {backup_id}, "
            "recovery cannot stop at it: restore with --backup an older one (`pgkeep list --json`)"
        )
    return ""


def _check_archive(plan: _Plan, target: RecoveryTarget, files: list[ArchivedFile]) -> None:
    """Refuse a target beyond the archived WAL, or a hole between the backup and the target."""
    size = plan.segment_size
    base, last = plan.chain[0], plan.chain[-1]
    assert last.wal_end is not None and base.wal_start is not None
    start = last.wal_start or base.wal_start
    first = parse_segment(start, size)[1]
    segments = [f for f in files if f.obj.is_segment and parse_segment(f.obj.file, size)[1] >= first]
    if not segments:
        raise _refuse(
            f"the WAL archive holds none of the WAL backup {last.id} needs (from {start})",
            hint="check that archive_command runs `pgkeep wal-push` into this PGKEEP_STORAGE_URL",
        )
    newest = max(segments, key=lambda f: (parse_segment(f.obj.file, size)[1], f.obj.file))
    newest_pos = parse_segment(newest.obj.file, size)[1]
    archive_end_lsn = (newest_pos + 1) * size
    needed = newest_pos
    if target.time is not None:
        if target.time > newest.info.modified:
            raise _refuse(
                f"the target time {target.time.isoformat()} is later than the end of the archived WAL "
                f"(newest segment {newest.obj.file}, archived {newest.info.modified.isoformat()})",
                hint="use --latest to restore everything archived, or wait for the WAL to be archived",
            )
        later = [f for f in segments if f.info.modified >= target.time]
        needed = min(parse_segment(f.obj.file, size)[1] for f in later)
    elif target.lsn is not None:
        if target.lsn > archive_end_lsn:
            raise _refuse(
                f"the target LSN {format_lsn(target.lsn)} is later than the end of the archived WAL "
                f"({format_lsn(archive_end_lsn)}, segment {newest.obj.file})",
                hint="use --latest to restore everything archived, or wait for the WAL to be archived",
            )
        needed = target.lsn // size
    needed = max(needed, parse_segment(last.wal_end, size)[1])
    if needed > newest_pos:
        raise _refuse(f"segment {last.wal_end}, needed to make backup {last.id} consistent, is not archived")
    holes = find_holes((f.obj.file for f in segments if parse_segment(f.obj.file, size)[1] <= needed), start, size)
    if holes:
        raise _refuse(
            f"the WAL archive has a hole between backup {last.id} and the target: {holes[0]} is missing"
            + (f" (and {len(holes) - 1} more)" if len(holes) > 1 else ""),
            hint="`pgkeep archive status` lists the holes; choose a target before the hole",
        )


def plan(ctx: Context, options: PitrOptions) -> _Plan:
    """Choose the backup chain and check the archive; raise what a restore would refuse."""
    _check_data_dir(options.data_dir)
    if options.start and not ctx.settings.database_url:
        raise ConfigError(
            "--start follows recovery by logging in to the restored cluster, and DATABASE_URL is not set",
            hint="set DATABASE_URL to the source database (the restored cluster has its roles), or omit --start",
        )
    chain = _choose(ctx, options)
    meta = chain[-1].metadata_ or {}
    version = chain[-1].server_version or "0"
    result = _Plan(chain, int(meta.get("walSegmentSize") or DEFAULT_SEGMENT_SIZE), int(version.split(".")[0]))
    if options.target.kind is not TargetKind.IMMEDIATE:
        _check_archive(result, options.target, list_archive(ctx.storage))
    return result


# --- restoring ---------------------------------------------------------------------------------


def restore_physical(ctx: Context, options: PitrOptions) -> PitrResult:
    """Restore into ``options.data_dir`` and (with ``start``) run recovery to the target."""
    the_plan = plan(ctx, options)
    settings = ctx.settings
    user = postmaster.server_user(options.os_user)
    bin_dir = postmaster.server_bin_dir(the_plan.major, settings.pg_bin_dir) if options.start else None
    pgkeep_cmd = pgkeep_executable()
    data_dir = options.data_dir.absolute()
    last = the_plan.chain[-1]
    result = PitrResult(last.id, [r.id for r in the_plan.chain], data_dir, options.target)
    log.info(
        "physical restore started",
        backup_id=last.id,
        data_dir=str(data_dir),
        target=options.target.describe(),
        chain=result.chain,
    )
    if options.on_total is not None:
        options.on_total(chain_size(the_plan.chain))
    with _claim(data_dir):
        created = not data_dir.exists()
        try:
            if not _take_unpacked(the_plan, options.unpacked, data_dir):
                _unpack(ctx, the_plan, data_dir, options.on_read)
            config = options.config_file.absolute() if options.config_file else _write_restore_env(settings, data_dir)
            port = (options.port or postmaster.free_port()) if options.start else options.port
            _write_recovery_conf(data_dir, last, options, pgkeep_cmd, config, port)
            postmaster.chown_tree(data_dir, user)
        except BaseException:
            _empty(data_dir, remove=created)
            raise
    if not options.start:
        result.message = (
            f"Restored backup {last.id} into {data_dir}; recovery to {options.target.describe()} "
            f"runs when the server starts (pg_ctl -D {data_dir} start" + (f", as OS user {user})" if user else ")")
        )
        return result
    assert bin_dir is not None and port is not None
    result.started, result.port = True, port
    result.log_file = data_dir / RECOVERY_LOG
    postmaster.start(bin_dir, data_dir, result.log_file, user)
    _wait_for_recovery(ctx.target if ctx.settings.database_url else None, data_dir, port, options, result)
    if options.config_file is None:
        # Recovery is over: the settings file (it may hold storage credentials) is not needed again.
        with contextlib.suppress(OSError):
            (data_dir / RESTORE_ENV).unlink()
    _remove_spool(data_dir / PREFETCH_SPOOL, data_dir / RECOVERY_LOG)
    log.info(
        "physical restore completed",
        backup_id=last.id,
        data_dir=str(data_dir),
        port=port,
        reached_lsn=result.reached_lsn,
        target_reached=result.target_reached,
    )
    return result


def _remove_spool(spool: Path, recovery_log: Path) -> None:
    """Remove the prefetch spool once recovery is over, its fetcher's log appended to the
    recovery log. Renamed first, so that a fetcher still running sees its directory gone
    and stops."""
    if not spool.exists():
        return
    trash = spool.with_name(f"{spool.name}.removed-{os.getpid()}")
    try:
        os.replace(spool, trash)
    except OSError:
        return
    with contextlib.suppress(OSError):
        lines = (trash / f"{FETCHER}.log").read_text(encoding="utf-8", errors="replace")
        with open(recovery_log, "a", encoding="utf-8") as log:
            log.write(f"--- pgkeep wal-fetch prefetching ({spool.name}/{FETCHER}.log) ---\n{lines}")
    for _ in range(3):  # a fetcher may still be finishing a file in it
        shutil.rmtree(trash, ignore_errors=True)
        if not trash.exists():
            return
        time.sleep(0.2)


def pgkeep_executable() -> str:
    """The pgkeep command restore_command runs (the server's OS user must be able to run it)."""
    beside = Path(sys.executable).parent / "pgkeep"
    if beside.is_file():
        return str(beside)
    found = shutil.which("pgkeep")
    if found:
        return str(Path(found).absolute())
    raise ConfigError(
        "cannot find the pgkeep command for restore_command", hint="install pgkeep so that `pgkeep` is on PATH"
    )


def _empty(data_dir: Path, *, remove: bool) -> None:
    """Leave the data directory as it was found: absent, or empty."""
    if remove:
        shutil.rmtree(data_dir, ignore_errors=True)
    elif not data_dir.exists():
        data_dir.mkdir(mode=0o700)  # unpacking replaced the empty directory it was given
    elif data_dir.is_dir():
        for entry in data_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()


def decoded(ctx: Context, row: DatabaseBackup, reader: HashingReader) -> Iterator[bytes]:
    """The tar stream of a physical backup from its stored bytes (decrypted, decompressed)."""
    stored: Iterator[bytes] = reader.chunks()
    if row.encryption:
        recipients = tuple(((row.metadata_ or {}).get("encryption") or {}).get("recipients") or ())
        keys = crypto.load_identities(ctx.settings.age_identity_file, f"backup {row.filename}", recipients)
        stored = crypto.decrypt(stored, keys, row.filename, recipients)
    return codecs.decompress(stored, Compression(row.compression or "none"))


def extract_stream(chunks: Iterator[bytes], dest: Path) -> None:
    """Unpack a tar stream into a new private directory ``dest`` (the "data" filter: nothing outside it)."""
    extract_tar(chunks, dest)


def unpack_backup(ctx: Context, row: DatabaseBackup, dest: Path, on_read: Callable[[int], None] | None = None) -> None:
    """Stream one physical backup into a new directory ``dest``, checking its SHA-256 and size.

    ``on_read`` hears how many stored bytes have been read so far (progress).
    """
    reader = open_stored(ctx, row, on_read)
    try:
        extract_stream(decoded(ctx, row, reader), dest)
        reader.drain()
    except VerificationError as exc:
        reader.drain()
        check_digest(row, reader)
        exc.backup_id = row.id
        raise
    finally:
        reader.close()
    check_digest(row, reader)


def open_stored(ctx: Context, row: DatabaseBackup, on_read: Callable[[int], None] | None = None) -> HashingReader:
    """A hashing pass over a physical backup's stored artifact."""
    if not row.storage_url:
        raise NotFoundError(f"backup {row.id} has no stored file", backup_id=row.id)
    storage, name = locate(row.storage_url, ctx.settings)
    return HashingReader(storage.open_reader(name), on_read)


def check_digest(row: DatabaseBackup, reader: HashingReader) -> None:
    """Raise VerificationError unless a drained pass read the recorded size and SHA-256."""
    if row.checksum and (reader.hexdigest() != row.checksum or reader.size != int(row.size)):
        raise VerificationError(
            f"backup {row.filename} is damaged: {reader.size} bytes with SHA-256 {reader.hexdigest()}, "
            f"{row.size} bytes with {row.checksum} recorded",
            backup_id=row.id,
            hint="restore from another backup (--backup ID)",
        )


def chain_size(chain: list[DatabaseBackup]) -> int:
    """The stored bytes of a backup chain: where its progress ends."""
    return sum(int(row.size or 0) for row in chain)


def chain_progress(
    on_read: Callable[[int], None] | None, chain: list[DatabaseBackup]
) -> list[Callable[[int], None] | None]:
    """One progress callback per backup of ``chain``, each counting on from the sizes before it."""
    if on_read is None:
        return [None] * len(chain)
    return [functools.partial(_count_on, on_read, chain_size(chain[:i])) for i in range(len(chain))]


def _count_on(on_read: Callable[[int], None], before: int, nbytes: int) -> None:
    on_read(before + nbytes)


def _take_unpacked(the_plan: _Plan, unpacked: Path | None, data_dir: Path) -> bool:
    """Move an already unpacked full backup into place; False if there is none to move."""
    if unpacked is None or len(the_plan.chain) != 1:
        return False
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if data_dir.exists():
        data_dir.rmdir()  # empty (checked)
    try:
        os.replace(unpacked, data_dir)
    except OSError:  # another file system: read the backup after all
        return False
    os.chmod(data_dir, 0o700)
    return True


def _unpack(ctx: Context, the_plan: _Plan, data_dir: Path, on_read: Callable[[int], None] | None = None) -> None:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    progress = chain_progress(on_read, the_plan.chain)
    if len(the_plan.chain) == 1:
        if data_dir.exists():
            data_dir.rmdir()  # empty (checked): extract_tar creates it, private
        unpack_backup(ctx, the_plan.chain[0], data_dir, progress[0])
        return
    # Beside the target: same filesystem, and big enough for the data by the operator's choice.
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}-chain-", dir=data_dir.parent))
    try:
        parts = []
        for i, row in enumerate(the_plan.chain):
            part = staging / f"{i:03d}"
            unpack_backup(ctx, row, part, progress[i])
            parts.append(str(part))
        tool = find_tool(
            "pg_combinebackup",
            the_plan.major,
            ctx.settings.pg_bin_dir,
            reason=f"combining an incremental chain of PostgreSQL {the_plan.major}",
        )
        if data_dir.exists():
            data_dir.rmdir()
        postmaster.run_as([str(tool.path), *parts, "--output", str(data_dir)], None, timeout=24 * 3600)
        os.chmod(data_dir, 0o700)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _env_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _write_restore_env(settings: Settings, data_dir: Path) -> Path:
    """The settings wal-fetch needs (storage, S3, decryption key), private to the server's OS user."""
    values: dict[str, Any] = {
        "PGKEEP_STORAGE_URL": settings.storage_url,
        "PGKEEP_S3_ENDPOINT_URL": settings.s3_endpoint_url,
        "PGKEEP_S3_REGION": settings.s3_region,
        "PGKEEP_S3_FORCE_PATH_STYLE": "true" if settings.s3_force_path_style else None,
        "PGKEEP_S3_ACCESS_KEY_ID": settings.s3_access_key_id,
        "PGKEEP_S3_SECRET_ACCESS_KEY": (
            settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        ),
        "PGKEEP_S3_RETRY_MODE": settings.s3_retry_mode.value,
        "PGKEEP_S3_MAX_ATTEMPTS": str(settings.s3_max_attempts),
        "PGKEEP_AGE_IDENTITY_FILE": str(settings.age_identity_file.absolute()) if settings.age_identity_file else None,
    }
    path = data_dir / RESTORE_ENV
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# Written by `pgkeep restore --kind physical` for restore_command; removed once recovery ends.\n")
        for key, value in values.items():
            if value is not None:
                fh.write(f"{key}={_env_quote(str(value))}\n")
    return path


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _write_recovery_conf(
    data_dir: Path, last: DatabaseBackup, options: PitrOptions, pgkeep_cmd: str, config: Path, port: int | None
) -> None:
    fetch = [pgkeep_cmd, "wal-fetch", "--config", str(config)]
    if options.prefetch:
        fetch += ["--spool", str(data_dir / PREFETCH_SPOOL)]
    restore_command = f"{shlex.join(fetch)} %f %p"
    lines: dict[str, str] = {
        "restore_command": restore_command,
        **options.target.settings(),
        "recovery_target_action": "promote",
        "recovery_target_timeline": "latest",
    }
    if not options.keep_archiving:
        lines["archive_mode"] = "off"
    if port is not None:
        lines["port"] = str(port)
    if options.start:
        # Beside the source on the same machine: its own port, local TCP only, no shared socket dir.
        lines["listen_addresses"] = "localhost"
        lines["unix_socket_directories"] = ""
    for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
        # Clusters whose configuration lives elsewhere (Debian: /etc/postgresql) back up without it.
        path = data_dir / name
        if not path.exists():
            path.write_text(_DEFAULT_CONF.get(name, ""), encoding="utf-8")
            os.chmod(path, 0o600)
    with open(data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
        fh.write(f"\n{CONF_MARK} {utcnow().isoformat()}: backup {last.id}, target {options.target.describe()}\n")
        for key, value in lines.items():
            fh.write(f"{key} = {_conf_quote(value)}\n")
    (data_dir / "recovery.signal").touch(mode=0o600)


_DEFAULT_CONF = {
    "pg_hba.conf": "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
}


def _connect_target(source: Target | None, port: int) -> Target | None:
    if source is None:
        return None
    return Target(
        params={**source.params, "host": "127.0.0.1", "port": str(port), "connect_timeout": "3"},
        password=source.password,
    )


def _recovery_failure(log_file: Path) -> str:
    text = postmaster.tail(log_file, 20000)
    # Our own connection attempts while the server starts are FATAL lines too: not the cause.
    noise = ("the database system is starting up", "not yet accepting connections", "Consistent recovery state")
    important = [
        line
        for line in text.splitlines()
        if ("FATAL:" in line or "PANIC:" in line) and not any(n in line for n in noise)
    ]
    fetch = [line for line in text.splitlines() if "wal-fetch" in line and "error" in line]
    lines = (fetch[-1:] + important[-2:]) or text.strip().splitlines()[-3:]
    return " | ".join(line.strip() for line in lines)


def _wait_for_recovery(
    source: Target | None, data_dir: Path, port: int, options: PitrOptions, result: PitrResult
) -> None:
    assert result.log_file is not None
    target = _connect_target(source, port)
    assert target is not None  # plan() refused --start without DATABASE_URL
    deadline = time.monotonic() + options.wait_timeout_s
    seen_pid = False
    started = time.monotonic()
    while True:
        pid = postmaster.postmaster_pid(data_dir)
        seen_pid = seen_pid or pid is not None
        if (seen_pid and not postmaster.running(pid)) or (not seen_pid and time.monotonic() - started > 30):
            why = _recovery_failure(result.log_file)
            # The archive ends before the target: a restore point name that was never created, a
            # time, LSN or transaction after the last archived WAL. The request's, not the server's.
            short = "before configured recovery target was reached" in why
            error = TargetNotReachedError if short else RestoreFailedError
            raise error(
                f"recovery stopped before reaching the target ({options.target.describe()}): {why}",
                operation="restore",
                backup_id=result.backup_id,
                hint=f"the server log is {result.log_file}; the data directory is left for inspection"
                + target_hint(options.target, result.backup_id),
            )
        try:
            with psycopg.connect(target.connect_conninfo(), autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row and not row[0]:
                    _report(conn, result)
                    return
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise RestoreFailedError(
                f"recovery did not finish within {options.wait_timeout_s:.0f} s; the server is still running",
                operation="restore",
                backup_id=result.backup_id,
                hint=f"follow it in {result.log_file}",
            )
        time.sleep(0.2)


def _report(conn: psycopg.Connection, result: PitrResult) -> None:
    row = conn.execute(
        "SELECT pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(), "
        "(SELECT timeline_id FROM pg_control_checkpoint())"
    ).fetchone()
    assert row is not None
    result.reached_lsn, result.reached_time, result.timeline = row[0], row[1], row[2]
    # PostgreSQL 13+ refuses to promote when a recovery target was not reached, so a
    # promoted server is at its target (for --latest: at the end of the archive).
    result.target_reached = True
    if result.target.time is not None and result.reached_time is not None:
        result.target_reached = result.reached_time <= result.target.time
    where = f"WAL {result.reached_lsn}" + (
        f", last transaction at {result.reached_time.isoformat()}" if result.reached_time else ""
    )
    result.message = (
        f"Recovered to {result.target.describe()} ({where}) from backup {result.backup_id}; "
        f"the server runs on port {result.port} (data directory {result.data_dir})"
    )
