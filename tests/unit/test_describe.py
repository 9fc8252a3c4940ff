"""`pgkeep show` as people read it (pure: the JSON shape in, labelled lines out)."""

from __future__ import annotations

from typing import Any

from pgkeep.cli.describe import describe_backup

LOGICAL: dict[str, Any] = {
    "id": "9ffd6292-b5d3-4d1a-953c-d15cc5966e4f",
    "filename": "app-backup-manual-2026-11-27T23-51-08-242Z.dump.zst.age",
    "size": 1540,
    "type": "MANUAL",
    "status": "COMPLETED",
    "storageUrl": "s3://bucket/app/app-backup-manual-2026-11-27T23-51-08-242Z.dump.zst.age",
    "checksum": "532bd673" * 8,
    "metadata": {"tableCount": 2, "tableCounts": {"public.a": 1000, "public.b": 234}, "uncompressedSize": 12445},
    "startedAt": "2026-11-27T23:51:08.242Z",
    "completedAt": "2026-11-27T23:51:09.842Z",
    "expiresAt": "2026-12-27T23:51:08.242Z",
    "createdById": None,
    "errorMessage": None,
    "databaseName": "app",
    "format": "custom",
    "compression": "zstd",
    "encryption": "age",
    "serverVersion": "15.18",
    "pgDumpVersion": "15.18",
    "duration": 1600,
    "keep": True,
    "lastVerifiedAt": "2026-11-28T04:00:00.000Z",
    "lastVerifyLevel": "restore",
    "lastVerifyOk": True,
    "kind": "logical",
}


def test_a_completed_backup_reads_as_sentences_not_a_dict() -> None:
    lines = dict(describe_backup(LOGICAL))
    assert lines["database"] == "app (PostgreSQL 15.18, pg_dump 15.18)"
    assert lines["format"] == "custom, zstd, encrypted (age)"
    assert lines["size"] == "1.5 KiB (12.2 KiB uncompressed)"
    assert lines["completed"] == "2026-11-27 23:51:09 UTC (took 1.6 s)"
    assert lines["expires"] == "2026-12-27 23:51:08 UTC; kept: retention never deletes it"
    assert lines["verified"] == "2026-11-28 04:00:00 UTC, restore level: valid"
    assert lines["tables"] == "2, 1,234 rows counted"
    assert "error" not in lines and "requested by" not in lines
    assert not any(text in ("None", "") or "{" in text for _, text in describe_backup(LOGICAL))


def test_a_failed_physical_backup_says_why_and_where_its_wal_starts() -> None:
    failed = LOGICAL | {
        "status": "FAILED",
        "errorMessage": "pg_basebackup exited with status 1: could not connect",
        "kind": "physical",
        "type": "FULL",
        "metadata": None,
        "completedAt": None,
        "checksum": None,
        "encryption": None,
        "keep": False,
        "lastVerifiedAt": None,
        "timeline": 1,
        "startLsn": "0/2000028",
        "endLsn": None,
        "walStart": "000000010000000000000002",
        "walEnd": None,
        "parentId": None,
        "createdById": "token-1",
    }
    lines = describe_backup(failed)
    labels = [label for label, _ in lines]
    assert labels[:3] == ["backup", "status", "error"]
    text = dict(lines)
    assert text["error"].startswith("pg_basebackup exited")
    assert text["kind"] == "physical, FULL" and text["format"] == "custom, zstd, not encrypted"
    assert text["verified"] == "never" and "completed" not in text and "sha256" not in text
    assert text["WAL positions"] == "0/2000028 to ?" and text["timeline"] == "1"
    assert text["requested by"] == "token-1"
