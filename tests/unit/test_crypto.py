"""age encryption in the pipeline: streaming, bounded memory, the stored bytes hashed, clear key errors."""

from __future__ import annotations

import hashlib
import os
import threading
import tracemalloc
from pathlib import Path

import pyrage
import pytest
from pyrage import x25519

from pgkeep.config import Compression, load_settings
from pgkeep.errors import ConfigError, StorageError, VerificationError
from pgkeep.pipeline import codecs, crypto
from pgkeep.pipeline.stream import CompressingSink
from pgkeep.testing import MemoryStorage

MIB = 1 << 20


def key_file(path: Path, identity: x25519.Identity) -> Path:
    path.write_text(f"# created by a test\n# public key: {identity.to_public()}\n{identity}\n")
    return path


def encrypt_all(data: bytes, recipients: list[x25519.Recipient], chunk: int = MIB) -> bytes:
    out: list[bytes] = []
    enc = crypto.Encryptor(recipients, out.append)
    view = memoryview(data)
    for i in range(0, len(data), chunk):
        enc.write(view[i : i + chunk])
    enc.finish()
    return b"".join(out)


def chunked(data: bytes, size: int = MIB) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("compression", [Compression.ZSTD, Compression.NONE])
def test_sink_encrypts_after_compression_and_hashes_the_stored_bytes(compression: Compression) -> None:
    identity = x25519.Identity.generate()
    storage = MemoryStorage()
    raw = os.urandom(200_000) + b"row text " * 300_000
    writer = storage.open_writer("x")
    sink = CompressingSink(
        writer, codecs.compressor(compression, codecs.CodecOptions()), recipients=[identity.to_public()]
    )
    for i in range(0, len(raw), 100_000):
        sink.write(memoryview(raw)[i : i + 100_000])
    digest = sink.finish()
    writer.commit()
    stored, _ = storage.objects["x"]
    assert stored.startswith(crypto.AGE_MAGIC)
    assert digest == hashlib.sha256(stored).hexdigest() and sink.stored_bytes == len(stored)
    # A standard age file of the compressed stream.
    assert b"".join(codecs.decompress([pyrage.decrypt(stored, [identity])], compression)) == raw


def test_two_recipients_either_key_decrypts(tmp_path: Path) -> None:
    a, b = x25519.Identity.generate(), x25519.Identity.generate()
    data = os.urandom(3 * MIB + 17)
    stored = encrypt_all(data, [a.to_public(), b.to_public()])
    for identity in (a, b):
        keys = crypto.load_identities(key_file(tmp_path / "k.txt", identity), "x")
        assert b"".join(crypto.decrypt(chunked(stored), keys, "x")) == data


def test_streaming_in_bounded_memory() -> None:
    identity = x25519.Identity.generate()
    block = os.urandom(MIB)
    total = 0
    digest = hashlib.sha256()

    def out(data: bytes) -> None:
        nonlocal total
        total += len(data)
        digest.update(data)

    tracemalloc.start()
    try:
        enc = crypto.Encryptor([identity.to_public()], out)
        for _ in range(64):
            enc.write(block)
        enc.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 64 * MIB
    assert peak < 4 * MIB, f"encrypting 64 MiB peaked at {peak / MIB:.1f} MiB"


def test_wrong_and_missing_keys_name_the_setting(tmp_path: Path) -> None:
    right, wrong = x25519.Identity.generate(), x25519.Identity.generate()
    stored = encrypt_all(b"secret rows", [right.to_public()])
    fingerprint = crypto.fingerprint(str(right.to_public()))
    keys = crypto.load_identities(key_file(tmp_path / "wrong.txt", wrong), "x")
    with pytest.raises(ConfigError, match="PGKEEP_AGE_IDENTITY_FILE") as caught:
        list(crypto.decrypt([stored], keys, "b.dump.zst.age", [fingerprint]))
    assert "not one of its recipients" in caught.value.message and fingerprint in caught.value.message
    assert str(wrong) not in str(caught.value)  # never the private key

    with pytest.raises(ConfigError, match="PGKEEP_AGE_IDENTITY_FILE is not set"):
        crypto.load_identities(None, "backup b.dump.zst.age")
    with pytest.raises(ConfigError, match="cannot read PGKEEP_AGE_IDENTITY_FILE"):
        crypto.load_identities(tmp_path / "missing.txt", "x")
    bad = tmp_path / "bad.txt"
    bad.write_text("AGE-SECRET-KEY-1NOTAKEY\n")
    with pytest.raises(ConfigError, match="line 1 is not an age X25519 identity") as caught:
        crypto.load_identities(bad, "x")
    assert "NOTAKEY" not in str(caught.value)


def test_damage_is_a_verification_error(tmp_path: Path) -> None:
    identity = x25519.Identity.generate()
    keys = crypto.load_identities(key_file(tmp_path / "k.txt", identity), "x")
    stored = encrypt_all(os.urandom(300_000), [identity.to_public()])
    flipped = bytearray(stored)
    flipped[len(stored) // 2] ^= 1
    cases = {
        "truncated": stored[:-1000],
        "cut at a chunk boundary": stored[: len(stored) - (len(stored) - 200) % 65552],
        "flipped": bytes(flipped),
        "trailing data": stored + b"x",
        "not age": b"PGDMP" + bytes(1000),
    }
    for what, data in cases.items():
        with pytest.raises(VerificationError):
            list(crypto.decrypt(chunked(data, 100_000), keys, what))


def test_recipients_setting_is_checked() -> None:
    identity = x25519.Identity.generate()
    good = str(identity.to_public())
    assert len(crypto.parse_recipients(f" {good} ,, {good}")) == 2
    assert crypto.parse_recipients("") == []
    with pytest.raises(ConfigError, match="PGKEEP_AGE_RECIPIENTS"):
        load_settings(age_recipients=f"{good},age1nope")
    assert load_settings(age_recipients=good, age_identity_file="").age_identity_file is None


def test_abandoned_streams_stop_their_threads(tmp_path: Path) -> None:
    identity = x25519.Identity.generate()
    before = threading.active_count()
    enc = crypto.Encryptor([identity.to_public()], lambda _: None)
    enc.write(b"partial")
    enc.abort()
    enc.abort()  # idempotent
    keys = crypto.load_identities(key_file(tmp_path / "k.txt", identity), "x")
    stored = encrypt_all(os.urandom(3 * MIB), [identity.to_public()])
    pieces = crypto.decrypt(chunked(stored), keys, "x")
    next(pieces)
    pieces.close()
    assert threading.active_count() == before


class FullWriter:
    """A storage writer on a full disk."""

    def write(self, data: bytes | memoryview) -> None:
        raise StorageError("disk full", permanent=True, hint="free some space")

    def commit(self) -> None:
        raise AssertionError("never reached")

    def abort(self) -> None:
        pass


def test_a_storage_error_downstream_keeps_its_identity() -> None:
    identity = x25519.Identity.generate()
    with pytest.raises(StorageError) as caught:
        sink = CompressingSink(
            FullWriter(),
            codecs.compressor(Compression.NONE, codecs.CodecOptions()),
            recipients=[identity.to_public()],
        )
        sink.write(os.urandom(MIB))
        sink.finish()
    assert caught.value.permanent and caught.value.hint == "free some space"
