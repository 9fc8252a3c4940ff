"""``plan_retention``: a pure function from a backup history to a retention plan."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from pgkeep.retention.model import BackupInfo, Status, require_aware
from pgkeep.retention.plan import Action, Decision, RetentionPlan
from pgkeep.retention.policy import RetentionPolicy

_RUNNING = {Status.IN_PROGRESS: "in progress", Status.PENDING: "pending"}


def plan_retention(
    backups: Iterable[BackupInfo],
    policy: RetentionPolicy,
    now: datetime,
    pinned: Mapping[str, str] | None = None,
) -> RetentionPlan:
    """Decide, for every backup, keep or delete, with the reasons.

    A backup is deleted only when it has expired (``expires_at`` before
    ``now``, or status EXPIRED: a deletion that failed earlier and is
    retried) and no rule keeps it. Rules that keep a backup:

    - safety, which no policy overrides: IN_PROGRESS and PENDING backups;
      ``keep=True``; the newest COMPLETED backup of each database;
    - the GFS policy (see :class:`RetentionPolicy`), counting only COMPLETED
      backups started at or before ``now``; FAILED ones never fill a
      bucket, so a failure can never push a good backup out of one;
    - expiry: ``expires_at`` not passed yet, or no ``expires_at``;
    - ``pinned``: ids kept for a reason decided elsewhere, given as the
      reason (the recovery window of point-in-time recovery, see
      :mod:`pgkeep.retention.wal`);
    - dependencies: a backup that a kept, non-FAILED backup ``depends_on``,
      transitively ("dependency of <id>").

    "Newest" and the GFS buckets are per ``database_name`` (``None`` is one
    group of its own) and ``kind``: a catalog holding several databases keeps
    the copies of each, and a physical backup never stands in for the logical
    ones (they restore differently: a table, a database, another server). Types
    are not separated: a MANUAL backup can be a day's copy.

    DELETED backups get no decision. The result depends only on the set of
    backups, not their order. Duplicate ids or a naive ``now`` raise
    ``ValueError``.
    """
    require_aware(now, "now")
    every = list(backups)
    rows = _canonical(every)
    gone = {b.id for b in every if b.status is Status.DELETED}
    zone = policy.zone

    reasons: dict[str, list[str]] = {b.id: _safety_reasons(b) for b in rows}
    for backup_id in _newest_completed(rows):
        reasons[backup_id].append("newest completed")
    for backup_id, gfs in _gfs_reasons(rows, policy, now).items():
        reasons[backup_id].extend(gfs)
    for b in rows:
        unexpired = _unexpired_reason(b, now, zone)
        if unexpired:
            reasons[b.id].append(unexpired)
    for backup_id, why in (pinned or {}).items():
        if backup_id in reasons:
            reasons[backup_id].append(why)
    warnings = _keep_dependencies(rows, reasons, gone)

    decisions = tuple(
        Decision(b.id, Action.KEEP, tuple(reasons[b.id]))
        if reasons[b.id]
        else Decision(b.id, Action.DELETE, (_delete_reason(b, zone),))
        for b in rows
    )
    return RetentionPlan(decisions, tuple(sorted(set(warnings))))


def _canonical(backups: Sequence[BackupInfo]) -> list[BackupInfo]:
    """Live backups newest first; the one order every rule walks, whatever the input order."""
    seen: set[str] = set()
    for b in backups:
        if b.id in seen:
            raise ValueError(f"backup id {b.id} appears twice")
        seen.add(b.id)
    live = [b for b in backups if b.status is not Status.DELETED]
    # The id breaks ties between equal start times, so "newest" is always well defined.
    return sorted(live, key=lambda b: (b.started_at, b.id), reverse=True)


def _safety_reasons(b: BackupInfo) -> list[str]:
    out = []
    if b.status in _RUNNING:
        out.append(_RUNNING[b.status])
    if b.keep:
        out.append("keep flag")
    return out


def _newest_completed(rows: Sequence[BackupInfo]) -> list[str]:
    newest: dict[tuple[str | None, str], str] = {}
    for b in rows:
        if b.status is Status.COMPLETED:
            newest.setdefault((b.database_name, b.kind), b.id)
    return list(newest.values())


def _gfs_reasons(rows: Sequence[BackupInfo], policy: RetentionPolicy, now: datetime) -> dict[str, list[str]]:
    # A backup started after `now` (clock skew between hosts) would open a bucket
    # later than now's and use up one of the N; it is kept anyway until it expires.
    groups: dict[tuple[str | None, str], list[BackupInfo]] = defaultdict(list)
    for b in rows:
        if b.status is Status.COMPLETED and b.started_at <= now:
            groups[(b.database_name, b.kind)].append(b)
    zone = policy.zone
    out: dict[str, list[str]] = defaultdict(list)
    for group in groups.values():
        local = [(b.id, b.started_at.astimezone(zone)) for b in group]
        for rule in policy.rules():
            # A set, not "the previous bucket": local dates need not be monotonic
            # in UTC order when a zone's offset changes across midnight.
            filled: set[str] = set()
            for backup_id, when in local:
                if len(filled) >= rule.count:
                    break
                key = rule.bucket(when)
                if key not in filled:
                    filled.add(key)
                    out[backup_id].append(f"{rule.name} {key}")
    return out


def _unexpired_reason(b: BackupInfo, now: datetime, zone: ZoneInfo) -> str | None:
    if b.status is Status.EXPIRED:
        return None  # retention already decided; only the files remain
    if b.expires_at is None:
        return "no expiry date"
    if b.expires_at >= now:
        return f"not expired yet (expires {_date(b.expires_at, zone)})"
    return None


def _keep_dependencies(rows: Sequence[BackupInfo], reasons: dict[str, list[str]], gone: set[str]) -> list[str]:
    """Keep what kept backups depend on, transitively; return warnings for broken chains."""
    by_id = {b.id: b for b in rows}
    dependents: dict[str, set[str]] = defaultdict(set)
    warnings: list[str] = []
    queue = [b.id for b in rows if reasons[b.id]]
    kept = set(queue)
    while queue:
        b = by_id[queue.pop()]
        # A failed backup cannot be restored, so it needs no base kept for it.
        if b.status is Status.FAILED or b.depends_on is None:
            continue
        base = by_id.get(b.depends_on)
        if base is None:
            where = "DELETED" if b.depends_on in gone else "not in the catalog"
            warnings.append(f"{b.id} depends on {b.depends_on}, which is {where}")
            continue
        if base.status is Status.FAILED:
            warnings.append(f"{b.id} depends on {base.id}, which is FAILED")
        dependents[base.id].add(b.id)
        if base.id not in kept:
            kept.add(base.id)
            queue.append(base.id)
    for base_id, ids in dependents.items():
        reasons[base_id].extend(f"dependency of {i}" for i in sorted(ids))
    return warnings


def _delete_reason(b: BackupInfo, zone: ZoneInfo) -> str:
    if b.status is Status.EXPIRED:
        return "EXPIRED: files still to remove"
    # Only expired backups reach here: every other one has a keep reason.
    assert b.expires_at is not None
    expired = _date(b.expires_at, zone)
    if b.status is Status.FAILED:
        return f"failed backup expired {expired}"
    return f"expired {expired} and no rule keeps it"


def _date(when: datetime, zone: ZoneInfo) -> str:
    """A date in the policy's zone, as the bucket names are."""
    return when.astimezone(zone).date().isoformat()
