"""The storage contract every backend implements.

Backups are immutable: an object is written once, through a writer that
either commits (the whole object becomes visible under its name, durably)
or aborts (nothing is left behind).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

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


def iter_chunks(reader: BinaryIO, size: int = READ_CHUNK) -> Iterator[bytes]:
    while True:
        chunk = reader.read(size)
        if not chunk:
            return
        yield chunk
