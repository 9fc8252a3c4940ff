"""The storage contract (storage/base.py), checked against every backend.

Each test runs once per backend (the ``backend`` fixture): a local directory
and a real SeaweedFS. Backend-specific behaviour lives in its own module.
"""

from __future__ import annotations

import hashlib
import random
import tracemalloc
from collections.abc import Iterator

import pytest
from storage_helpers import MIB, Backend

from pgkeep.errors import ObjectNotFoundError, StorageError, VerificationError
from pgkeep.storage import locate
from pgkeep.storage.base import check_object, iter_chunks, object_digest
from pgkeep.storage.s3 import S3Storage

CHUNK = MIB  # what the backup pipeline hands to a writer at most


def chunks(total: int, seed: int = 1, size: int = CHUNK) -> Iterator[bytes]:
    """``total`` pseudo-random bytes (incompressible, reproducible), made on the fly."""
    rng = random.Random(seed)
    left = total
    while left:
        n = min(size, left)
        yield rng.randbytes(n)
        left -= n


def put(backend: Backend, name: str, data: bytes) -> None:
    writer = backend.storage.open_writer(name)
    writer.write(data)
    writer.commit()


def read_all(backend: Backend, name: str) -> bytes:
    with backend.storage.open_reader(name) as reader:
        return b"".join(iter_chunks(reader))


def names(backend: Backend, prefix: str = "") -> list[str]:
    return [o.name for o in backend.storage.list(prefix)]


def test_large_stream_round_trip_in_bounded_memory(backend: Backend) -> None:
    total = 64 * MIB  # 13 parts of 5 MiB on S3
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        writer = backend.storage.open_writer("big.dump")
        for chunk in chunks(total):
            expected.update(chunk)
            writer.write(chunk)
            del chunk
        writer.commit()
        _, write_peak = tracemalloc.get_traced_memory()

        tracemalloc.reset_peak()
        digest, size = object_digest(backend.storage, "big.dump")
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (digest, size) == (expected.hexdigest(), total)
    assert backend.storage.stat("big.dump").size == total
    # The promise of s3.py: part_size x (concurrency + 1) bytes of data held by the writer
    # (15 MiB here, for 64 MiB written); the slack is the caller's chunk and library overhead
    # (measured: about 2.5 MiB). Local storage holds nothing.
    slack = 4 * CHUNK
    assert write_peak < backend.memory_bound + slack, f"write peak {write_peak / MIB:.1f} MiB"
    assert read_peak < 4 * CHUNK, f"read peak {read_peak / MIB:.1f} MiB"


def test_url_for_reopens_the_object_through_locate(backend: Backend) -> None:
    put(backend, "x.dump", b"payload")
    url = backend.storage.url_for("x.dump")
    if backend.kind == "s3":
        raw = backend.raw
        assert isinstance(raw, S3Storage)
        assert url == f"s3://{raw.bucket}/{raw.prefix}/x.dump"
    else:
        assert url.startswith("file:///") and url.endswith("/x.dump")
    # What verify/restore/delete do with a catalogued storageUrl.
    storage, name = locate(url, backend.settings)
    assert name == "x.dump"
    with storage.open_reader(name) as reader:
        assert reader.read() == b"payload"
    storage.delete(name)
    assert names(backend) == []


def test_missing_key(backend: Backend) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"nope\.dump"):
        backend.storage.open_reader("nope.dump")
    with pytest.raises(ObjectNotFoundError, match=r"nope\.dump"):
        backend.storage.stat("nope.dump")
    backend.storage.delete("nope.dump")  # idempotent: not an error


@pytest.mark.parametrize("size", [100, 7 * MIB], ids=["small", "multipart"])
def test_never_overwrites(backend: Backend, size: int) -> None:
    put(backend, "a.dump", b"first")
    # Caught at open (S3 checks early) or at commit (local links without replacing).
    with pytest.raises(StorageError, match="exists") as caught:
        writer = backend.storage.open_writer("a.dump")
        for chunk in chunks(size):
            writer.write(chunk)
        writer.commit()
    assert caught.value.permanent
    assert read_all(backend, "a.dump") == b"first"
    assert backend.leftovers() == []


