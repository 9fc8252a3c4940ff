"""Pushing and fetching WAL files: PostgreSQL's ``archive_command`` and ``restore_command``.

Both run as the server's OS user, once per file, with no catalog: they need
only the storage (and the encryption keys). Contracts PostgreSQL relies on:

- push succeeds only once the object is committed (durable) in storage.
  Pushing the same file again with the same bytes succeeds without storing
  anything (the server retries after a crash or timeout); different bytes
  under the same name fail loudly and keep failing, because two clusters
  are writing to one archive, or the server's WAL was reset, and only a
  person can sort that out.
- fetch distinguishes "not in the archive" (:class:`WalMissingError`:
  PostgreSQL ends recovery there) from "there but unusable" (anything else:
  the CLI exits above 125 so that PostgreSQL aborts recovery instead of
  promoting a cluster silently short of its target).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pgkeep.config import Compression
from pgkeep.errors import NotFoundError, PgkeepError, StorageError, VerificationError
from pgkeep.pipeline import codecs, crypto
from pgkeep.pipeline.codecs import CodecOptions, compressor
from pgkeep.pipeline.stream import CHUNK, CompressingSink
from pgkeep.storage import Storage
from pgkeep.storage.base import iter_chunks
from pgkeep.wal.naming import (
    WalObject,
    check_wal_file_name,
    object_name,
    object_prefix,
    parse_object,
)


class WalMissingError(NotFoundError):
    """The archive has no copy of the requested WAL file (restore_command's exit 1)."""

    code = "wal_not_found"


class WalConflictError(PgkeepError):
    """The archive holds a different file under the same name."""

    code = "wal_conflict"
    title = "A different WAL file with this name is archived"


@dataclass(frozen=True)
class PushResult:
    file: str
    object: str
    digest: str  # SHA-256 of the WAL file
    size: int  # bytes of the WAL file
    stored: int  # bytes stored (0 when it was archived already)
    already_archived: bool


@dataclass(frozen=True)
class FetchResult:
    file: str
    object: str
    digest: str  # SHA-256 of the file, checked
    size: int


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copies(storage: Storage, file: str) -> list[WalObject]:
    """Every archived object of ``file`` (normally zero or one)."""
    found = (parse_object(info.name) for info in storage.list(object_prefix(file)))
    return [obj for obj in found if obj is not None and obj.file == file]


def _conflict(file: str, digest: str, other: WalObject, storage: Storage) -> WalConflictError:
    return WalConflictError(
        f"refusing to archive {file}: {storage.url_for(other.name)} holds different content "
        f"(SHA-256 {other.digest[:16]}..., this file {digest[:16]}...)",
        operation="wal-push",
        hint="two clusters may be archiving into the same PGKEEP_STORAGE_URL: give each cluster its own; "
        "never delete or overwrite archived WAL to make this pass",
    )


def push(
    storage: Storage,
    path: Path,
    *,
    compression: Compression = Compression.ZSTD,
    codec_options: CodecOptions | None = None,
    recipients: Sequence[crypto.Recipient] = (),
) -> PushResult:
    """Archive one WAL file (``archive_command``'s ``%p``). Raises a PgkeepError unless it is stored."""
    file = check_wal_file_name(path.name)
    try:
        digest, size = _file_digest(path)
    except FileNotFoundError:
        raise NotFoundError(f"WAL file {path} not found", operation="wal-push") from None
    except OSError as exc:
        raise PgkeepError(f"cannot read WAL file {path}: {exc.strerror}", operation="wal-push") from None

    def archived() -> PushResult | None:
        for other in copies(storage, file):
            if other.digest != digest:
                raise _conflict(file, digest, other, storage)
            return PushResult(file, other.name, digest, size, 0, True)
        return None

    done = archived()
    if done is not None:
        return done
    name = object_name(file, digest, compression, bool(recipients))
    writer = storage.open_writer(name)
    sink: CompressingSink | None = None
    try:
        sink = CompressingSink(writer, compressor(compression, codec_options or CodecOptions()), None, recipients)
        again = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                again.update(chunk)
                sink.write(chunk)
        # PostgreSQL never changes a file it handed to archive_command; if it did, the
        # stored object would not match the digest in its name.
        if again.hexdigest() != digest:
            raise PgkeepError(f"WAL file {path} changed while it was being archived", operation="wal-push")
        sink.finish()
        writer.commit()
    except StorageError:
        if sink is not None:
            sink.abort()
        writer.abort()
        # A concurrent push of the same file (a retry that overlapped) may have won the race.
        with contextlib.suppress(StorageError):
            done = archived()
            if done is not None:
                return done
        raise
    except BaseException:
        if sink is not None:
            sink.abort()
        writer.abort()
        raise
    return PushResult(file, name, digest, size, sink.stored_bytes, False)


def _decoded(storage: Storage, obj: WalObject, identity_file: Path | None) -> Iterator[bytes]:
    reader = storage.open_reader(obj.name)
    try:
        stored: Iterator[bytes] = iter_chunks(reader)
        if obj.encrypted:
            keys = crypto.load_identities(identity_file, f"archived WAL {obj.file}")
            stored = crypto.decrypt(stored, keys, obj.name)
        yield from codecs.decompress(stored, obj.compression)
    finally:
        reader.close()


def fetch(storage: Storage, file: str, dest: Path, *, identity_file: Path | None = None) -> FetchResult:
    """Restore one archived WAL file to ``dest`` (``restore_command``'s ``%f %p``).

    ``dest`` exists only if the whole file was restored and its SHA-256 is
    the one recorded when it was archived.
    """
    check_wal_file_name(file)
    found = copies(storage, file)
    if not found:
        raise WalMissingError(f"{file} is not in the archive", operation="wal-fetch")
    if len({obj.digest for obj in found}) > 1:
        raise VerificationError(
            f"the archive holds {len(found)} different copies of {file}",
            operation="wal-fetch",
            hint="two clusters archived into the same storage; restore from the right cluster's archive",
        )
    obj = found[0]
    digest = hashlib.sha256()
    size = 0
    try:
        with open(dest, "wb") as out:
            for chunk in _decoded(storage, obj, identity_file):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if digest.hexdigest() != obj.digest:
            raise VerificationError(
                f"archived {file} is damaged: its content has SHA-256 {digest.hexdigest()[:16]}..., "
                f"{obj.digest[:16]}... was archived",
                operation="wal-fetch",
                hint=f"{storage.url_for(obj.name)} was altered; recovery cannot go past this segment",
            )
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(dest)
        raise
    return FetchResult(file, obj.name, obj.digest, size)
