"""JSON shapes shared by the CLI and the API (the spec's camelCase keys)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pgkeep.catalog.models import DatabaseBackup


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
        "serverVersion": row.server_version,
        "pgDumpVersion": row.pg_dump_version,
        "duration": row.duration_ms,
        "bytesWritten": int(row.bytes_written or 0),
        "keep": bool(row.keep),
        "lastVerifiedAt": iso(row.last_verified_at),
        "lastVerifyLevel": row.last_verify_level,
        "lastVerifyOk": row.last_verify_ok,
    }


def pagination(page: int, limit: int, total: int) -> dict[str, int]:
    return {"page": page, "limit": limit, "total": total, "pages": math.ceil(total / limit)}
