"""JSON shapes shared by the CLI and the API (the spec's camelCase keys), and sizes for people."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pgkeep.catalog.models import DatabaseBackup


def human_bytes(nbytes: int) -> str:
    """1.5 GiB, 135.2 KiB: binary units, one decimal."""
    value, unit = float(nbytes), "B"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{value:.1f} {unit}" if unit != "B" else f"{nbytes} B"


MAX_NAMED = 5  # names listed in a message; the count says how many more


def named(items: list[str], total: int | None = None) -> str:
    """The first MAX_NAMED of ``items``, and how many more of ``total`` (default: all of them) there are."""
    total = len(items) if total is None else total
    more = f" and {total - MAX_NAMED} more" if total > MAX_NAMED else ""
    return ", ".join(items[:MAX_NAMED]) + more


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def backup_json(row: DatabaseBackup) -> dict[str, Any]:
    """One backup as in the spec's ``listBackups`` (``size`` a number)."""
    return {
        "id": row.id,
        "filename": row.filename,
        "size": int(row.size or 0),
        "type": row.type.value,
        "status": row.status.value,
        "storageUrl": row.storage_url,
        "checksum": row.checksum,
        "metadata": row.metadata_,
        "startedAt": iso(row.started_at),
        "completedAt": iso(row.completed_at),
        "expiresAt": iso(row.expires_at),
        "createdById": row.created_by_id,
        "errorMessage": row.error_message,
        "databaseName": row.database_name,
        "format": row.format,
        "compression": row.compression,
        "encryption": row.encryption,
        "serverVersion": row.server_version,
        "pgDumpVersion": row.pg_dump_version,
        "duration": row.duration_ms,
        "bytesWritten": int(row.bytes_written or 0),
        "keep": bool(row.keep),
        "lastVerifiedAt": iso(row.last_verified_at),
        "lastVerifyLevel": row.last_verify_level,
        "lastVerifyOk": row.last_verify_ok,
        "kind": row.kind or "logical",
        **(_physical_json(row) if row.kind == "physical" else {}),
    }


def _physical_json(row: DatabaseBackup) -> dict[str, Any]:
    """What a point-in-time restore needs to know about a base backup."""
    return {
        "timeline": row.timeline,
        "startLsn": row.start_lsn,
        "endLsn": row.end_lsn,
        "backupStartAt": iso(row.backup_start_at),
        "backupEndAt": iso(row.backup_end_at),
        "walStart": row.wal_start,
        "walEnd": row.wal_end,
        "parentId": row.parent_id,
    }


def pagination(page: int, limit: int, total: int) -> dict[str, int]:
    return {"page": page, "limit": limit, "total": total, "pages": math.ceil(total / limit)}
