"""The API benchmark's catalog: rows shaped like a real catalog's, and filling it fast.

``generate_rows`` gives database_backups rows (mixed kinds, types and
statuses, metadata like real backups', newest first over about three
years); ``verifications_for`` their verification history. SQLite is filled
through SQLAlchemy Core (so values are stored exactly as pgkeep stores
them), PostgreSQL with COPY.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Table, insert

from pgkeep.catalog.db import create_catalog_engine
from pgkeep.catalog.models import BackupStatus, BackupType

DATABASES = ("app", "billing", "analytics", "auth", "notes", "search", "events", "crm")
TABLES = (
    "organizations",
    "users",
    "meetings",
    "meeting_participants",
    "transcripts",
    "summaries",
    "invoices",
    "payments",
    "sessions",
    "audit_events",
    "tags",
    "attachments",
)
# (kind, type, weight): most rows are scheduled logical backups, as in a catalog a cron fills.
KINDS_TYPES = (
    ("logical", BackupType.SCHEDULED, 62),
    ("logical", BackupType.MANUAL, 12),
    ("logical", BackupType.PRE_MIGRATION, 6),
    ("physical", BackupType.FULL, 8),
    ("physical", BackupType.INCREMENTAL, 6),
    ("logical", BackupType.FULL, 6),
)
# Old rows are DELETED or EXPIRED by retention; a few failures; a handful still running.
STATUSES = (
    (BackupStatus.COMPLETED, 58),
    (BackupStatus.DELETED, 26),
    (BackupStatus.EXPIRED, 6),
    (BackupStatus.FAILED, 10),
)
PHYSICAL_COLUMNS = (
    "timeline",
    "start_lsn",
    "end_lsn",
    "backup_start_at",
    "backup_end_at",
    "wal_start",
    "wal_end",
    "parent_id",
)
FAILURES = (
    "pg_dump exited with status 1: pg_dump: error: connection to server lost",
    "storage error: PUT failed after 5 attempts (503 Slow Down)",
    "interrupted (SIGTERM)",
    "no space left on device while writing the artifact",
)


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(n * 4):0{n}x}"


def generate_rows(count: int, seed: int, now: datetime) -> Iterator[dict[str, Any]]:
    """``count`` catalog rows, newest first, spread over about three years; columns by name."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    kinds = [(k, t) for k, t, w in KINDS_TYPES for _ in range(w)]
    statuses = [s for s, w in STATUSES for _ in range(w)]
    step = timedelta(days=3 * 365) / max(count, 1)
    for i in range(count):
        kind, backup_type = rng.choice(kinds)
        db = rng.choice(DATABASES)
        status = BackupStatus.IN_PROGRESS if i < 3 else rng.choice(statuses)  # the newest few still run
        started = now - step * i - timedelta(milliseconds=rng.randrange(1000))
        started = started.replace(microsecond=started.microsecond // 1000 * 1000)
        duration_ms = rng.randrange(2_000, 900_000)
        size = rng.randrange(10_000_000, 40_000_000_000)
        ext = ".dump.zst" if kind == "logical" else ".tar.zst"
        stamp = started.strftime("%Y-%m-%dT%H-%M-%S-") + f"{started.microsecond // 1000:03d}Z"
        filename = f"{db}-backup-{backup_type.value.lower()}-{stamp}-{i}{ext}"
        done = status not in (BackupStatus.IN_PROGRESS, BackupStatus.FAILED)
        meta: dict[str, Any] = {"lockBackendPid": rng.randrange(1000, 99999), "host": "db-backup-1", "pid": 4242}
        if done:
            meta |= {
                "kind": kind,
                "serverVersion": "15.18",
                "compression": "zstd",
                "uncompressedSize": size * 3,
                "durationMs": duration_ms,
                "timestamp": (started + timedelta(milliseconds=duration_ms)).isoformat(),
            }
            if kind == "logical":
                counts = {t: rng.randrange(0, 5_000_000) for t in rng.sample(TABLES, rng.randrange(4, len(TABLES)))}
                meta |= {
                    "tableCounts": counts,
                    "tableCount": len(counts),
                    "databaseSize": size * 4,
                    "pgDumpVersion": "pg_dump (PostgreSQL) 15.18",
                    "format": "custom",
                }
            else:
                meta |= {
                    "incremental": backup_type is BackupType.INCREMENTAL,
                    "systemIdentifier": "7441128503416543272",
                    "walSegmentSize": 16_777_216,
                    "pgBasebackupVersion": "15.18",
                    "pgManifest": {"files": rng.randrange(900, 3000), "checksumAlgorithm": "CRC32C"},
                }
        ended = None if status is BackupStatus.IN_PROGRESS else started + timedelta(milliseconds=duration_ms)
        row: dict[str, Any] = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "filename": filename,
            "size": size if done else 0,
            "type": backup_type,
            "status": status,
            "storage_url": f"s3://backups/pgkeep/{filename}",
            "checksum": _hex(rng, 64) if done else None,
            "metadata": meta,
            "started_at": started,
            "completed_at": ended,
            "expires_at": started + timedelta(days=30),
            "created_by_id": None if backup_type is BackupType.SCHEDULED else str(uuid.UUID(int=rng.getrandbits(128))),
            "error_message": rng.choice(FAILURES) if status is BackupStatus.FAILED else None,
            "database_name": db,
            "format": "custom" if kind == "logical" else "tar",
            "compression": "zstd",
            "encryption": "age" if i % 7 == 0 else None,
            "server_version": "15.18",
            "pg_dump_version": "15.18",
            "duration_ms": duration_ms,
            "bytes_written": size if done else rng.randrange(0, 1_000_000_000),
            "keep": i % 997 == 0,
            "last_verified_at": started + timedelta(hours=1) if done and i % 3 == 0 else None,
            "last_verify_level": "archive" if done and i % 3 == 0 else None,
            "last_verify_ok": True if done and i % 3 == 0 else None,
            "kind": kind,
            # executemany needs every row to name the same columns
            **dict.fromkeys(PHYSICAL_COLUMNS),
        }
        if kind == "physical" and done:
            lsn = f"{i // 1000:X}/{rng.getrandbits(28):X}"
            row |= {
                "timeline": 1,
                "start_lsn": lsn,
                "end_lsn": lsn,
                "backup_start_at": started,
                "backup_end_at": started + timedelta(milliseconds=duration_ms),
                "wal_start": f"00000001{i // 256:08X}{i % 256:08X}",
                "wal_end": f"00000001{i // 256:08X}{i % 256:08X}",
            }
        yield row


