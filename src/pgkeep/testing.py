"""Fakes for unit tests of pure logic (integration tests use real PostgreSQL and SeaweedFS).

:class:`MemoryStorage` implements the storage contract in memory, with the
same commit/abort and no-overwrite semantics as the real backends, so the
pipeline can be tested without a disk or a server.
"""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime
from typing import BinaryIO

from pgkeep.errors import ObjectNotFoundError, StorageError
from pgkeep.storage.base import ObjectInfo, check_name


class MemoryWriter:
    def __init__(self, storage: MemoryStorage, name: str) -> None:
        self._storage = storage
        self._name = name
        self._buf: bytearray | None = bytearray()

    def write(self, data: bytes | memoryview) -> None:
        if self._buf is None:
            raise StorageError("write after commit or abort", permanent=True)
        self._buf += data

    def commit(self) -> None:
        if self._buf is None:
            raise StorageError("commit after commit or abort", permanent=True)
        with self._storage.lock:
            if self._name in self._storage.objects:
                self._buf = None
                raise StorageError(f"{self._name} exists already", permanent=True)
            self._storage.objects[self._name] = (bytes(self._buf), datetime.now(UTC))
        self._buf = None

    def abort(self) -> None:
        self._buf = None


class MemoryStorage:
    """An in-memory Storage: ``objects`` maps names to (bytes, modified)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, datetime]] = {}
        self.lock = threading.Lock()

    def url_for(self, name: str) -> str:
        return f"memory:///{name}"

    def open_writer(self, name: str) -> MemoryWriter:
        check_name(name)
        return MemoryWriter(self, name)

    def open_reader(self, name: str) -> BinaryIO:
        try:
            data, _ = self.objects[name]
        except KeyError:
            raise ObjectNotFoundError(f"backup file {name} not found in memory storage") from None
        return io.BytesIO(data)

    def stat(self, name: str) -> ObjectInfo:
        try:
            data, modified = self.objects[name]
        except KeyError:
            raise ObjectNotFoundError(f"backup file {name} not found in memory storage") from None
        return ObjectInfo(name, len(data), modified)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return [self.stat(n) for n in sorted(self.objects) if n.startswith(prefix)]

    def delete(self, name: str) -> None:
        self.objects.pop(name, None)

    def remove_incomplete(self, name: str) -> int:
        return 0  # uncommitted writers hold their bytes privately: nothing is ever left over
