"""What the planner needs to know about one backup, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum


class Status(StrEnum):
    """A backup's lifecycle state; the same values as the catalog's ``BackupStatus``."""

    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class BackupInfo:
    """One backup as the retention planner sees it.

    ``status`` accepts a :class:`Status`, its string value, or any ``str``
    enum with the same values (the catalog's ``BackupStatus``), so a caller
    can pass a catalog row's fields as they are. ``type`` is informational
    ("SCHEDULED", "PRE_MIGRATION", ...): no rule depends on it, per-type
    lifetimes arrive through ``expires_at``. ``expires_at`` ``None`` means the
    backup never expires. ``depends_on`` is the id of the backup this one
    needs to be restored (the base of an incremental): while this one is kept,
    so is its base.

    Datetimes must be timezone-aware: a naive one raises ``ValueError``
    rather than be guessed at.
    """

    id: str
    type: str
    status: Status
    started_at: datetime
    expires_at: datetime | None
    keep: bool = False
    database_name: str | None = None
    depends_on: str | None = None
    kind: str = "logical"  # or "physical": they restore differently, so each keeps its own newest

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__, once, at construction.
        object.__setattr__(self, "status", Status(self.status))
        if isinstance(self.type, Enum):
            object.__setattr__(self, "type", str(self.type.value))
        require_aware(self.started_at, f"backup {self.id}: started_at")
        if self.expires_at is not None:
            require_aware(self.expires_at, f"backup {self.id}: expires_at")
        if self.depends_on == self.id:
            raise ValueError(f"backup {self.id} depends on itself")


def require_aware(value: datetime, what: str) -> None:
    """Raise ``ValueError`` for a naive datetime; ``what`` names it in the message."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} is a naive datetime; pass a timezone-aware one (UTC)")
