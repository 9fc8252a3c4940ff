"""The storage contract every backend implements.

Backups are immutable: an object is written once, through a writer that
either commits (the whole object becomes visible under its name, durably)
or aborts (nothing is left behind). Names are flat: no ``/``, no leading dot
(backends keep their own bookkeeping under dot names).

Errors: every method raises :class:`~pgkeep.errors.StorageError`
(``permanent=True`` when retrying cannot help: bad credentials, missing
bucket, name taken, disk full) or its subclass ObjectNotFoundError.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

from pgkeep.errors import StorageError, VerificationError

READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    modified: datetime


class ObjectWriter(Protocol):
    def write(self, data: bytes | memoryview) -> None:
        """Append bytes. May block to bound memory (backpressure)."""

    def commit(self) -> None:
        """Make the object durable and visible. Fails if the name exists already."""

    def abort(self) -> None:
        """Discard everything written. Idempotent; never raises for cleanup trouble."""


class Storage(Protocol):
    """A flat namespace of immutable objects under one root (a directory or a bucket prefix)."""

    def url_for(self, name: str) -> str:
        """The storage URL recorded in the catalog, e.g. file:///var/backups/x.dump.zst."""

    def open_writer(self, name: str) -> ObjectWriter:
        """Start writing a new object; nothing is visible until ``commit``."""

    def open_reader(self, name: str) -> BinaryIO:
        """Open an object for streaming reads. Raises ObjectNotFoundError if missing."""

    def stat(self, name: str) -> ObjectInfo:
        """Size and time of an object. Raises ObjectNotFoundError if missing."""

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Committed objects whose name starts with ``prefix``, sorted by name."""

    def delete(self, name: str) -> None:
        """Remove an object. Idempotent: a missing object is not an error."""

    def remove_incomplete(self, name: str) -> int:
        """Discard what a crashed writer of ``name`` left: temp files, open multipart uploads.

        For crash recovery, once the writer is known to be dead (a live writer
        would lose its data). Idempotent. Returns how many leftovers were removed.
        """


def put_bytes(storage: Storage, name: str, data: bytes) -> None:
    """Store a small object in one go: committed whole, or aborted (nothing left) on any failure."""
    writer = storage.open_writer(name)
    try:
        writer.write(data)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def iter_chunks(reader: BinaryIO, size: int = READ_CHUNK) -> Iterator[bytes]:
    while True:
        chunk = reader.read(size)
        if not chunk:
            return
        yield chunk


def check_name(name: str) -> None:
    """Reject names that are not a single, visible path component."""
    if not name or "/" in name or name.startswith(".") or "\x00" in name:
        raise StorageError(f"invalid object name {name!r}", permanent=True)


def object_digest(storage: Storage, name: str) -> tuple[str, int]:
    """SHA-256 hex and size of a stored object, read as a stream."""
    digest = hashlib.sha256()
    size = 0
    with storage.open_reader(name) as reader:
        for chunk in iter_chunks(reader):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_object(storage: Storage, name: str, sha256: str, size: int | None = None) -> None:
    """Raise VerificationError unless the stored bytes have this SHA-256 (and size)."""
    actual, actual_size = object_digest(storage, name)
    if size is not None and actual_size != size:
        raise VerificationError(
            f"{storage.url_for(name)} has {actual_size} bytes, {size} expected",
            hint="the object was truncated or replaced; use another backup",
        )
    if actual != sha256.lower():
        raise VerificationError(
            f"{storage.url_for(name)} has SHA-256 {actual}, {sha256} expected",
            hint="the object was altered or damaged; use another backup",
        )
