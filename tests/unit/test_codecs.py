"""Compression codecs and the one-pass sink: round trips, and truncation is always an error."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator

import pytest

from pgkeep.config import Compression
from pgkeep.errors import VerificationError
from pgkeep.pipeline import codecs
from pgkeep.pipeline.stream import CompressingSink, pump

OPTS = codecs.CodecOptions(zstd_level=3, zstd_threads=2, gzip_level=6)
COMPRESSED = [Compression.ZSTD, Compression.GZIP]
# Compressible text plus incompressible bytes: several MB so zstd uses more than one block.
PAYLOAD = b"".join(b"row %d\tsome text \xc3\xa9\n" % i for i in range(150_000)) + os.urandom(300_000)


class MemoryWriter:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes | memoryview) -> None:
        self.data += data

    def commit(self) -> None: ...

    def abort(self) -> None: ...


def compress(data: bytes, compression: Compression, piece: int = 100_003) -> bytes:
    writer = MemoryWriter()
    sink = CompressingSink(writer, codecs.compressor(compression, OPTS))
    for start in range(0, len(data), piece):
        sink.write(memoryview(data)[start : start + piece])
    sink.finish()
    return bytes(writer.data)


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def decompress_all(data: bytes, compression: Compression, size: int = 65_536) -> bytes:
    return b"".join(codecs.decompress(chunks(data, size), compression))


@pytest.mark.parametrize("compression", list(Compression))
@pytest.mark.parametrize("read_size", [1 << 20, 4096, 7])
def test_round_trip(compression: Compression, read_size: int) -> None:
    data = PAYLOAD if read_size > 7 else PAYLOAD[:20_000]
    stored = compress(data, compression)
    assert codecs.detect(stored[:16]) is compression
    assert decompress_all(stored, compression, read_size) == data


@pytest.mark.parametrize("compression", list(Compression))
def test_empty_stream_round_trips(compression: Compression) -> None:
    assert decompress_all(compress(b"", compression), compression) == b""


@pytest.mark.parametrize("compression", COMPRESSED)
def test_concatenated_frames_are_all_read(compression: Compression) -> None:
    stored = compress(b"first part\n", compression) + compress(b"second part\n", compression)
    assert decompress_all(stored, compression, 5) == b"first part\nsecond part\n"


@pytest.mark.parametrize("compression", COMPRESSED)
def test_pieces_stay_small_however_far_a_chunk_expands(compression: Compression) -> None:
    # 64 MiB of blanks stores in a few KiB (zstd) or 64 KiB (gzip): one stored chunk
    # must still come out in bounded pieces, or memory grows with the data.
    blanks = b" " * (64 << 20)
    stored = compress(blanks, compression, piece=1 << 20)
    assert len(stored) < 1 << 20
    sizes = []
    total = hashlib.sha256()
    for piece in codecs.decompress([stored], compression, limit=1 << 20):
        sizes.append(len(piece))
        total.update(piece)
    assert max(sizes) <= 1 << 20
    assert sum(sizes) == len(blanks)
    assert total.digest() == hashlib.sha256(blanks).digest()


@pytest.mark.parametrize("compression", COMPRESSED)
@pytest.mark.parametrize("limit", [1, 7, 4096])
def test_small_limits_still_round_trip_every_frame(compression: Compression, limit: int) -> None:
    data = PAYLOAD[:30_000]
    stored = compress(data, compression) + compress(b"second frame\n", compression)
    pieces = list(codecs.decompress(chunks(stored, 1000), compression, limit=limit))
    assert max(len(p) for p in pieces) <= limit
    assert b"".join(pieces) == data + b"second frame\n"


@pytest.mark.parametrize("compression", COMPRESSED)
def test_truncation_is_caught_with_small_limits(compression: Compression) -> None:
    stored = compress(PAYLOAD[:30_000], compression)
    with pytest.raises(VerificationError, match=r"truncated|corrupt"):
        b"".join(codecs.decompress([stored[:-3]], compression, limit=100))


@pytest.mark.parametrize("compression", COMPRESSED)
@pytest.mark.parametrize("keep", [0.999, 0.5, 0.01])
def test_truncated_stream_is_an_error(compression: Compression, keep: float) -> None:
    stored = compress(PAYLOAD, compression)
    cut = stored[: max(1, int(len(stored) * keep))]
    with pytest.raises(VerificationError, match=r"truncated|corrupt"):
        decompress_all(cut, compression)


@pytest.mark.parametrize("compression", COMPRESSED)
def test_last_byte_missing_is_an_error(compression: Compression) -> None:
    stored = compress(PAYLOAD, compression)
    with pytest.raises(VerificationError, match=r"truncated|corrupt"):
        decompress_all(stored[:-1], compression)


@pytest.mark.parametrize("compression", COMPRESSED)
def test_truncated_second_frame_is_an_error(compression: Compression) -> None:
    first = compress(b"complete frame\n", compression)
    second = compress(PAYLOAD[:50_000], compression)
    with pytest.raises(VerificationError, match="truncated"):
        decompress_all(first + second[: len(second) // 2], compression)


@pytest.mark.parametrize("compression", COMPRESSED)
def test_flipped_byte_is_an_error(compression: Compression) -> None:
    stored = bytearray(compress(PAYLOAD, compression))
    stored[len(stored) // 3] ^= 0xFF
    with pytest.raises(VerificationError, match="corrupt"):
        decompress_all(bytes(stored), compression)


@pytest.mark.parametrize("compression", list(Compression))
def test_sink_hashes_and_counts_the_stored_bytes(compression: Compression) -> None:
    writer = MemoryWriter()
    reports: list[int] = []
    sink = CompressingSink(writer, codecs.compressor(compression, OPTS), reports.append)
    pump(io.BufferedReader(io.BytesIO(PAYLOAD)), sink)  # type: ignore[arg-type]
    digest = sink.finish()
    assert digest == hashlib.sha256(bytes(writer.data)).hexdigest()
    assert sink.raw_bytes == len(PAYLOAD)
    assert sink.stored_bytes == len(writer.data)
    assert sink.tail == PAYLOAD[-512:]
    assert reports and reports[-1] == len(writer.data)
    assert decompress_all(bytes(writer.data), compression) == PAYLOAD


def test_compression_makes_text_much_smaller() -> None:
    text = PAYLOAD[:-300_000]
    for compression in COMPRESSED:
        assert len(compress(text, compression)) < len(text) / 3


def test_detect_by_magic_bytes() -> None:
    assert codecs.detect(b"\x28\xb5\x2f\xfd....") is Compression.ZSTD
    assert codecs.detect(b"\x1f\x8b\x08") is Compression.GZIP
    assert codecs.detect(b"PGDMP") is Compression.NONE
    assert codecs.detect(b"") is Compression.NONE
