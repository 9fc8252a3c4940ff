"""WAL names and arithmetic, archive push/fetch contracts (in-memory storage), holes, the tar sniffer."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgkeep.config import Compression
from pgkeep.errors import InvalidRequestError, VerificationError
from pgkeep.pipeline.crypto import parse_recipients
from pgkeep.pipeline.tarsniff import TarSniffer
from pgkeep.storage import ObjectInfo
from pgkeep.testing import MemoryStorage
from pgkeep.wal import archive
from pgkeep.wal.naming import (
    check_wal_file_name,
    format_lsn,
    object_name,
    parse_lsn,
    parse_object,
    parse_segment,
    segment_key,
    segment_name,
    segment_of_lsn,
)
from pgkeep.wal.status import ArchivedFile, archive_status, find_holes

MB16 = 16 << 20
MB1 = 1 << 20


def test_lsn_and_segment_arithmetic() -> None:
    assert parse_lsn("0/3000148") == 0x3000148 and format_lsn(0x3000148) == "0/3000148"
    assert parse_lsn("1A/FF") == (0x1A << 32) | 0xFF
    with pytest.raises(InvalidRequestError):
        parse_lsn("3000148")
    assert segment_of_lsn(1, 0x3000148, MB16) == "000000010000000000000003"
    # Past 4 GiB the middle part counts 4 GiB units, whatever the segment size.
    assert segment_of_lsn(2, (1 << 32) + 5, MB16) == "000000020000000100000000"
    assert segment_of_lsn(1, (1 << 32) + 3 * MB1, MB1) == "000000010000000100000003"
    assert parse_segment("000000010000000100000003", MB1) == (1, 4096 + 3)
    assert segment_name(1, 4096 + 3, MB1) == "000000010000000100000003"
    assert segment_key("000000020000000000000003.00000028.backup") == (0, 3)


def test_wal_file_names_and_object_names() -> None:
    for good in (
        "000000010000000000000003",
        "00000002.history",
        "000000010000000000000003.00000028.backup",
        "000000010000000000000003.partial",
    ):
        assert check_wal_file_name(good) == good
    for bad in ("00000001000000000000000", "../000000010000000000000003", "x.history", "000000010000000000000003/"):
        with pytest.raises(InvalidRequestError):
            check_wal_file_name(bad)
    digest = "ab" * 32
    name = object_name("000000010000000000000003", digest, Compression.ZSTD, encrypted=True)
    assert name == f"wal-000000010000000000000003.{digest}.zst.age"
    parsed = parse_object(name)
    assert parsed is not None and parsed.file == "000000010000000000000003" and parsed.encrypted
    assert parsed.compression is Compression.ZSTD and parsed.is_segment
    backup_file = parse_object(object_name("000000010000000000000003.00000028.backup", digest, Compression.NONE, False))
    assert backup_file is not None and not backup_file.is_segment
    assert parse_object("wal-000000010000000000000003.zst") is None
    assert parse_object("app-backup-full-2026-11-26T02-00-00-000Z.base.tar.zst") is None


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("compression", list(Compression))
def test_push_then_fetch_gives_back_the_same_bytes(tmp_path: Path, compression: Compression) -> None:
    storage = MemoryStorage()
    data = bytes(range(256)) * 4096
    pushed = archive.push(storage, write(tmp_path, "000000010000000000000001", data), compression=compression)
    assert not pushed.already_archived and pushed.size == len(data)
    fetched = archive.fetch(storage, "000000010000000000000001", tmp_path / "RECOVERYXLOG")
    assert fetched.size == len(data) and (tmp_path / "RECOVERYXLOG").read_bytes() == data


def test_encrypted_push_needs_the_key_to_fetch(tmp_path: Path) -> None:
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    key_file = write(tmp_path, "key.txt", f"{identity}\n".encode())
    storage = MemoryStorage()
    data = b"wal" * 100_000
    archive.push(
        storage,
        write(tmp_path, "000000010000000000000002", data),
        recipients=parse_recipients(str(identity.to_public())),
    )
    (obj,) = storage.list("wal-")
    assert obj.name.endswith(".zst.age")
    archive.fetch(storage, "000000010000000000000002", tmp_path / "out", identity_file=key_file)
    assert (tmp_path / "out").read_bytes() == data
    with pytest.raises(Exception, match="PGKEEP_AGE_IDENTITY_FILE"):
        archive.fetch(storage, "000000010000000000000002", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_repush_identical_is_a_no_op_and_different_content_is_refused(tmp_path: Path) -> None:
    storage = MemoryStorage()
    path = write(tmp_path, "000000010000000000000003", b"a" * 1000)
    archive.push(storage, path)
    again = archive.push(storage, path, compression=Compression.GZIP)  # settings changed: still the same file
    assert again.already_archived and again.stored == 0
    assert len(storage.list("wal-")) == 1
    path.write_bytes(b"b" * 1000)
    with pytest.raises(archive.WalConflictError, match="different content"):
        archive.push(storage, path)
    assert len(storage.list("wal-")) == 1


def test_fetch_missing_is_not_found_and_damage_is_verification(tmp_path: Path) -> None:
    storage = MemoryStorage()
    with pytest.raises(archive.WalMissingError):
        archive.fetch(storage, "000000010000000000000004", tmp_path / "x")
    archive.push(storage, write(tmp_path, "000000010000000000000004", b"c" * 5000), compression=Compression.NONE)
    (obj,) = storage.list("wal-")
    storage.delete(obj.name)
    writer = storage.open_writer(obj.name)  # same name (same recorded digest), other bytes
    writer.write(b"d" * 5000)
    writer.commit()
    with pytest.raises(VerificationError, match="damaged"):
        archive.fetch(storage, "000000010000000000000004", tmp_path / "y")
    assert not (tmp_path / "y").exists()


def test_find_holes_across_timelines() -> None:
    names = [
        "000000010000000000000002",
        "000000010000000000000003",
        "000000010000000000000005",
        "000000020000000000000006",
        "000000020000000000000008",
    ]
    assert find_holes(names, None, MB16) == ["000000010000000000000004", "000000020000000000000007"]
    assert find_holes(names, "000000010000000000000001", MB16)[0] == "000000010000000000000001"
    assert find_holes(names[:2], None, MB16) == []
    # 1 MiB segments: 4096 per 4 GiB, so ...0FFF is followed by 1/0.
    assert find_holes(["000000010000000000000FFE", "000000010000000100000000"], None, MB1) == [
        "000000010000000000000FFF"
    ]


def test_archive_status_reports_newest_age_and_holes() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)

    def entry(file: str, minutes_ago: int) -> ArchivedFile:
        obj = parse_object(object_name(file, "0" * 64, Compression.ZSTD, False))
        assert obj is not None
        return ArchivedFile(obj, ObjectInfo(obj.name, 10, now - timedelta(minutes=minutes_ago)))

    files = [entry("000000010000000000000002", 30), entry("000000010000000000000004", 5), entry("00000002.history", 1)]
    status = archive_status(files, start="000000010000000000000002", segment_size=MB16, now=now)
    assert status.newest == "000000010000000000000004" and status.age_seconds == 300
    assert status.holes == ["000000010000000000000003"] and not status.ok
    empty = archive_status([], start="000000010000000000000002", segment_size=MB16, now=now)
    assert not empty.ok and empty.problems


def test_tar_sniffer_keeps_named_members_and_passes_everything_on() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (
            ("base/1/123", b"x" * 10_000),
            ("backup_label", b"START WAL LOCATION: 0/2000028\n"),
            ("global/pg_control", b"y" * 8192),
            ("backup_manifest", b'{"WAL-Ranges": []}'),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    stream = buf.getvalue()
    out = bytearray()
    sniffer = TarSniffer({"backup_label", "backup_manifest"}, out.extend)
    for i in range(0, len(stream), 777):  # chunk boundaries anywhere, headers split included
        sniffer.write(stream[i : i + 777])
    assert bytes(out) == stream and sniffer.ended
    assert sniffer.members == {
        "backup_label": b"START WAL LOCATION: 0/2000028\n",
        "backup_manifest": b'{"WAL-Ranges": []}',
    }
    with pytest.raises(ValueError, match="not a tar"):
        TarSniffer(set(), lambda _: None).write(b"\x01" * 512)
