"""What physical backups need from PostgreSQL: server settings, pg_basebackup, its label and manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
from psycopg import sql

from pgkeep.errors import ConfigError, InsufficientPrivilegeError, VerificationError
from pgkeep.pgtools.binaries import Tool
from pgkeep.pgtools.conninfo import Target

INCREMENTAL_MIN_MAJOR = 17


@dataclass(frozen=True)
class ClusterInfo:
    """The settings of the source cluster that decide whether a physical backup can work."""

    major: int
    system_identifier: str
    timeline: int
    wal_segment_size: int
    wal_level: str
    archive_mode: str
    archive_command: str
    summarize_wal: bool | None  # None before PostgreSQL 17
    user_tablespaces: list[str]
    in_recovery: bool
    can_replicate: bool
    role: str


def cluster_info(conn: psycopg.Connection) -> ClusterInfo:
    def setting(name: str) -> str:
        row = conn.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,)).fetchone()
        return str(row[0]) if row and row[0] is not None else ""

    major = conn.info.server_version // 10000
    ident = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    timeline = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
    spaces = conn.execute(
        "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1"
    ).fetchall()
    role = conn.execute(
        "SELECT current_user, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return ClusterInfo(
        major=major,
        system_identifier=str(ident[0]) if ident else "",
        timeline=int(timeline[0]) if timeline else 1,
        wal_segment_size=int(setting("wal_segment_size") or 16 << 20),
        wal_level=setting("wal_level"),
        archive_mode=setting("archive_mode"),
        archive_command=setting("archive_command"),
        summarize_wal=(setting("summarize_wal") == "on") if major >= INCREMENTAL_MIN_MAJOR else None,
        user_tablespaces=[str(r[0]) for r in spaces],
        in_recovery=bool(recovery and recovery[0]),
        can_replicate=bool(role and role[1]),
        role=str(role[0]) if role else "?",
    )


class PhysicalBackupRefusedError(ConfigError):
    """The database server cannot take the physical backup asked for (archiving off, too old...).

    A configuration error of the *database server*, named in its own terms: the
    API answers it with 422 and the reason (other ConfigErrors name pgkeep's
    paths and binaries and are answered with a fixed 500 sentence).
    """

    http_status = 422
    code = "physical_backup_refused"
    title = "The server cannot take this physical backup"


def check_can_back_up(info: ClusterInfo, *, incremental: bool) -> None:
    """Refuse, with the fix, what would give a base backup no WAL archive could complete."""
    if info.wal_level not in ("replica", "logical"):
        raise PhysicalBackupRefusedError(
            f"physical backups need wal_level = replica (the server has {info.wal_level})",
            hint="set wal_level = replica in postgresql.conf and restart the server",
        )
    if info.archive_mode not in ("on", "always") or not info.archive_command:
        raise PhysicalBackupRefusedError(
            "physical backups need WAL archiving: the server has "
            f"archive_mode = {info.archive_mode or 'off'}"
            + ("" if info.archive_command else " and no archive_command"),
            hint="set archive_mode = on and archive_command = 'pgkeep wal-push --config FILE %p' "
            "(see the README), then restart the server",
        )
    if not info.can_replicate:
        raise InsufficientPrivilegeError(
            f"role {info.role} lacks the REPLICATION attribute that pg_basebackup needs",
            operation="backup",
            hint=f"ALTER ROLE {sql.Identifier(info.role).as_string(None)} REPLICATION "
            "(and allow it in pg_hba.conf's replication lines)",
        )
    if info.user_tablespaces:
        raise PhysicalBackupRefusedError(
            f"the cluster has tablespaces outside the data directory ({', '.join(info.user_tablespaces)}); "
            "pgkeep streams a physical backup as one tar and supports only the data directory",
            hint="use logical backups for this cluster, or move the tablespaces' contents to pg_default",
        )
    if incremental:
        if info.major < INCREMENTAL_MIN_MAJOR:
            raise PhysicalBackupRefusedError(
                f"incremental backups need PostgreSQL {INCREMENTAL_MIN_MAJOR} or newer; "
                f"the server is PostgreSQL {info.major}",
                hint="take a full physical backup (--type full) instead",
            )
        if not info.summarize_wal:
            raise PhysicalBackupRefusedError(
                "incremental backups need WAL summaries: the server has summarize_wal = off",
                hint="set summarize_wal = on (no restart needed), then take a full backup before the "
                "first incremental one",
            )


def probe_replication(target: Target) -> str:
    """Open a replication connection as pg_basebackup will and identify the system; its timeline and
    position, described. Raises InsufficientPrivilegeError naming the cause (pg_hba.conf's replication
    lines, the REPLICATION attribute, max_wal_senders: none shows on an ordinary connection)."""
    conninfo = psycopg.conninfo.make_conninfo(target.connect_conninfo(), replication="true")
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            result = conn.pgconn.exec_(b"IDENTIFY_SYSTEM")
            if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                raise psycopg.OperationalError(result.get_error_message())
            timeline, position = (result.get_value(0, i) for i in (1, 2))
    except psycopg.Error as exc:
        raise InsufficientPrivilegeError(
            f"a replication connection to {target.describe()} (as pg_basebackup opens) was refused: "
            f"{target.error_text(exc)}",
            operation="check",
            hint="the role needs LOGIN REPLICATION, pg_hba.conf a `replication` line for it and this host, "
            "and the server max_wal_senders > 0 (see the README's physical backup set-up)",
        ) from None
    return f"timeline {(timeline or b'?').decode()}, WAL at {(position or b'?').decode()}"


def basebackup_argv(tool: Tool, target: Target, label: str, incremental_manifest: Path | None = None) -> list[str]:
    """pg_basebackup writing one tar (with its backup_manifest) to stdout.

    ``-X none``: the WAL comes from the archive, and with it pg_basebackup
    returns only once the server has archived every segment the backup
    needs (and its backup history file), so a COMPLETED backup is restorable.
    """
    argv = [
        str(tool.path),
        f"--dbname={target.conninfo()}",
        "--no-password",
        "--pgdata=-",
        "--format=tar",
        "--wal-method=none",
        "--checkpoint=fast",
        "--manifest-checksums=CRC32C",
        f"--label={label}",
    ]
    if incremental_manifest is not None:
        argv.append(f"--incremental={incremental_manifest}")
    return argv


@dataclass(frozen=True)
class BackupPosition:
    timeline: int
    start_lsn: str
    end_lsn: str
    start_time: datetime | None


def read_position(label: bytes, manifest: bytes) -> BackupPosition:
    """Where a base backup starts and ends, from its backup_label and backup_manifest."""
    try:
        doc: dict[str, Any] = json.loads(manifest)
        ranges = doc["WAL-Ranges"]
        first, last = ranges[0], ranges[-1]
        timeline, start, end = int(last["Timeline"]), str(first["Start-LSN"]), str(last["End-LSN"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise VerificationError(f"the backup's backup_manifest has no usable WAL-Ranges: {exc}") from None
    fields = {}
    for line in label.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields[key.strip()] = value.strip()
    return BackupPosition(timeline, start, end, _label_time(fields.get("START TIME")))


def _label_time(text: str | None) -> datetime | None:
    """``2026-11-26 15:20:49 UTC`` (the server's log_timezone abbreviation) as UTC, if parseable."""
    if not text:
        return None
    stamp, _, zone = text.rpartition(" ")
    try:
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    if zone in ("UTC", "GMT"):
        return when.replace(tzinfo=UTC)
    return None  # another zone abbreviation is ambiguous; the catalog keeps pgkeep's own times
