"""Reading a stored backup: where it is, what it is, and whether it is whole.

``scan`` streams the stored bytes once: SHA-256 of the stored bytes,
decryption (age) and decompression to the end (a truncated or corrupt stream
is caught), and an archive check (``pg_restore --list`` for custom/directory archives, the dump
header and end marker for plain SQL).
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from pgkeep.catalog.models import DatabaseBackup
from pgkeep.config import Compression, DumpFormat, Settings
from pgkeep.errors import InvalidRequestError, NotFoundError, PgkeepError, RestoreFailedError, VerificationError
from pgkeep.pgtools.binaries import Tool, find_tool
from pgkeep.pgtools.commands import pg_restore_list_argv
from pgkeep.pgtools.process import Child
from pgkeep.pipeline import codecs, crypto
from pgkeep.storage import locate
from pgkeep.storage.base import READ_CHUNK

PLAIN_HEADER = b"PostgreSQL database dump"
PLAIN_TRAILER = b"PostgreSQL database dump complete"
SNIFF_BYTES = 1 << 16
ENCRYPTED_SNIFF_BYTES = 1 << 18  # age decrypts in 64 KiB chunks: several, to sniff 64 KiB


@dataclass(frozen=True)
class Artifact:
    """A backup artifact and what is known about it."""

    name: str
    opener: Callable[[], BinaryIO]
    fmt: DumpFormat
    compression: Compression
    checksum: str | None = None
    size: int | None = None
    raw_size: int | None = None  # the dump's own size, uncompressed and decrypted (when recorded)
    dump_major: int | None = None
    backup_id: str | None = None
    globals_info: dict[str, Any] | None = None  # roles/tablespaces stored beside the backup
    globals_opener: Callable[[], BinaryIO] | None = None
    encryption: str | None = None  # "age": the stored bytes are encrypted
    recipients: tuple[str, ...] = ()  # fingerprints of the keys it was encrypted to
    identity_file: Path | None = None  # PGKEEP_AGE_IDENTITY_FILE, to decrypt it
    on_read: Callable[[int], None] | None = None  # progress: stored bytes read so far by the current pass

    def open(self) -> BinaryIO:
        return self.opener()

    def reader(self) -> HashingReader:
        """A pass over the stored bytes, hashed, counted and reported to ``on_read``."""
        return HashingReader(self.open(), self.on_read)

    def _keys(self, what: str) -> crypto.Keys:
        return crypto.load_identities(self.identity_file, what, self.recipients)

    def decoded(self, stored: Iterable[bytes]) -> Iterator[bytes]:
        """The dump's bytes from the stored ones: decrypted (if encrypted), then decompressed.

        An encrypted artifact without a usable key is a ConfigError naming
        PGKEEP_AGE_IDENTITY_FILE, raised before anything is read.
        """
        if self.encryption:
            stored = crypto.decrypt(stored, self._keys(f"backup {self.name}"), self.name, self.recipients)
        return codecs.decompress(stored, self.compression)

    def decoded_globals(self, raw: bytes) -> bytes:
        """The roles/tablespaces script from its stored bytes (checked by the caller)."""
        info = self.globals_info or {}
        if info.get("encryption"):
            name = str(info.get("filename"))
            raw = b"".join(crypto.decrypt([raw], self._keys(name), name, self.recipients))
        return b"".join(codecs.decompress([raw], codecs.detect(raw)))


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def artifact_for_row(row: DatabaseBackup, settings: Settings | None = None) -> Artifact:
    if not row.storage_url:
        raise NotFoundError(f"backup {row.id} has no stored file", backup_id=row.id)
    storage, name = locate(row.storage_url, settings)
    major = None
    if row.pg_dump_version:
        with contextlib.suppress(ValueError):
            major = int(row.pg_dump_version.split(".")[0])
    globals_info = (row.metadata_ or {}).get("globals")
    encryption_info = (row.metadata_ or {}).get("encryption") or {}
    return Artifact(
        name=row.filename,
        opener=lambda: storage.open_reader(name),
        globals_info=globals_info,
        globals_opener=(lambda: storage.open_reader(globals_info["filename"])) if globals_info else None,
        fmt=DumpFormat(row.format or "plain"),
        compression=Compression(row.compression or "none"),
        checksum=row.checksum,
        size=int(row.size),
        raw_size=_int_or_none((row.metadata_ or {}).get("uncompressedSize")),
        dump_major=major,
        backup_id=row.id,
        encryption=row.encryption,
        recipients=tuple(encryption_info.get("recipients") or ()),
        identity_file=settings.age_identity_file if settings is not None else None,
    )


def artifact_for_file(path: Path, checksum: str | None = None, identity_file: Path | None = None) -> Artifact:
    """An uncatalogued file: encryption, format and compression are read from its first bytes.

    An age-encrypted file needs ``identity_file`` (PGKEEP_AGE_IDENTITY_FILE) to be sniffed.
    """
    if path.is_dir():
        raise InvalidRequestError(
            f"{path} is a directory; pgkeep restores one file (a directory-format backup is stored as a tar)",
            hint=f"tar -C {path} -cf {path.name}.dir.tar . and restore that, or use pg_restore on the directory",
        )
    if not path.is_file():
        raise NotFoundError(f"backup file not found: {path}")

    def opener() -> BinaryIO:
        return open(path, "rb")

    with opener() as fh:
        head = fh.read(ENCRYPTED_SNIFF_BYTES)
    encryption = None
    if head.startswith(crypto.AGE_MAGIC):
        encryption = crypto.ENCRYPTION
        head = _decrypt_head(head, crypto.load_identities(identity_file, f"{path.name}"), path.name)
    head = head[:SNIFF_BYTES]
    compression = codecs.detect(head)
    raw = _decompress_head(head, compression)
    if raw.startswith(b"PGDMP"):
        fmt = DumpFormat.CUSTOM
    elif len(raw) >= 262 and raw[257:262] == b"ustar":
        fmt = DumpFormat.DIRECTORY
    else:
        fmt = DumpFormat.PLAIN
    return Artifact(
        path.name,
        opener,
        fmt,
        compression,
        checksum,
        path.stat().st_size,
        encryption=encryption,
        identity_file=identity_file,
    )


def _decrypt_head(head: bytes, keys: crypto.Keys, name: str) -> bytes:
    """The first plaintext bytes of an age file, from its first stored bytes."""
    return _first_bytes(crypto.decrypt([head], keys, name), SNIFF_BYTES)


def _decompress_head(head: bytes, compression: Compression) -> bytes:
    """The first plaintext bytes of a compressed file, from its first stored bytes."""
    return _first_bytes(codecs.decompress([head], compression, limit=SNIFF_BYTES), SNIFF_BYTES)


def _first_bytes(pieces: Generator[bytes, None, None], n: int) -> bytes:
    """Up to ``n`` bytes from a decoder fed only a file's head (which it may call cut short)."""
    out = b""
    try:
        for piece in pieces:
            out += piece
            if len(out) >= n:
                break
    except VerificationError:
        pass  # the head ends mid-chunk or mid-frame; scan() judges the whole file
    finally:
        pieces.close()
    return out[:n]


