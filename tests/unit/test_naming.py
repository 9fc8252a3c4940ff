"""Backup filenames: the spec's timestamp format, extensions, and uniqueness."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgkeep.catalog.db import Catalog
from pgkeep.catalog.models import BackupStatus, BackupType, DatabaseBackup
from pgkeep.catalog.repository import all_backups, insert_unique
from pgkeep.config import Compression, DumpFormat
from pgkeep.services.backup import artifact_extension, filename_timestamp, sanitize_prefix

EXTENSIONS = {
    (DumpFormat.CUSTOM, Compression.ZSTD): ".dump.zst",
    (DumpFormat.CUSTOM, Compression.GZIP): ".dump.gz",
    (DumpFormat.CUSTOM, Compression.NONE): ".dump",
    (DumpFormat.PLAIN, Compression.ZSTD): ".sql.zst",
    (DumpFormat.PLAIN, Compression.GZIP): ".sql.gz",  # the spec's own name
    (DumpFormat.PLAIN, Compression.NONE): ".sql",
    (DumpFormat.DIRECTORY, Compression.ZSTD): ".dir.tar.zst",
    (DumpFormat.DIRECTORY, Compression.GZIP): ".dir.tar.gz",
    (DumpFormat.DIRECTORY, Compression.NONE): ".dir.tar",
}


def test_timestamp_is_the_specs_iso_string_with_separators_replaced() -> None:
    # new Date('2026-11-26T02:00:00.000Z').toISOString().replace(/[:.]/g, '-')
    assert filename_timestamp(datetime(2026, 11, 26, 2, 0, 0, tzinfo=UTC)) == "2026-11-26T02-00-00-000Z"
    # Milliseconds are truncated, not rounded, as toISOString does.
    assert filename_timestamp(datetime(2026, 1, 2, 3, 4, 5, 678_999, tzinfo=UTC)) == "2026-01-02T03-04-05-678Z"


@pytest.mark.parametrize(("fmt", "compression"), list(EXTENSIONS))
def test_extension_for_every_format_and_compression(fmt: DumpFormat, compression: Compression) -> None:
    assert artifact_extension(fmt, compression) == EXTENSIONS[(fmt, compression)]


def test_extensions_are_distinct() -> None:
    # A file's name alone tells its format and compression.
    assert len(set(EXTENSIONS.values())) == len(EXTENSIONS)


@pytest.mark.parametrize(
    ("dbname", "prefix"),
    [
        ("zigznote", "zigznote"),
        ('my db-"quoted" x', "my_db-_quoted_x"),
        ("../../etc", "etc"),
        ("\"'", "db"),
    ],
)
def test_prefix_from_database_name_is_a_safe_file_name(dbname: str, prefix: str) -> None:
    assert sanitize_prefix(dbname) == prefix


def _row() -> DatabaseBackup:
    return DatabaseBackup(
        type=BackupType.MANUAL,
        status=BackupStatus.IN_PROGRESS,
        started_at=datetime(2026, 11, 26, 2, 0, tzinfo=UTC),
        size=0,
        bytes_written=0,
        keep=False,
    )


def test_two_backups_in_the_same_millisecond_get_distinct_filenames(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path}/catalog.db")
    stamp = "zigznote-backup-manual-2026-11-26T02-00-00-000Z"

    def make_name(n: int) -> str:
        return f"{stamp}{f'-{n}' if n else ''}.dump.zst"

    try:
        names = []
        for _ in range(3):
            with catalog.session() as session:
                names.append(insert_unique(session, _row(), make_name).filename)
        with catalog.session() as session:
            stored = sorted((r.filename, r.status) for r in all_backups(session))
    finally:
        catalog.dispose()
    assert names == [f"{stamp}.dump.zst", f"{stamp}-1.dump.zst", f"{stamp}-2.dump.zst"]
    assert stored == [(name, BackupStatus.IN_PROGRESS) for name in sorted(names)]