@pytest.mark.parametrize("size", [100, 7 * MIB], ids=["small", "multipart"])
def test_concurrent_writers_of_one_name_first_commit_wins(backend: Backend, size: int) -> None:
    # Both pass any early check; the name is taken between open and commit.
    first = backend.storage.open_writer("race.dump")
    second = backend.storage.open_writer("race.dump")
    first.write(b"first")
    for chunk in chunks(size, seed=2):
        second.write(chunk)
    first.commit()
    with pytest.raises(StorageError, match="exists") as caught:
        second.commit()
    assert caught.value.permanent
    second.abort()  # after a failed commit: still safe
    assert read_all(backend, "race.dump") == b"first"
    assert backend.leftovers() == []


def test_listing_is_sorted_filtered_and_shows_only_committed(backend: Backend) -> None:
    assert backend.storage.list() == []
    for name in ["b.dump", "a.dump", "c.sql", "ab.dump"]:
        put(backend, name, name.encode())
    pending = backend.storage.open_writer("aa-pending.dump")
    for chunk in chunks(6 * MIB):  # more than a part: an upload is open on S3
        pending.write(chunk)
    try:
        listed = backend.storage.list()
        assert [o.name for o in listed] == ["a.dump", "ab.dump", "b.dump", "c.sql"]
        assert {o.name: o.size for o in listed} == {n: len(n) for n in names(backend)}
        assert all(o.modified.tzinfo is not None for o in listed)
        assert names(backend, "a") == ["a.dump", "ab.dump"]
        assert names(backend, "c.") == ["c.sql"]
        assert names(backend, "zzz") == []
    finally:
        pending.abort()
    assert names(backend) == ["a.dump", "ab.dump", "b.dump", "c.sql"]


def test_delete_is_idempotent(backend: Backend) -> None:
    put(backend, "d.dump", b"x")
    backend.storage.delete("d.dump")
    backend.storage.delete("d.dump")
    with pytest.raises(ObjectNotFoundError):
        backend.storage.stat("d.dump")
    assert names(backend) == []


def test_truncated_upload_leaves_nothing(backend: Backend) -> None:
    writer = backend.storage.open_writer("cut.dump")
    for chunk in chunks(12 * MIB):  # two full parts sent, a third one buffered
        writer.write(chunk)
    writer.abort()  # the pipeline failed mid-way
    writer.abort()  # idempotent
    with pytest.raises(StorageError):
        writer.write(b"more")
    assert names(backend) == []
    with pytest.raises(ObjectNotFoundError):
        backend.storage.stat("cut.dump")
    assert backend.leftovers() == []
    # The name is free again: a retried backup can use it.
    put(backend, "cut.dump", b"whole")
    assert read_all(backend, "cut.dump") == b"whole"


def test_empty_object(backend: Backend) -> None:
    writer = backend.storage.open_writer("empty.dump")
    writer.commit()
    assert backend.storage.stat("empty.dump").size == 0
    assert read_all(backend, "empty.dump") == b""


def test_remove_incomplete_after_a_crashed_writer(backend: Backend) -> None:
    writer = backend.storage.open_writer("crashed.dump")
    for chunk in chunks(6 * MIB):
        writer.write(chunk)
    # The writer's process died here: no abort. Crash recovery cleans up by name.
    assert backend.leftovers() != []
    assert backend.storage.remove_incomplete("other.dump") == 0
    assert backend.storage.remove_incomplete("crashed.dump") >= 1
    assert backend.leftovers() == []
    assert backend.storage.remove_incomplete("crashed.dump") == 0
    writer.abort()  # releases the abandoned writer's resources; nothing left to remove


def test_wrong_checksum_and_tampering_are_detected(backend: Backend) -> None:
    data = b"".join(chunks(3 * MIB, seed=3))
    good = hashlib.sha256(data).hexdigest()
    put(backend, "v.dump", data)
    check_object(backend.storage, "v.dump", good, len(data))

    flipped = f"{int(good[0], 16) ^ 1:x}" + good[1:]
    with pytest.raises(VerificationError, match="SHA-256"):
        check_object(backend.storage, "v.dump", flipped)
    with pytest.raises(VerificationError, match="bytes"):
        check_object(backend.storage, "v.dump", good, len(data) + 1)

    corrupted = bytearray(data)
    corrupted[len(data) // 2] ^= 0x01
    backend.tamper("v.dump", bytes(corrupted))
    with pytest.raises(VerificationError, match="SHA-256"):
        check_object(backend.storage, "v.dump", good, len(data))


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", "x\x00y"])
def test_invalid_names_are_refused(backend: Backend, name: str) -> None:
    with pytest.raises(StorageError, match="invalid object name") as caught:
        backend.storage.open_writer(name)
    assert caught.value.permanent