def verifications_for(backups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A backup_verifications row per verified backup; every 639th (about weekly) a restore drill."""
    out = []
    for i, b in enumerate(backups):
        if b["last_verified_at"] is None:
            continue
        drill = i % 639 == 0  # a multiple of 3: every third backup is verified
        out.append(
            {
                "id": str(uuid.UUID(int=uuid.UUID(b["id"]).int ^ 1, version=4)),
                "backup_id": b["id"],
                "level": "restore" if drill else "archive",
                "valid": True,
                "message": "restored into a scratch database; row counts match" if drill else "checksum and archive OK",
                "details": {"tables": b["metadata"].get("tableCount")},
                "started_at": b["last_verified_at"],
                "duration_ms": 4_000,
            }
        )
    return out


Tables = list[tuple[Table, list[dict[str, Any]]]]


def fill_sqlite(catalog_url: str, tables: Tables) -> None:
    """executemany through SQLAlchemy Core, so values are stored exactly as pgkeep stores them."""
    engine = create_catalog_engine(catalog_url)
    try:
        with engine.begin() as conn:
            for table, rows in tables:
                for start in range(0, len(rows), 5000):
                    conn.execute(insert(table), rows[start : start + 5000])
    finally:
        engine.dispose()


def fill_postgresql(conninfo: str, tables: Tables) -> None:
    """COPY: seconds for 100,000 rows. Then VACUUM ANALYZE, as autovacuum would on a real catalog."""

    def value(v: Any) -> Any:
        if isinstance(v, BackupType | BackupStatus):
            return v.value
        if isinstance(v, dict):
            return json.dumps(v)
        return v

    with psycopg.connect(conninfo, autocommit=True) as conn:
        # The cluster commits asynchronously; until the COPY's commit is flushed, VACUUM can set
        # no hint bits and no visibility map, and every index-only scan would visit the heap.
        conn.execute("SET synchronous_commit = on")
        for table, rows in tables:
            columns = [c.name for c in table.columns]
            # Names from our own models, not input.
            with conn.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([value(row.get(c)) for c in columns])
            conn.execute(f"VACUUM ANALYZE {table.name}")
