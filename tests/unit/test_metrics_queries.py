"""The catalog metrics read by index walks, not scans, say what the plain definitions say;
the WAL archive is not listed again on every scrape.

``/metrics`` answers every Prometheus scrape: at 100,000 catalog rows its
full scans and the archive check's row objects took 0.8 s, so they became
index walks and column reads (``observability/metrics.py``,
``services/archive.py``). Here a varied catalog (overlapping backups that
complete out of start order, successes deleted later, failures, physical
backups with and without a recorded segment size) is checked against the
definitions computed over every row in Python.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pgkeep.catalog.models import PHYSICAL, BackupStatus, BackupType, DatabaseBackup
from pgkeep.errors import StorageError
from pgkeep.observability import metrics
from pgkeep.observability.metrics import build_registry
from pgkeep.services import archive
from pgkeep.services.context import Context
from pgkeep.wal.naming import segment_key
from pgkeep.wal.status import ArchiveStatus

SUCCEEDED = (BackupStatus.COMPLETED, BackupStatus.EXPIRED, BackupStatus.DELETED)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(seed: int, n: int) -> list[DatabaseBackup]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        started = T0 + timedelta(minutes=rng.randrange(0, 60 * 24 * 30))
        status = rng.choice(list(BackupStatus))
        backup_type = rng.choice([BackupType.SCHEDULED, BackupType.SCHEDULED, BackupType.MANUAL, BackupType.FULL])
        finished = status is not BackupStatus.IN_PROGRESS
        # Some run for hours: they complete after backups that started later.
        completed = started + timedelta(minutes=rng.choice([1, 5, 600])) if finished else None
        # A deleted backup may have failed first (no checksum) or succeeded.
        checksum = f"{i:064x}" if status in SUCCEEDED and rng.random() < 0.9 else None
        if status in (BackupStatus.COMPLETED, BackupStatus.EXPIRED):
            checksum = f"{i:064x}"
        physical = rng.random() < 0.3
        metadata = {"walSegmentSize": rng.choice([16 << 20, 64 << 20])} if physical and rng.random() < 0.5 else {}
        rows.append(
            DatabaseBackup(
                id=str(uuid.UUID(int=rng.getrandbits(128))),
                filename=f"b{i}.dump",
                type=backup_type,
                status=status,
                started_at=started,
                completed_at=completed,
                checksum=checksum,
                size=rng.randrange(1, 10**9),
                duration_ms=rng.randrange(1, 10**6),
                kind=PHYSICAL if physical else "logical",
                wal_start=f"{rng.randrange(1, 3):08X}{0:08X}{rng.randrange(1, 200):08X}" if physical else None,
                metadata_=metadata,
            )
        )
    # The newest of them all: a long MANUAL backup that completes after a later, short one.
    end = T0 + timedelta(days=31)
    for name, started, minutes in (("long", end, 600), ("short", end + timedelta(hours=1), 1)):
        rows.append(
            DatabaseBackup(
                filename=f"{name}.dump",
                type=BackupType.MANUAL,
                status=BackupStatus.COMPLETED,
                started_at=started,
                completed_at=started + timedelta(minutes=minutes),
                checksum="f" * 64,
                size=1,
                duration_ms=minutes * 60_000,
            )
        )
    return rows


def _metrics(ctx: Context) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(build_registry(ctx)).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metrics_match_their_definitions_over_every_row(ctx: Context, seed: int) -> None:
    rows = _rows(seed, 400)
    with ctx.catalog.session() as session:
        session.add_all(rows)
        session.commit()
    got = _metrics(ctx)

    last_success = {
        t.value: max(
            r.completed_at.timestamp()
            for r in rows
            if r.type is t and r.checksum and r.status in SUCCEEDED and r.completed_at
        )
        for t in {r.type for r in rows if r.checksum and r.status in SUCCEEDED and r.completed_at}
    }
    assert {labels["type"]: value for labels, value in got["pgkeep_last_success_timestamp_seconds"]} == last_success

    finished = [r for r in rows if r.status in (*SUCCEEDED, BackupStatus.FAILED)]
    last = max(finished, key=lambda r: (r.started_at, r.id))
    assert got["pgkeep_last_backup_size_bytes"] == [({}, float(last.size))]
    assert got["pgkeep_last_backup_duration_seconds"] == [({}, (last.duration_ms or 0) / 1000)]
    assert got["pgkeep_last_backup_success"] == [({}, 0.0 if last.status is BackupStatus.FAILED else 1.0)]

    completed = sorted(
        (r for r in rows if r.kind == PHYSICAL and r.status is BackupStatus.COMPLETED and r.wal_start),
        key=lambda r: r.started_at,
    )
    status = archive.status(ctx)
    assert status.oldest_needed == min((r.wal_start for r in completed if r.wal_start), key=segment_key)
    assert status.segment_size == archive.segment_size_of(completed)


def test_the_wal_archive_is_listed_at_most_once_a_minute_and_its_age_is_always_current(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed_at = datetime.now(UTC) - timedelta(seconds=100)
    calls: list[int] = []
    failing = [True]

    def fake_status(_ctx: Context) -> ArchiveStatus:
        calls.append(1)
        if failing[0]:
            raise StorageError("storage unreachable")
        return ArchiveStatus(newest="000000010000000000000005", newest_archived_at=listed_at)

    monkeypatch.setattr(metrics, "archive_status", fake_status)
    registry = build_registry(ctx)

    def scrape() -> dict[str, float]:
        text = generate_latest(registry).decode()
        return {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith("pgkeep_wal_archive")
        }

    assert scrape() == {}  # unreachable: no samples, so an absent-series alert fires
    failing[0] = False
    first = scrape()  # a failure is never kept: listed again at once
    assert len(calls) == 2 and first["pgkeep_wal_archive_ok"] == 1.0
    assert first["pgkeep_wal_archive_newest_age_seconds"] >= 100
    second = scrape()
    assert len(calls) == 2  # within the minute: the listing is reused
    assert second["pgkeep_wal_archive_newest_age_seconds"] >= first["pgkeep_wal_archive_newest_age_seconds"]
    monkeypatch.setattr(metrics, "ARCHIVE_LISTING_MAX_AGE_S", 0.0)
    scrape()
    assert len(calls) == 3
