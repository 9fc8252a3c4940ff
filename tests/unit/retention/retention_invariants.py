"""The safety rules, checked on any (history, plan) pair: goldens and hypothesis share them."""

from __future__ import annotations

from datetime import datetime

from pgkeep.retention import Action, BackupInfo, RetentionPlan, Status

GFS_PREFIXES = ("daily ", "weekly ", "monthly ", "yearly ")


def check_invariants(backups: list[BackupInfo], plan: RetentionPlan, now: datetime) -> None:
    by_id = {b.id: b for b in backups}
    decided = [d.id for d in plan.decisions]
    live = {b.id for b in backups if b.status is not Status.DELETED}
    assert len(decided) == len(set(decided)), "a backup has two decisions"
    assert set(decided) == live, "every live backup, and no DELETED one, has a decision"

    order = [(by_id[i].started_at, i) for i in decided]
    assert order == sorted(order, reverse=True), "decisions are newest first"

    newest: dict[str | None, BackupInfo] = {}
    for b in backups:
        if b.status is Status.COMPLETED:
            best = newest.get(b.database_name)
            if best is None or (b.started_at, b.id) > (best.started_at, best.id):
                newest[b.database_name] = b
    protected = {b.id for b in newest.values()}

    kept = set(plan.keep_ids)
    for d in plan.decisions:
        b = by_id[d.id]
        assert d.reasons, f"{d.id} has no reason"
        if d.action is Action.DELETE:
            assert len(d.reasons) == 1, f"{d.id}: one reason to delete"
            assert not b.keep, f"{d.id} has the keep flag"
            assert d.id not in protected, f"{d.id} is its database's newest COMPLETED backup"
            assert b.status not in (Status.IN_PROGRESS, Status.PENDING), f"{d.id} is running"
            assert b.status is Status.EXPIRED or (b.expires_at is not None and b.expires_at < now), (
                f"{d.id} is deleted before it expired"
            )
        if b.status is not Status.COMPLETED:
            gfs = [r for r in d.reasons if r.startswith(GFS_PREFIXES)]
            assert not gfs, f"{d.id} is {b.status} but counted as a kept copy: {gfs}"
        if d.action is Action.KEEP and b.status is not Status.FAILED and b.depends_on in live:
            assert b.depends_on in kept, f"{d.id} is kept but its base {b.depends_on} is not"
