"""WAL file names, LSNs and segment arithmetic, and the names of archived WAL objects.

PostgreSQL names a segment ``TTTTTTTTXXXXXXXXYYYYYYYY``: timeline, then the
segment number split in two (``XXXXXXXX`` counts 4 GiB units, ``YYYYYYYY``
the segments inside one, so the split depends on the segment size). Besides
segments the archive holds timeline history files (``00000002.history``),
backup history files (``<segment>.<offset>.backup``) and ``.partial``
segments a promoted server leaves for its old timeline.

An archived object is named ``wal-<file>.<sha256 of the file>[.zst|.gz][.age]``:
the key contains the file name (the issue's requirement: an operator can find
a segment by hand), and the SHA-256 of the *original* bytes, so that a
re-push is compared without downloading anything and a fetch can prove it
gives PostgreSQL back exactly what it archived.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgkeep.config import Compression
from pgkeep.errors import InvalidRequestError
from pgkeep.pipeline import codecs
from pgkeep.wal.patterns import SEGMENT, SEGMENT_FILE, WAL_FILE

OBJECT_PREFIX = "wal-"
DEFAULT_SEGMENT_SIZE = 16 << 20
_4GIB = 1 << 32

_OBJECT = re.compile(
    rf"^{OBJECT_PREFIX}(?P<file>{SEGMENT}(?:\.partial|\.[0-9A-F]{{8}}\.backup)?|[0-9A-F]{{8}}\.history)"
    r"\.(?P<digest>[0-9a-f]{64})(?P<comp>\.zst|\.gz)?(?P<age>\.age)?$"
)
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def check_wal_file_name(name: str) -> str:
    """``name`` if it is a WAL file name PostgreSQL archives, else InvalidRequestError."""
    if not WAL_FILE.match(name):
        raise InvalidRequestError(
            f"{name!r} is not a WAL file name (segment, .history, .backup or .partial)",
            hint="archive_command must pass %p (and restore_command %f %p) exactly as PostgreSQL gives them",
        )
    return name


@dataclass(frozen=True)
class WalObject:
    """One archived WAL file, as its object name describes it."""

    name: str  # the storage object
    file: str  # the WAL file name PostgreSQL knows
    digest: str  # SHA-256 of the original file
    compression: Compression
    encrypted: bool

    @property
    def is_segment(self) -> bool:
        return bool(SEGMENT_FILE.match(self.file))


def object_name(file: str, digest: str, compression: Compression, encrypted: bool) -> str:
    return f"{OBJECT_PREFIX}{file}.{digest}{codecs.suffix(compression)}{'.age' if encrypted else ''}"


def parse_object(name: str) -> WalObject | None:
    """The archived file an object name describes; None for any other object."""
    m = _OBJECT.match(name)
    if not m:
        return None
    comp = {".zst": Compression.ZSTD, ".gz": Compression.GZIP}.get(m["comp"] or "", Compression.NONE)
    return WalObject(name, m["file"], m["digest"], comp, bool(m["age"]))


def object_prefix(file: str) -> str:
    """The listing prefix of every object of ``file`` (and of others sharing its start: parse them)."""
    return f"{OBJECT_PREFIX}{file}."


# --- LSNs and segments ----------------------------------------------------------------------


def parse_lsn(text: str) -> int:
    """``0/3000148`` -> an integer; InvalidRequestError if it is not an LSN."""
    m = _LSN.match(text.strip())
    if not m:
        raise InvalidRequestError(f"{text!r} is not a WAL location (LSN), e.g. 0/3000148")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _per_4gib(segment_size: int) -> int:
    if segment_size <= 0 or segment_size & (segment_size - 1) or segment_size > 1 << 30:
        raise ValueError(f"invalid WAL segment size {segment_size}")
    return _4GIB // segment_size


def segment_name(timeline: int, segno: int, segment_size: int) -> str:
    per = _per_4gib(segment_size)
    return f"{timeline:08X}{segno // per:08X}{segno % per:08X}"


def segment_of_lsn(timeline: int, lsn: int, segment_size: int) -> str:
    """The segment file holding ``lsn`` on ``timeline``."""
    return segment_name(timeline, lsn // segment_size, segment_size)


def parse_segment(name: str, segment_size: int) -> tuple[int, int]:
    """``(timeline, segment number)`` of a segment file name (a .partial or .backup suffix is ignored)."""
    base = name[:24]
    if not SEGMENT_FILE.match(base):
        raise ValueError(f"{name!r} is not a WAL segment name")
    per = _per_4gib(segment_size)
    return int(base[:8], 16), int(base[8:16], 16) * per + int(base[16:24], 16)


def segment_key(name: str) -> tuple[int, int]:
    """A sort key of a segment name by position in the WAL, timeline ignored.

    The high and low parts compare the same whatever the segment size, so
    comparing names by this key needs no segment size.
    """
    base = name[:24]
    return int(base[8:16], 16), int(base[16:24], 16)
