"""Self-describing backups: a manifest stored beside each artifact.

``<filename>.manifest.json`` holds everything the catalog row says about a
COMPLETED backup (id, type, format, compression, encryption recipients'
fingerprints, size, SHA-256, versions, row counts, times, database, the
globals companion), so the catalog is an index that ``pgkeep catalog
rebuild`` can recreate from storage alone.

Write ordering: the manifest is written after the artifact is committed and
before the row says COMPLETED. So a manifest always describes a complete
artifact (whose checksum a rebuild still checks), and an artifact without a
manifest is one whose backup never completed.

Manifests are not encrypted, even for encrypted backups: a rebuild must work
without the private key. They reveal table names, row counts, sizes and
versions, never data.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pgkeep.catalog.models import BackupStatus, BackupType, DatabaseBackup
from pgkeep.errors import ObjectNotFoundError, VerificationError
from pgkeep.storage import ObjectInfo, Storage
from pgkeep.storage.base import check_object, put_bytes

SUFFIX = ".manifest.json"
PG_MANIFEST_SUFFIX = ".backup_manifest.zst"  # PostgreSQL's manifest beside a physical backup
KIND = "pgkeep-backup-manifest"
VERSION = 1
MAX_BYTES = 16 << 20  # a manifest is a few KiB; anything huge is not one of ours


def manifest_name(filename: str) -> str:
    return filename + SUFFIX


def globals_name(filename: str, encrypted: bool = False) -> str:
    """The roles/tablespaces companion of a backup (``pg_dumpall --globals-only``)."""
    return f"{filename}.globals.sql.zst" + (".age" if encrypted else "")


def owned_names(filename: str, metadata: dict[str, Any] | None = None) -> list[str]:
    """Every object a backup may have stored, in deletion order: the artifact first,
    its companions, the manifest last (it describes the backup until the end)."""
    recorded = (metadata or {}).get("globals")
    companions = [recorded["filename"]] if recorded else [globals_name(filename), globals_name(filename, True)]
    pg_manifest = (metadata or {}).get("pgManifest")  # a physical backup's backup_manifest
    if pg_manifest:
        companions.append(pg_manifest["filename"])
    elif ".base.tar" in filename:  # a physical backup that never completed (crash recovery)
        companions.append(filename + PG_MANIFEST_SUFFIX)
    return [filename, *companions, manifest_name(filename)]


# Metadata flag of a FAILED backup whose files could not be removed (storage unreachable):
# crash recovery and cleanup retry the removal (services.recovery.finish_pending_cleanups).
CLEANUP_PENDING = "storageCleanupPending"


VERIFICATION_MARK = ".verification-"
KEEP_MARK = ".keep-"


def _record_name(filename: str, mark: str, at: datetime) -> str:
    return f"{filename}{mark}{at.strftime('%Y%m%dT%H%M%S%f')}Z.json"


def verification_name(filename: str, at: datetime) -> str:
    """An immutable record of one verification, beside the backup (names sort by time)."""
    return _record_name(filename, VERIFICATION_MARK, at)


def _write_record(storage: Storage, name: str, record: dict[str, Any]) -> str:
    writer = storage.open_writer(name)
    try:
        writer.write(json.dumps(record, sort_keys=True, default=str).encode())
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return name


def _latest_record(storage: Storage, prefix: str, names: list[str]) -> dict[str, Any] | None:
    records = sorted(n for n in names if n.startswith(prefix))
    if not records:
        return None
    with storage.open_reader(records[-1]) as reader:
        data = reader.read(MAX_BYTES)
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def write_verification(storage: Storage, filename: str, record: dict[str, Any], at: datetime) -> str:
    """Store one verification's level, outcome, time and duration next to the backup."""
    return _write_record(storage, verification_name(filename, at), {"kind": "pgkeep-verification", **record})


def latest_verification(storage: Storage, filename: str, names: list[str]) -> dict[str, Any] | None:
    """The newest verification record among ``names`` for ``filename`` (None if there is none)."""
    return _latest_record(storage, filename + VERIFICATION_MARK, names)


def write_keep(storage: Storage, filename: str, keep: bool, at: datetime, by: str | None = None) -> str:
    """Record beside the backup that it is kept (or released), for a catalog rebuilt from storage.

    Objects are never overwritten, so every change is a new record and the
    newest one holds: a rebuilt catalog keeps what the lost one kept, and
    retention never deletes a backup an operator put on hold.
    """
    record = {"kind": "pgkeep-keep", "keep": keep, "at": at.isoformat(), "by": by}
    return _write_record(storage, _record_name(filename, KEEP_MARK, at), record)


def latest_keep(storage: Storage, filename: str, names: list[str]) -> bool:
    """Whether the newest keep record among ``names`` for ``filename`` keeps it (False without one)."""
    record = _latest_record(storage, filename + KEEP_MARK, names)
    return bool(record and record.get("keep") is True)


def remove_backup_files(storage: Storage, filename: str, metadata: dict[str, Any] | None = None) -> None:
    """Remove what a backup left in storage: incomplete uploads, the artifact, companions, manifest.

    Idempotent (a missing object is not an error); raises StorageError if the
    storage cannot be reached, so the caller can retry later.
    """
    storage.remove_incomplete(filename)  # an upload whose abort never reached the server
    *data_names, manifest = owned_names(filename, metadata)
    for name in data_names:
        storage.delete(name)
    for mark in (VERIFICATION_MARK, KEEP_MARK):
        for record in storage.list(prefix=filename + mark):
            storage.delete(record.name)
    storage.delete(manifest)


