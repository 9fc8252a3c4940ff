"""Recreating the catalog from storage alone (``pgkeep catalog rebuild``).

For a lost or damaged catalog database: every manifest in storage describes
one COMPLETED backup (services/manifest.py). Before its row is imported,
the artifact (and its globals companion) is read in full, streaming, and
must have the size and SHA-256 the manifest records.

Idempotent: a backup whose id or filename is already catalogued is skipped.
Reported and never imported as COMPLETED: an artifact without a manifest (a
backup that never completed, or whose manifest was lost), a manifest whose
artifact is missing or fails its check, and a manifest that cannot be read.
The private key is never needed: checksums cover the stored bytes.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from pgkeep.catalog.models import DatabaseBackup
from pgkeep.errors import ObjectNotFoundError, VerificationError
from pgkeep.observability.logs import get_logger
from pgkeep.services.context import Context
from pgkeep.services.manifest import (
    SUFFIX,
    files_problem,
    latest_keep,
    latest_verification,
    read_manifest,
    row_from_manifest,
)
from pgkeep.storage import Storage

log = get_logger("pgkeep.rebuild")

# What backup.py names an artifact: <prefix>-backup-<type>-<UTC time>[-n].<ext>
ARTIFACT_NAME = re.compile(
    r"-backup-[a-z_]+-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z(?:-\d+)?"
    r"\.(?:dump|sql|dir\.tar|base\.tar)(?:\.zst|\.gz)?(?:\.age)?$"
)


@dataclass
class RebuildReport:
    imported: list[dict[str, Any]] = field(default_factory=list)
    already_present: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        message = f"Imported {len(self.imported)} backups, {len(self.already_present)} were already catalogued" + (
            f", {len(self.problems)} reported (not imported)" if self.problems else ""
        )
        return {
            "message": message,
            "importedCount": len(self.imported),
            "imported": self.imported,
            "alreadyPresent": self.already_present,
            "problems": self.problems,
        }


def rebuild_catalog(ctx: Context, storage: Storage | None = None) -> RebuildReport:
    """Import every verified backup described by a manifest in ``storage`` (PGKEEP_STORAGE_URL).

    Storage that cannot be reached raises StorageError; rows imported until
    then stay (a second run skips them).
    """
    storage = storage or ctx.storage
    objects = {o.name: o for o in storage.list()}
    names = sorted(objects)
    report = RebuildReport()
    described: set[str] = set()
    for manifest_name in sorted(n for n in objects if n.endswith(SUFFIX)):
        filename = manifest_name[: -len(SUFFIX)]
        described.add(filename)
        try:
            manifest = read_manifest(storage, manifest_name)
        except (VerificationError, ObjectNotFoundError) as exc:
            report.problems.append({"filename": filename, "id": None, "problem": exc.message})
            continue
        entry = {"id": str(manifest["id"]), "filename": filename}
        if _catalogued(ctx, entry["id"], filename):
            report.already_present.append(entry)
            continue
        problem = files_problem(storage, objects, manifest)
        if problem:
            report.problems.append({**entry, "problem": problem})
            log.info("backup not imported", backup_id=entry["id"], file=filename, problem=problem)
            continue
        try:
            row = row_from_manifest(manifest, storage.url_for(filename))
        except VerificationError as exc:
            report.problems.append({**entry, "problem": exc.message})
            continue
        companions = _starting_with(names, filename)
        row.keep = latest_keep(storage, filename, companions)
        verified = latest_verification(storage, filename, companions)
        if verified and verified.get("startedAt"):
            row.last_verified_at = datetime.fromisoformat(verified["startedAt"])
            row.last_verify_level = verified.get("level")
            row.last_verify_ok = bool(verified.get("valid"))
        with ctx.catalog.session() as session:
            session.add(row)
            session.commit()
        report.imported.append(entry)
        log.info("backup imported from its manifest", backup_id=entry["id"], file=filename)
    for name in names:
        if ARTIFACT_NAME.search(name) and name not in described:
            report.problems.append(
                {
                    "filename": name,
                    "id": None,
                    "problem": "no manifest: the backup never completed, or its manifest was lost; not imported",
                }
            )
    return report


def _catalogued(ctx: Context, backup_id: str, filename: str) -> bool:
    with ctx.catalog.session() as session:
        found = session.scalar(
            select(DatabaseBackup.id).where((DatabaseBackup.id == backup_id) | (DatabaseBackup.filename == filename))
        )
    return found is not None


def _starting_with(names: list[str], prefix: str) -> list[str]:
    """The entries of sorted ``names`` that start with ``prefix`` (a contiguous run)."""
    start = end = bisect.bisect_left(names, prefix)
    while end < len(names) and names[end].startswith(prefix):
        end += 1
    return names[start:end]
