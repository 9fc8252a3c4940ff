"""One pass over the data: compress, (encrypt,) hash the stored bytes, write.

The SHA-256 covers the bytes as stored (after compression and encryption),
so a check needs neither decompression nor the private key. Memory is bounded
by one read buffer plus the compressor's window (and age's 64 KiB chunk),
whatever the database size.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import IO

from pgkeep.pipeline.codecs import Compressor
from pgkeep.pipeline.crypto import Encryptor, Recipient
from pgkeep.storage.base import ObjectWriter

CHUNK = 1 << 20
TAIL = 512
PROGRESS_EVERY_S = 0.5

Progress = Callable[[int], None]


class CompressingSink:
    """File-like ``write`` target: raw bytes in, compressed (+encrypted) and hashed bytes to storage.

    With ``recipients``, the compressed stream is encrypted to them (age) before
    it is hashed and stored. Call :meth:`abort` if the stream is abandoned.
    """

    def __init__(
        self,
        writer: ObjectWriter,
        comp: Compressor,
        progress: Progress | None = None,
        recipients: Sequence[Recipient] = (),
    ) -> None:
        self._writer = writer
        self._comp = comp
        self._hash = hashlib.sha256()
        self.raw_bytes = 0
        self.stored_bytes = 0
        self.tail = b""
        self._progress = progress
        self._last_report = 0.0
        self._encryptor = Encryptor(recipients, self._store) if recipients else None
        self._next: Callable[[bytes], None] = self._encryptor.write if self._encryptor else self._store

    def _store(self, out: bytes) -> None:
        self._hash.update(out)
        self._writer.write(out)
        self.stored_bytes += len(out)

    def _emit(self, out: bytes) -> None:
        if out:
            self._next(out)
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
        """Flush the compressor (and encryptor); return the SHA-256 hex of the stored bytes."""
        self._emit(self._comp.flush())
        if self._encryptor is not None:
            self._encryptor.finish()
        if self._progress is not None:
            self._progress(self.stored_bytes)
        return self._hash.hexdigest()

    def abort(self) -> None:
        """Stop the encryption thread of an abandoned stream (idempotent; the writer is the caller's)."""
        if self._encryptor is not None:
            self._encryptor.abort()


def pump(source: IO[bytes], sink: CompressingSink) -> None:
    """Copy a pipe into ``sink`` with a reused buffer (no per-chunk allocation on read).

    A child's pipes are already 1 MiB (``pgtools.process.Child``), so pg_dump runs ahead of us.
    """
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    readinto = source.readinto  # type: ignore[attr-defined]
    while True:
        n = readinto(buf)
        if not n:
            return
        sink.write(view[:n])
