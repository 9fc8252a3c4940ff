"""Compression codecs for the stored stream.

pgkeep compresses in its own pipeline (not with pg_dump's ``-Z``): every
client version then gets zstd, and compression, hashing and writing happen
in one pass. Decompression checks that the stream ended cleanly: a
truncated artifact is an error, never a silently short restore.

Decompression yields at most ``DECOMPRESS_CHUNK`` bytes at a time, however
far a stored chunk expands: one megabyte of zstd can hold a gigabyte of
blank padding, and a codec that returns all of it at once would make the
process's memory grow with the data's compressibility. python-zstandard's
streaming decompressor has no output bound (and its bounded readers do not
report a frame cut short), so decompression uses ``compression.zstd``
(Python 3.14's standard library; the ``backports.zstd`` package before
that), whose API is zlib's: ``decompress(data, max_length)``.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import zstandard

if sys.version_info >= (3, 14):
    from compression import zstd as std_zstd
else:
    from backports import zstd as std_zstd

from pgkeep.config import Compression
from pgkeep.errors import VerificationError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_JOB_SIZE = 2 << 20
DECOMPRESS_CHUNK = 1 << 20  # the most bytes decompress() yields at once


class Compressor(Protocol):
    def compress(self, data: bytes | memoryview) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes | memoryview) -> bytes:
        return bytes(data)

    def flush(self) -> bytes:
        return b""


@dataclass(frozen=True)
class CodecOptions:
    zstd_level: int = 2
    zstd_threads: int = -1
    gzip_level: int = 6


def suffix(compression: Compression) -> str:
    return {Compression.ZSTD: ".zst", Compression.GZIP: ".gz", Compression.NONE: ""}[compression]


def compressor(compression: Compression, opts: CodecOptions) -> Compressor:
    if compression is Compression.ZSTD:
        threads = (os.cpu_count() or 1) if opts.zstd_threads < 0 else opts.zstd_threads
        if threads > 1:
            # Each worker compresses a job of ZSTD_JOB_SIZE: zstd's default (4x the window,
            # 8 MiB at level 2) holds ~20 MiB more for an output 0.8% smaller.
            params = zstandard.ZstdCompressionParameters.from_level(
                opts.zstd_level, threads=threads, job_size=ZSTD_JOB_SIZE, write_checksum=True
            )
            return zstandard.ZstdCompressor(compression_params=params).compressobj(size=-1)
        return zstandard.ZstdCompressor(level=opts.zstd_level, write_checksum=True).compressobj(size=-1)
    if compression is Compression.GZIP:
        return zlib.compressobj(opts.gzip_level, zlib.DEFLATED, 31)  # 31: gzip container
    return _Identity()


def detect(head: bytes) -> Compression:
    if head.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    return Compression.NONE


class _Decoder(Protocol):
    """One zstd frame (compression.zstd) or gzip member (zlib): they share this API."""

    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int, /) -> bytes: ...


def _new_decoder(compression: Compression) -> _Decoder:
    return std_zstd.ZstdDecompressor() if compression is Compression.ZSTD else zlib.decompressobj(31)


def _pieces(d: _Decoder, data: bytes, limit: int) -> Iterator[bytes]:
    """What ``data`` decodes to, up to the frame's end, in pieces of at most ``limit`` bytes."""
    while True:
        out = d.decompress(data, limit)
        if out:
            yield out
        # zlib keeps input it could not decode yet outside (unconsumed_tail), zstd inside.
        data = getattr(d, "unconsumed_tail", b"")
        if d.eof or (not data and len(out) < limit):
            return  # a full piece may leave output held back: ask again


def decompress(
    chunks: Iterable[bytes], compression: Compression, *, limit: int = DECOMPRESS_CHUNK
) -> Generator[bytes, None, None]:
    """Decompress a stream of (possibly several concatenated) frames or members.

    Yields pieces of at most ``limit`` bytes. Raises :class:`VerificationError`
    if the data is corrupt or ends mid-frame.
    """
    if compression is Compression.NONE:
        yield from chunks
        return
    d = _new_decoder(compression)
    started = False
    try:
        for chunk in chunks:
            data = chunk
            while data:
                started = True
                yield from _pieces(d, data, limit)
                data = b""
                if d.eof:
                    data = d.unused_data
                    d = _new_decoder(compression)
                    started = bool(data)
    except (std_zstd.ZstdError, zlib.error) as exc:
        raise VerificationError(f"the {compression.value} stream is corrupt: {exc}") from None
    if started:
        raise VerificationError(f"the {compression.value} stream is truncated (it ends in the middle of a frame)")
