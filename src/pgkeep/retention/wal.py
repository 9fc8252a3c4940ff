"""Retention for point-in-time recovery: the recovery window and the WAL archive.

Pure functions, like the planner: no I/O, no clock.

- :func:`recovery_window_pins` names the physical backups the recovery
  window needs: to restore to any moment of the last ``window``, the newest
  backup that was consistent at the window's start must stay (with all the
  WAL after it). If no backup is that old yet, the oldest one stays.
  The planner keeps pinned backups with this reason, and keeps what they
  depend on (an incremental's chain) as it does for any kept backup.
- :func:`plan_wal_cleanup` lists the archived WAL files older than the
  first segment of the oldest kept physical backup: nothing can use them.
  Timeline history files are always kept (they are tiny, and recovery
  reads them to follow timelines).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pgkeep.retention.model import require_aware


@dataclass(frozen=True)
class PhysicalBackup:
    """A COMPLETED physical backup as the window sees it: consistent from ``end``."""

    id: str
    end: datetime
    wal_start: str  # its first WAL segment file name


def recovery_window_pins(backups: Sequence[PhysicalBackup], window: timedelta, now: datetime) -> dict[str, str]:
    """``{backup id: reason}`` for the backups a recovery window of ``window`` needs (none if 0)."""
    require_aware(now, "now")
    if window <= timedelta(0) or not backups:
        return {}
    start = now - window
    covering = [b for b in backups if b.end <= start]
    if covering:
        chosen = max(covering, key=lambda b: (b.end, b.id))
        return {chosen.id: f"recovery window: restores to any moment since {start.isoformat(timespec='seconds')}"}
    chosen = min(backups, key=lambda b: (b.end, b.id))
    return {chosen.id: "recovery window: the oldest restorable moment (no backup is older than the window)"}


def _position(file: str) -> tuple[int, int] | None:
    """The WAL position a file name stands for (segment, .partial, .backup); None for history files."""
    if file.endswith(".history"):
        return None
    return int(file[8:16], 16), int(file[16:24], 16)


def plan_wal_cleanup(files: Iterable[str], kept_wal_starts: Iterable[str]) -> list[str]:
    """Archived WAL files before the oldest kept backup's first segment, oldest first.

    With no kept physical backup nothing is removed: the first backup may
    be on its way, and WAL is all a later one would build on.
    Deleting oldest first means an interrupted cleanup never leaves a hole.
    """
    starts = [p for p in (_position(s) for s in kept_wal_starts) if p is not None]
    if not starts:
        return []
    oldest = min(starts)
    doomed = [(pos, f) for f in files if (pos := _position(f)) is not None and pos < oldest]
    return [f for _, f in sorted(doomed)]