class HashingReader:
    """Wraps a stored stream: hashes and counts every byte read through it."""

    def __init__(self, reader: BinaryIO, on_read: Callable[[int], None] | None = None) -> None:
        self._reader = reader
        self._hash = hashlib.sha256()
        self._on_read = on_read
        self.size = 0

    def chunks(self) -> Iterator[bytes]:
        while True:
            chunk = self._reader.read(READ_CHUNK)
            if not chunk:
                return
            self._hash.update(chunk)
            self.size += len(chunk)
            if self._on_read is not None:
                self._on_read(self.size)
            yield chunk

    def drain(self) -> None:
        for _ in self.chunks():
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        self._reader.close()


def check_digest(artifact: Artifact, reader: HashingReader) -> None:
    """Raise VerificationError if the bytes read differ from what was recorded."""
    if artifact.checksum and reader.hexdigest() != artifact.checksum:
        raise VerificationError(
            f"checksum mismatch for {artifact.name}: stored file has {reader.hexdigest()}, "
            f"catalog says {artifact.checksum}",
            backup_id=artifact.backup_id,
            hint="the file was altered or damaged; restore from another backup",
        )
    if artifact.checksum and artifact.size is not None and reader.size != artifact.size:
        raise VerificationError(
            f"size mismatch for {artifact.name}: {reader.size} bytes stored, {artifact.size} recorded",
            backup_id=artifact.backup_id,
        )


def checked_while_loading(artifact: Artifact) -> bool:
    """Whether a whole-database restore of ``artifact`` checks every stored byte against
    its checksum before it commits (a known checksum, and a format that is loaded as it
    streams), so that it needs no verification pass of its own first."""
    return artifact.checksum is not None and artifact.fmt in (DumpFormat.CUSTOM, DumpFormat.PLAIN)


