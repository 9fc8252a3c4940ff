"""One backup as people read it (``pgkeep show``); ``--json`` has every field as stored."""

from __future__ import annotations

from typing import Any

from pgkeep.cli.tables import when
from pgkeep.services.serialize import human_bytes


def describe_backup(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) lines for a backup in its JSON shape; fields it does not have are left out."""
    meta = data.get("metadata") or {}
    lines = [("backup", str(data["id"])), ("status", str(data["status"]))]
    if data.get("errorMessage"):
        lines.append(("error", str(data["errorMessage"])))
    lines.append(("kind", f"{data.get('kind') or 'logical'}, {data['type']}"))
    database = str(data.get("databaseName") or "?")
    tools = [f"PostgreSQL {data['serverVersion']}"] if data.get("serverVersion") else []
    tools += [f"pg_dump {data['pgDumpVersion']}"] if data.get("pgDumpVersion") else []
    lines.append(("database", database + (f" ({', '.join(tools)})" if tools else "")))
    lines.append(("file", str(data["filename"])))
    if data.get("storageUrl"):
        lines.append(("stored at", str(data["storageUrl"])))
    packing = [p for p in (data.get("format"), data.get("compression")) if p]
    packing.append(f"encrypted ({data['encryption']})" if data.get("encryption") else "not encrypted")
    lines.append(("format", ", ".join(str(p) for p in packing)))
    lines.append(("size", _size(data, meta)))
    if data.get("checksum"):
        lines.append(("sha256", str(data["checksum"])))
    lines.append(("started", f"{when(data.get('startedAt'))} UTC"))
    if data.get("completedAt"):
        took = f" (took {data['duration'] / 1000:.1f} s)" if data.get("duration") is not None else ""
        lines.append(("completed", f"{when(data['completedAt'])} UTC{took}"))
    kept = "; kept: retention never deletes it" if data.get("keep") else ""
    lines.append(("expires", (f"{when(data['expiresAt'])} UTC" if data.get("expiresAt") else "never") + kept))
    lines.append(("verified", _verified(data)))
    if meta.get("tableCount") is not None:
        counts = meta.get("tableCounts") or {}
        rows = f", {sum(counts.values()):,} rows counted" if counts else ""
        lines.append(("tables", f"{meta['tableCount']}{rows}"))
    if meta.get("reason"):
        lines.append(("reason", str(meta["reason"])))
    if data.get("kind") == "physical":
        lines += _physical(data)
    if data.get("createdById"):
        lines.append(("requested by", str(data["createdById"])))
    return lines


def _size(data: dict[str, Any], meta: dict[str, Any]) -> str:
    text = human_bytes(int(data.get("size") or 0))
    extra = []
    if meta.get("uncompressedSize"):
        extra.append(f"{human_bytes(int(meta['uncompressedSize']))} uncompressed")
    if meta.get("databaseSize"):
        extra.append(f"database {human_bytes(int(meta['databaseSize']))}")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _verified(data: dict[str, Any]) -> str:
    if not data.get("lastVerifiedAt"):
        return "never"
    outcome = "valid" if data.get("lastVerifyOk") else "FAILED"
    return f"{when(data['lastVerifiedAt'])} UTC, {data.get('lastVerifyLevel') or '?'} level: {outcome}"


def _physical(data: dict[str, Any]) -> list[tuple[str, str]]:
    lines = []
    if data.get("timeline") is not None:
        lines.append(("timeline", str(data["timeline"])))
    if data.get("startLsn") or data.get("endLsn"):
        lines.append(("WAL positions", f"{data.get('startLsn') or '?'} to {data.get('endLsn') or '?'}"))
    if data.get("walStart") or data.get("walEnd"):
        lines.append(("WAL files", f"{data.get('walStart') or '?'} to {data.get('walEnd') or '?'}"))
    if data.get("parentId"):
        lines.append(("incremental on", str(data["parentId"])))
    return lines
