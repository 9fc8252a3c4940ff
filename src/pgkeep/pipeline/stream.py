"""One pass over the data: compress, hash the stored bytes, write.

The SHA-256 covers the bytes as stored (after compression), so a check
needs no decompression. Memory is bounded by one read buffer plus the
compressor's window, whatever the database size.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import IO

from pgkeep.pipeline.codecs import Compressor
from pgkeep.storage.base import ObjectWriter

CHUNK = 1 << 20
TAIL = 512
PROGRESS_EVERY_S = 0.5

Progress = Callable[[int], None]


class CompressingSink:
    """File-like ``write`` target: raw bytes in, compressed+hashed bytes to storage."""

    def __init__(
        self, writer: ObjectWriter, comp: Compressor, progress: Progress | None = None
    ) -> None:
        self._writer = writer
        self._comp = comp
        self._hash = hashlib.sha256()
        self.raw_bytes = 0
        self.stored_bytes = 0
        self.tail = b""
        self._progress = progress
        self._last_report = 0.0

    def _emit(self, out: bytes) -> None:
        if out:
            self._hash.update(out)
            self._writer.write(out)
            self.stored_bytes += len(out)
        if self._progress is not None:
            now = time.monotonic()
            if now - self._last_report >= PROGRESS_EVERY_S:
                self._last_report = now
                self._progress(self.stored_bytes)

    def write(self, data: bytes | memoryview) -> int:
        n = len(data)
        self.raw_bytes += n
        # Keep the end of the raw stream: a plain dump's trailer proves it is whole.
        self.tail = (self.tail + bytes(data[-TAIL:]))[-TAIL:]
        self._emit(self._comp.compress(data))
        return n

    def finish(self) -> str:
        """Flush the compressor; return the SHA-256 hex of the stored bytes."""
        self._emit(self._comp.flush())
        if self._progress is not None:
            self._progress(self.stored_bytes)
        return self._hash.hexdigest()


def pump(source: IO[bytes], sink: CompressingSink) -> None:
    """Copy a pipe into ``sink`` with a reused buffer (no per-chunk allocation on read)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    readinto = source.readinto  # type: ignore[attr-defined]
    while True:
        n = readinto(buf)
        if not n:
            return
        sink.write(view[:n])