def explain_damage(artifact: Artifact, reader: HashingReader, exc: VerificationError) -> None:
    """A stream that failed to decode: raise the checksum mismatch if there is one (it says
    more than the decoder's complaint), else tag ``exc`` with the backup it came from."""
    with contextlib.suppress(OSError, ValueError):
        reader.drain()
        check_digest(artifact, reader)
    exc.backup_id = artifact.backup_id


def explain_failed_load(artifact: Artifact, reader: HashingReader, exc: PgkeepError) -> None:
    """A load that failed on what it was given (an SQL error, say), maybe before the whole
    backup was read: read the rest and check the checksum. Damage is then the cause, and is
    raised instead (exit 5, not 1); intact bytes are said in ``exc``'s message."""
    if artifact.checksum is None:
        return
    try:
        reader.drain()
    except (OSError, PgkeepError):  # the storage failed too: nothing to tell
        return
    try:
        check_digest(artifact, reader)
    except VerificationError as damage:
        damage.message += f"; the load failed first, on what it read: {exc.message}"
        raise damage from exc
    exc.message += "; the backup itself is intact (read to its end, its SHA-256 matches)"


def pg_restore_for(artifact: Artifact, configured_dir: Path | None) -> Tool:
    """A pg_restore that can read the archive: at least as new as the pg_dump that wrote it."""
    if artifact.dump_major is not None:
        return find_tool(
            "pg_restore",
            artifact.dump_major,
            configured_dir,
            reason=f"the backup was written by pg_dump {artifact.dump_major}",
        )
    return find_tool("pg_restore", 0, configured_dir, newest=True)


def scan(
    artifact: Artifact, *, pg_bin_dir: Path | None, check_archive: bool = True, toc: list[str] | None = None
) -> str:
    """Read the whole artifact once; return its SHA-256 or raise VerificationError.

    With ``check_archive=False`` only the stored bytes are hashed (the
    ``checksum`` verification level). For custom and directory archives,
    ``toc`` (if given) receives the archive's table of contents
    (``pg_restore --list`` lines), used to check owners before a restore.
    """
    reader = artifact.reader()
    if not check_archive:
        try:
            reader.drain()
        finally:
            reader.close()
        check_digest(artifact, reader)
        return reader.hexdigest()
    try:
        data = artifact.decoded(reader.chunks())
        if artifact.fmt is DumpFormat.PLAIN:
            _check_plain(data)
        elif artifact.fmt is DumpFormat.CUSTOM and artifact.checksum is None:
            # No checksum to hold the bytes to (a file from elsewhere): pg_restore reads every
            # data block, so a truncated archive fails here, not half-way through a restore.
            _check_custom(data, pg_restore_for(artifact, pg_bin_dir), None, replay=True)
        elif artifact.fmt is DumpFormat.CUSTOM:
            _check_custom(data, pg_restore_for(artifact, pg_bin_dir), toc)
        else:
            _check_directory(data, pg_restore_for(artifact, pg_bin_dir), toc)
        reader.drain()
    except VerificationError as exc:
        explain_damage(artifact, reader, exc)
        raise
    finally:
        reader.close()
    check_digest(artifact, reader)
    if toc is not None and artifact.fmt is DumpFormat.CUSTOM and artifact.checksum is None:
        toc.extend(read_toc(artifact, pg_bin_dir=pg_bin_dir))
    return reader.hexdigest()


def read_toc(artifact: Artifact, *, pg_bin_dir: Path | None) -> list[str]:
    """A custom archive's table of contents, read from its head only.

    A restore that checks the stored bytes before it commits needs no full
    pass beforehand: this gives the ``pg_restore --list`` lines for the
    privilege check at the cost of the first few megabytes, not the whole
    archive. Directory archives keep their TOC at the end: use :func:`scan`.
    """
    if artifact.fmt is not DumpFormat.CUSTOM:
        raise ValueError(f"read_toc reads custom archives, not {artifact.fmt.value}")
    reader = artifact.reader()
    toc: list[str] = []
    try:
        _check_custom(artifact.decoded(reader.chunks()), pg_restore_for(artifact, pg_bin_dir), toc, whole=False)
    except VerificationError as exc:
        explain_damage(artifact, reader, exc)
        raise
    finally:
        reader.close()
    return toc


def _check_plain(data: Iterator[bytes]) -> None:
    head = b""
    tail = b""
    for chunk in data:
        if len(head) < 4096:
            head += chunk[: 4096 - len(head)]
        tail = (tail + chunk[-256:])[-256:]
    if PLAIN_HEADER not in head:
        raise VerificationError("not a PostgreSQL plain dump (no dump header)")
    if PLAIN_TRAILER not in tail:
        raise VerificationError("the plain dump is incomplete (no end marker)")


