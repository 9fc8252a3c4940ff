"""The one-pass pipeline: compress, hash the stored bytes, write; against the in-memory fake."""

from __future__ import annotations

import hashlib
import os

import pytest

from pgkeep.config import Compression
from pgkeep.errors import StorageError
from pgkeep.pipeline import codecs
from pgkeep.pipeline.stream import CompressingSink, pump
from pgkeep.testing import MemoryStorage


@pytest.mark.parametrize("compression", list(Compression))
def test_sink_hashes_exactly_the_stored_bytes(compression: Compression, tmp_path) -> None:  # type: ignore[no-untyped-def]
    storage = MemoryStorage()
    raw = (os.urandom(300_000) + b"text " * 200_000) * 3
    source = tmp_path / "raw"
    source.write_bytes(raw)
    writer = storage.open_writer("x")
    seen: list[int] = []
    sink = CompressingSink(writer, codecs.compressor(compression, codecs.CodecOptions()), seen.append)
    with open(source, "rb", buffering=0) as fh:
        pump(fh, sink)
    digest = sink.finish()
    writer.commit()
    stored, _ = storage.objects["x"]
    assert digest == hashlib.sha256(stored).hexdigest()
    assert sink.stored_bytes == len(stored) and sink.raw_bytes == len(raw)
    assert seen and seen[-1] == len(stored)
    assert b"".join(codecs.decompress([stored], compression)) == raw
    assert sink.tail == raw[-512:]


def test_aborted_writer_leaves_nothing_and_names_are_never_overwritten() -> None:
    storage = MemoryStorage()
    w = storage.open_writer("a")
    w.write(b"partial")
    w.abort()
    assert storage.list() == []
    first = storage.open_writer("a")
    first.write(b"1")
    first.commit()
    second = storage.open_writer("a")
    second.write(b"2")
    with pytest.raises(StorageError, match="exists"):
        second.commit()
    assert storage.open_reader("a").read() == b"1"
