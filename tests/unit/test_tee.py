"""The local copy (storage/tee.py): one stream to two storages, all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgkeep.config import load_settings
from pgkeep.errors import ConfigError, StorageError
from pgkeep.storage import TeeStorage, locate, open_storage
from pgkeep.testing import MemoryStorage


def put(storage: MemoryStorage, name: str, data: bytes) -> None:
    writer = storage.open_writer(name)
    writer.write(data)
    writer.commit()


def tee() -> tuple[TeeStorage, MemoryStorage, MemoryStorage]:
    main, copy = MemoryStorage(), MemoryStorage()
    return TeeStorage(main, copy), main, copy


def test_both_get_the_same_bytes_and_reads_come_from_main() -> None:
    storage, main, copy = tee()
    writer = storage.open_writer("a.dump")
    for part in (b"one ", b"two ", memoryview(b"three")):
        writer.write(part)
    writer.commit()
    assert main.objects["a.dump"][0] == copy.objects["a.dump"][0] == b"one two three"
    copy.delete("a.dump")
    assert storage.open_reader("a.dump").read() == b"one two three"  # from main
    assert storage.url_for("a.dump") == main.url_for("a.dump")
    storage.delete("a.dump")
    assert main.objects == copy.objects == {}


def test_copy_is_committed_only_after_main() -> None:
    storage, main, copy = tee()
    put(main, "taken", b"old")
    writer = storage.open_writer("taken")
    writer.write(b"new")
    with pytest.raises(StorageError, match="exists"):
        writer.commit()
    assert "taken" not in copy.objects
    assert main.objects["taken"][0] == b"old"


def test_a_failed_copy_takes_the_main_object_back() -> None:
    storage, main, copy = tee()
    put(copy, "b.dump", b"stale copy")
    writer = storage.open_writer("b.dump")
    writer.write(b"data")
    with pytest.raises(StorageError, match="keeping the local copy") as caught:
        writer.commit()
    assert caught.value.hint
    assert "b.dump" not in main.objects  # all or nothing


def test_abort_discards_both() -> None:
    storage, main, copy = tee()
    writer = storage.open_writer("c.dump")
    writer.write(b"partial")
    writer.abort()
    writer.abort()
    assert main.objects == copy.objects == {}


def test_open_storage_and_locate_compose_the_copy(tmp_path: Path) -> None:
    settings = load_settings(local_copy_dir=tmp_path / "copy")
    storage = open_storage((tmp_path / "main").as_uri(), settings)
    assert isinstance(storage, TeeStorage)
    writer = storage.open_writer("d.dump")
    writer.write(b"both")
    writer.commit()
    assert (tmp_path / "main" / "d.dump").read_bytes() == (tmp_path / "copy" / "d.dump").read_bytes() == b"both"
    located, name = locate(storage.url_for("d.dump"), settings)
    assert isinstance(located, TeeStorage) and name == "d.dump"
    located.delete(name)  # deleting a backup removes its copy too
    assert not (tmp_path / "main" / "d.dump").exists() and not (tmp_path / "copy" / "d.dump").exists()
    assert not isinstance(open_storage((tmp_path / "main").as_uri()), TeeStorage)
    with pytest.raises(ConfigError, match="PGKEEP_LOCAL_COPY_DIR"):
        open_storage((tmp_path / "copy").as_uri(), settings)