def _time(value: datetime | None) -> str | None:
    # Full precision, so that a rebuilt row equals the original one.
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def manifest_for(row: DatabaseBackup) -> dict[str, Any]:
    """The manifest of a backup whose row holds its final (COMPLETED) values."""
    metadata = dict(row.metadata_ or {})
    encryption = metadata.get("encryption") if row.encryption else None
    return {
        "kind": KIND,
        "manifestVersion": VERSION,
        "id": row.id,
        "filename": row.filename,
        "type": row.type.value,
        "status": BackupStatus.COMPLETED.value,
        "databaseName": row.database_name,
        "format": row.format,
        "compression": row.compression,
        "encryption": encryption,
        "size": int(row.size),
        "sha256": row.checksum,
        "serverVersion": row.server_version,
        "pgDumpVersion": row.pg_dump_version,
        "tableCounts": metadata.get("tableCounts"),
        "globals": metadata.get("globals"),
        "startedAt": _time(row.started_at),
        "completedAt": _time(row.completed_at),
        "expiresAt": _time(row.expires_at),
        "durationMs": row.duration_ms,
        "createdById": row.created_by_id,
        "storageUrl": row.storage_url,
        "metadata": metadata,
        "backupKind": row.kind or "logical",  # "kind" names the manifest format itself
        "parentId": row.parent_id,
    }


def write_manifest(storage: Storage, manifest: dict[str, Any]) -> str:
    """Store ``manifest`` beside its artifact; return the manifest's name."""
    name = manifest_name(manifest["filename"])
    data = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode() + b"\n"
    put_bytes(storage, name, data)
    return name


def read_manifest(storage: Storage, name: str) -> dict[str, Any]:
    """Load and check a manifest; VerificationError if it is not a pgkeep manifest."""
    with storage.open_reader(name) as reader:
        data = reader.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise VerificationError(f"{name} is too large to be a manifest")
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise VerificationError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise VerificationError(f"{name} is not a pgkeep backup manifest")
    if manifest.get("manifestVersion") != VERSION:
        raise VerificationError(
            f"{name} has manifest version {manifest.get('manifestVersion')!r}; this pgkeep reads {VERSION}",
            hint="rebuild the catalog with the pgkeep version that wrote the backups",
        )
    missing = [k for k in ("id", "filename", "type", "size", "sha256", "startedAt") if not manifest.get(k)]
    if missing or manifest_name(str(manifest["filename"])) != name:
        why = f"lacks {', '.join(missing)}" if missing else f"describes {manifest['filename']}"
        raise VerificationError(f"{name} {why}")
    return manifest


def row_from_manifest(manifest: dict[str, Any], storage_url: str) -> DatabaseBackup:
    """A COMPLETED catalog row as the manifest describes it, at ``storage_url``."""
    encryption = manifest.get("encryption")
    try:
        return DatabaseBackup(
            id=str(manifest["id"]),
            filename=str(manifest["filename"]),
            size=int(manifest["size"]),
            bytes_written=int(manifest["size"]),
            type=BackupType(manifest["type"]),
            status=BackupStatus.COMPLETED,
            storage_url=storage_url,
            checksum=str(manifest["sha256"]),
            metadata_=manifest.get("metadata"),
            started_at=_parse_time(manifest["startedAt"]),
            completed_at=_parse_time(manifest.get("completedAt")),
            expires_at=_parse_time(manifest.get("expiresAt")),
            created_by_id=manifest.get("createdById"),
            database_name=manifest.get("databaseName"),
            format=manifest.get("format"),
            compression=manifest.get("compression"),
            encryption=encryption.get("format") if isinstance(encryption, dict) else None,
            server_version=manifest.get("serverVersion"),
            pg_dump_version=manifest.get("pgDumpVersion"),
            duration_ms=manifest.get("durationMs"),
            keep=False,
            kind=manifest.get("backupKind") or "logical",
            parent_id=manifest.get("parentId"),
            **_physical_columns(manifest.get("metadata")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"{manifest_name(str(manifest.get('filename')))} is malformed: {exc}") from None


def _physical_columns(metadata: Any) -> dict[str, Any]:
    """A physical backup's WAL positions and times, kept in its metadata (services/physical.py)."""
    physical = metadata.get("physical") if isinstance(metadata, dict) else None
    if not isinstance(physical, dict):
        return {}
    out = {k: physical.get(k) for k in ("timeline", "start_lsn", "end_lsn", "wal_start", "wal_end")}
    for key in ("backup_start_at", "backup_end_at"):
        out[key] = _parse_time(physical.get(key))
    return out


def files_problem(storage: Storage, objects: dict[str, ObjectInfo], manifest: dict[str, Any]) -> str | None:
    """Why the manifest's files are not what it says (None when they are): size first, then SHA-256."""
    try:
        files = [(str(manifest["filename"]), str(manifest["sha256"]), int(manifest["size"]))]
        companion = manifest.get("globals")
        if isinstance(companion, dict) and companion.get("filename"):
            files.append((str(companion["filename"]), str(companion.get("checksum")), int(companion.get("size", -1))))
    except (KeyError, TypeError, ValueError) as exc:
        return f"{manifest_name(str(manifest.get('filename')))} is malformed: {exc!r}"
    for name, _, size in files:
        info = objects.get(name)
        if info is None:
            return f"{name} is missing from storage"
        if info.size != size:
            return f"{name} has {info.size} bytes, its manifest says {size}"
    for name, sha256, size in files:
        try:
            check_object(storage, name, sha256, size)
        except (VerificationError, ObjectNotFoundError) as exc:
            return exc.message
    return None