def _collect_lines(stream: IO[bytes], out: list[str]) -> threading.Thread:
    def pump() -> None:
        # On a failure path the child is killed and its pipes closed under this
        # thread: a closed stream just ends the listing.
        with contextlib.suppress(ValueError, OSError):
            for raw in iter(stream.readline, b""):
                out.append(raw.decode("utf-8", "replace").rstrip("\n"))
            stream.close()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def _check_custom(
    data: Iterator[bytes], tool: Tool, toc: list[str] | None = None, *, whole: bool = True, replay: bool = False
) -> None:
    """Feed the archive to ``pg_restore --list``; with ``whole``, decompress to its end even
    after pg_restore stopped reading (it stops after the TOC), so the stream is checked too.
    With ``replay``, pg_restore writes the whole script to /dev/null instead: every data block
    is read and decompressed (no TOC then)."""
    argv = [str(tool.path), "--file=/dev/null"] if replay else pg_restore_list_argv(tool)
    child = Child(argv, env={}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.proc.stdin is not None and child.proc.stdout is not None
    lines: list[str] = []
    reader = _collect_lines(child.proc.stdout, lines)
    stdin: IO[bytes] | None = child.proc.stdin
    try:
        for chunk in data:
            if stdin is not None:
                try:
                    stdin.write(chunk)
                except BrokenPipeError:
                    stdin = None  # pg_restore read the TOC and stopped; keep decompressing
            if stdin is None and not whole:
                break
        if stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()
        rc = child.wait()
        reader.join()
    except BaseException:
        child.kill()
        raise
    failure = child.failure(rc)
    if failure:
        raise VerificationError(f"the archive is not readable: {failure}")
    if toc is not None:
        toc.extend(lines)


class _ChunkFile:
    """A read()-able view of a chunk iterator, for tarfile's stream mode.

    tarfile reads in 512-byte blocks: the current chunk is consumed through
    an offset, never re-sliced as a whole (that made unpacking quadratic).
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        want = n
        while want != 0:
            if self._pos >= len(self._chunk):
                try:
                    self._chunk, self._pos = next(self._chunks), 0
                except StopIteration:
                    break
                continue
            end = len(self._chunk) if want < 0 else min(len(self._chunk), self._pos + want)
            parts.append(self._chunk[self._pos : end])
            if want > 0:
                want -= end - self._pos
            self._pos = end
        return b"".join(parts)


def _check_directory(data: Iterator[bytes], tool: Tool, toc: list[str] | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="pgkeep-verify-") as tmp:
        found_toc = False
        try:
            with tarfile.open(fileobj=_ChunkFile(data), mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    # "./toc.dat" too: a directory dump tarred by hand (tar -C DIR -cf FILE .)
                    if posixpath.normpath(member.name) == "toc.dat" and member.isfile():
                        tar.extract(member, tmp, filter="data")
                        found_toc = True
        except tarfile.TarError as exc:
            raise VerificationError(f"the directory archive is not a valid tar stream: {exc}") from None
        for _ in data:
            pass
        if not found_toc:
            raise VerificationError("the directory archive has no toc.dat")
        result = subprocess.run(pg_restore_list_argv(tool, Path(tmp)), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise VerificationError(f"the archive is not readable: {result.stderr.strip()}")
        if toc is not None:
            toc.extend(result.stdout.splitlines())


def extract_tar(stored: Iterator[bytes], dest: Path) -> Path:
    """Unpack a directory-format artifact's tar stream into a new private ``dest``."""
    try:
        dest.mkdir(mode=0o700)
        with tarfile.open(fileobj=_ChunkFile(stored), mode="r|") as tar:  # type: ignore[call-overload]
            tar.extractall(dest, filter="data")
    except tarfile.TarError as exc:
        raise VerificationError(f"the directory archive is not a valid tar stream: {exc}") from None
    except OSError as exc:
        raise staging_failed(exc, dest) from None
    for _ in stored:
        pass
    return dest


def staging_failed(exc: OSError, where: Path) -> RestoreFailedError:
    """A restore could not write its working copy of the archive (a full disk, usually)."""
    return RestoreFailedError(
        f"cannot write the archive's working copy in {where.parent}: {exc.strerror or exc}; nothing was changed",
        hint="PGKEEP_TEMP_DIR needs room for the uncompressed archive (`pgkeep show ID` gives its size): "
        "free space there or point it at a larger disk",
    )
