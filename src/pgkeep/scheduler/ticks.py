"""Cron arithmetic, delegated to APScheduler's CronTrigger (no home-made parser)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def _standard_day_of_week(field: str) -> str:
    """Translate crontab's numeric days (0 or 7 = Sunday) to names.

    Danger: APScheduler 3 reads numeric day_of_week as 0 = *Monday*, so
    ``from_crontab("0 2 * * 0")`` would silently run on Mondays.
    """
    if field == "*" or not any(ch.isdigit() for ch in field):
        return field
    days: set[int] = set()
    for item in field.split(","):
        rng, _, step_s = item.partition("/")
        step = int(step_s) if step_s else 1
        if rng == "*":
            lo, hi = 0, 6
        elif "-" in rng:
            a, b = rng.split("-", 1)
            lo, hi = _day_number(a), _day_number(b)
        else:
            lo = hi = _day_number(rng)
        if hi == 7 and lo > 0:
            days.add(0)
            hi = 6
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


def _day_number(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    if token[:3] in _DAY_NAMES:
        return _DAY_NAMES.index(token[:3])
    raise ValueError(f"bad day of week {token!r}")


def trigger(cron: str, tz: str = "UTC") -> CronTrigger:
    """A CronTrigger with standard crontab semantics for a 5-field expression."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields, got {len(fields)}: {cron!r}")
    minute, hour, day, month, dow = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_standard_day_of_week(dow),
        timezone=ZoneInfo(tz),
    )


def latest_fire_time(
    cron: str, now: datetime, tz: str = "UTC", horizon: timedelta = timedelta(days=400)
) -> datetime | None:
    """The most recent fire time at or before ``now`` (within ``horizon``)."""
    trig = trigger(cron, tz)
    start = now - horizon
    latest = None
    t = trig.get_next_fire_time(None, start)
    # Walk forward; cron schedules here fire at most every minute, the horizon bounds it.
    while t is not None and t <= now:
        latest = t
        t = trig.get_next_fire_time(t, t + timedelta(microseconds=1))
    return latest


def previous_fire_time(cron: str, now: datetime, tz: str = "UTC") -> datetime | None:
    """Like :func:`latest_fire_time`, searching back in growing windows (cheap for daily jobs)."""
    for window in (timedelta(hours=2), timedelta(days=2), timedelta(days=40), timedelta(days=400)):
        found = latest_fire_time(cron, now, tz, window)
        if found is not None:
            return found
    return None
