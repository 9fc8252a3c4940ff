"""The grandfather-father-son policy and the calendar buckets it counts in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgkeep.errors import ConfigError

BucketKey = Callable[[datetime], str]


def day_bucket(local: datetime) -> str:
    """``2026-11-25``: the calendar date of a local datetime."""
    return local.date().isoformat()


def iso_week_bucket(local: datetime) -> str:
    """``2026-W48``: the ISO 8601 week, with the ISO week-year.

    The ISO year is not the calendar year at the edges: 2025-12-29 is in
    ``2026-W01`` and 2027-01-01 is in ``2026-W53``.
    """
    year, week, _ = local.isocalendar()
    return f"{year:04d}-W{week:02d}"


def month_bucket(local: datetime) -> str:
    """``2026-11``: the calendar month of a local datetime."""
    return f"{local.year:04d}-{local.month:02d}"


def year_bucket(local: datetime) -> str:
    """``2026``: the calendar year of a local datetime."""
    return f"{local.year:04d}"


@dataclass(frozen=True)
class GfsRule:
    """Keep the newest COMPLETED backup of each of the ``count`` most recent buckets."""

    name: str
    count: int
    bucket: BucketKey


@dataclass(frozen=True)
class RetentionPolicy:
    """Grandfather-father-son: how many daily, weekly, monthly and yearly copies to keep.

    Each rule keeps the newest COMPLETED backup of each of its ``N`` most
    recent buckets (days, ISO weeks, months, years) *that contain a
    COMPLETED backup*, counting back from the bucket of ``now``. A bucket
    with no completed backup (a gap, a day whose backups all failed) does
    **not** use up one of the ``N``: these are restic's ``--keep-daily``
    semantics. So when backups stop (a broken scheduler, a long outage) the
    last ``N`` daily copies stay instead of ageing out one by one, which a
    calendar-window reading ("the last N calendar days") would allow.

    Buckets are computed on ``started_at`` (when the snapshot was taken)
    converted to ``tz``, an IANA zone name read with :mod:`zoneinfo`: with
    ``tz="Asia/Tokyo"`` a backup at 23:30 UTC on Dec 31 belongs to January
    of the next year, and DST days are one bucket however long they are.
    A count of 0 turns a rule off. The rules are independent: one backup
    can be the daily, weekly and monthly copy at once.

    Invalid counts or an unknown zone raise :class:`~pgkeep.errors.ConfigError`.
    """

    daily: int = 7
    weekly: int = 4
    monthly: int = 12
    yearly: int = 0
    tz: str = "UTC"

    def __post_init__(self) -> None:
        for name in ("daily", "weekly", "monthly", "yearly"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"retention {name} count must be a whole number >= 0, got {value!r}",
                    operation="cleanup",
                    hint="use 0 to turn a rule off",
                )
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"unknown retention time zone {self.tz!r}",
                operation="cleanup",
                hint="use an IANA zone name such as UTC or Europe/Berlin "
                "(install the tzdata package where the system has no zone database)",
            ) from exc

    @property
    def zone(self) -> ZoneInfo:
        """The policy's time zone (``ZoneInfo`` caches instances by name)."""
        return ZoneInfo(self.tz)

    def rules(self) -> tuple[GfsRule, ...]:
        """The four GFS rules, finest first; the order reasons are listed in."""
        return (
            GfsRule("daily", self.daily, day_bucket),
            GfsRule("weekly", self.weekly, iso_week_bucket),
            GfsRule("monthly", self.monthly, month_bucket),
            GfsRule("yearly", self.yearly, year_bucket),
        )
