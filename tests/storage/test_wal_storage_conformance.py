"""WAL push and fetch on every storage backend (local and a real SeaweedFS): the archive's contracts."""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_helpers import Backend

from pgkeep.config import Compression
from pgkeep.errors import VerificationError
from pgkeep.wal import archive
from pgkeep.wal.status import list_archive

SEGMENT = "000000010000000000000007"


def test_push_fetch_repush_conflict_missing(backend: Backend, tmp_path: Path) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    source = tmp_path / SEGMENT
    source.write_bytes(data)
    first = archive.push(backend.storage, source, compression=Compression.ZSTD)
    assert not first.already_archived
    assert archive.push(backend.storage, source).already_archived
    history = tmp_path / "00000002.history"
    history.write_bytes(b"1\t0/3000000\tno recovery target specified\n")
    archive.push(backend.storage, history, compression=Compression.NONE)
    assert sorted(f.obj.file for f in list_archive(backend.storage)) == ["000000010000000000000007", "00000002.history"]

    archive.fetch(backend.storage, SEGMENT, tmp_path / "RECOVERYXLOG")
    assert (tmp_path / "RECOVERYXLOG").read_bytes() == data
    with pytest.raises(archive.WalMissingError):
        archive.fetch(backend.storage, "000000010000000000000008", tmp_path / "missing")

    source.write_bytes(data[:-1] + b"\x00")
    with pytest.raises(archive.WalConflictError):
        archive.push(backend.storage, source)


def test_a_replaced_object_is_refused_on_fetch(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / SEGMENT
    source.write_bytes(b"w" * 100_000)
    pushed = archive.push(backend.storage, source, compression=Compression.NONE)
    backend.storage.delete(pushed.object)
    writer = backend.storage.open_writer(pushed.object)  # same name, so the same recorded digest
    writer.write(b"x" * 100_000)
    writer.commit()
    with pytest.raises(VerificationError, match="damaged"):
        archive.fetch(backend.storage, SEGMENT, tmp_path / "out")
    assert not (tmp_path / "out").exists()
