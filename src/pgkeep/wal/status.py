"""The state of the WAL archive: newest segment, its age, and holes.

``find_holes`` is pure (names in, missing names out); ``archive_status``
lists the storage once and applies it from a starting segment (the oldest
kept base backup's first segment).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pgkeep.storage import ObjectInfo, Storage
from pgkeep.wal.naming import DEFAULT_SEGMENT_SIZE, OBJECT_PREFIX, WalObject, parse_object, parse_segment, segment_name

MAX_HOLES_REPORTED = 100


@dataclass(frozen=True)
class ArchivedFile:
    obj: WalObject
    info: ObjectInfo


def list_archive(storage: Storage) -> list[ArchivedFile]:
    """Every archived WAL object, sorted by name."""
    out = []
    for info in storage.list(OBJECT_PREFIX):
        obj = parse_object(info.name)
        if obj is not None:
            out.append(ArchivedFile(obj, info))
    return out


def find_holes(
    segments: Iterable[str], start: str | None, segment_size: int, limit: int = MAX_HOLES_REPORTED
) -> list[str]:
    """Segments missing between ``start`` (or the oldest archived) and the newest archived one.

    A position counts as present when a full segment of *any* timeline holds
    it: after a promotion the new timeline continues from the old one's last
    segment number (the old timeline's copy is archived as ``.partial``).
    A missing name is given on the timeline of the segment before it.
    """
    present: dict[int, int] = {}
    for name in segments:
        tli, segno = parse_segment(name, segment_size)
        present[segno] = max(tli, present.get(segno, 0))
    if not present:
        return [start] if start else []
    first = parse_segment(start, segment_size)[1] if start else min(present)
    last = max(present)
    holes: list[str] = []
    tli = present.get(first, parse_segment(start, segment_size)[0] if start else 1)
    for segno in range(first, last + 1):
        if segno in present:
            tli = present[segno]
            continue
        holes.append(segment_name(tli, segno, segment_size))
        if len(holes) >= limit:
            break
    return holes


@dataclass
class ArchiveStatus:
    newest: str | None = None
    newest_archived_at: datetime | None = None
    age_seconds: float | None = None
    oldest_needed: str | None = None  # the first segment of the oldest kept base backup
    segments: int = 0
    holes: list[str] = field(default_factory=list)
    segment_size: int = DEFAULT_SEGMENT_SIZE
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.holes and not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "newestSegment": self.newest,
            "newestArchivedAt": self.newest_archived_at.isoformat() if self.newest_archived_at else None,
            "ageSeconds": None if self.age_seconds is None else round(self.age_seconds, 3),
            "oldestNeededSegment": self.oldest_needed,
            "segments": self.segments,
            "holes": self.holes,
            "walSegmentSize": self.segment_size,
            "problems": self.problems,
        }


def archive_status(files: list[ArchivedFile], *, start: str | None, segment_size: int, now: datetime) -> ArchiveStatus:
    """Summarize an archive listing; ``start`` is the oldest segment that must be there."""
    segments = [f for f in files if f.obj.is_segment]
    status = ArchiveStatus(oldest_needed=start, segments=len(segments), segment_size=segment_size)
    if start is not None:
        segments = [
            f for f in segments if parse_segment(f.obj.file, segment_size)[1] >= parse_segment(start, segment_size)[1]
        ]
    if segments:
        newest = max(segments, key=lambda f: (parse_segment(f.obj.file, segment_size)[1], f.obj.file))
        status.newest = newest.obj.file
        status.newest_archived_at = newest.info.modified
        status.age_seconds = max(0.0, (now - newest.info.modified).total_seconds())
    elif start is not None:
        status.problems.append(f"no WAL archived since {start}, the first segment of the oldest kept base backup")
    status.holes = find_holes((f.obj.file for f in segments), start, segment_size)
    return status
