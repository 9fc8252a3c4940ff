"""Properties of the planner over generated histories (hypothesis)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from retention_invariants import check_invariants

from pgkeep.retention import Action, BackupInfo, RetentionPolicy, Status, plan_retention

BASE = datetime(2025, 1, 1, tzinfo=UTC)
SPAN_MINUTES = 800 * 24 * 60
# DST north and south (Santiago changes at midnight), +13/+14 offsets (Apia, Chatham),
# 45-minute offsets (Chatham, Kathmandu) and a 30-minute DST shift (Lord Howe).
ZONES = [
    "UTC",
    "Europe/Berlin",
    "Asia/Tokyo",
    "America/New_York",
    "America/Santiago",
    "Pacific/Chatham",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Apia",
]
SETTINGS = settings(max_examples=200, deadline=None)

# Coarse start times on purpose: equal started_at values happen, and ties must not
# make the plan depend on input order.
starts = st.integers(0, SPAN_MINUTES // 360).map(lambda n: BASE + timedelta(minutes=360 * n))
policies = st.builds(
    RetentionPolicy,
    daily=st.integers(0, 10),
    weekly=st.integers(0, 6),
    monthly=st.integers(0, 14),
    yearly=st.integers(0, 3),
    tz=st.sampled_from(ZONES),
)
nows = st.integers(0, SPAN_MINUTES).map(lambda n: BASE + timedelta(minutes=n))


TYPES = ["SCHEDULED", "MANUAL", "FULL", "INCREMENTAL", "PRE_MIGRATION"]
rows = st.tuples(
    starts,
    st.none() | st.integers(-2, 400),  # expiry, in days after the start
    # Weighted towards what retention deletes: COMPLETED and FAILED, not marked keep.
    st.sampled_from([*[Status.COMPLETED] * 4, *[Status.FAILED] * 2, *Status]),
    st.sampled_from([False, False, False, True]),  # keep
    st.sampled_from([None, "app", "billing"]),
    st.none() | st.integers(0, 40),  # depends on the backup at this index, if earlier
    st.sampled_from(TYPES),
)


@st.composite
def histories(draw: st.DrawFn) -> list[BackupInfo]:
    out: list[BackupInfo] = []
    for i, (started, days, status, keep, db, dep, kind) in enumerate(draw(st.lists(rows, max_size=30))):
        expires = None if days is None else started + timedelta(days=days)
        # An index past the ones built so far stands for a base missing from the catalog.
        depends_on = None if dep is None else (f"b{dep:02d}" if dep < i else "missing")
        out.append(BackupInfo(f"b{i:02d}", kind, status, started, expires, keep, db, depends_on))
    return out


NO_GFS = RetentionPolicy(daily=0, weekly=0, monthly=0, yearly=0)
Scenario = tuple[list[BackupInfo], RetentionPolicy, datetime]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A history, a policy (often none at all, so only the safety rules stand) and a now
    that often falls exactly on a start or an expiry, where off-by-one errors live."""
    backups = draw(histories())
    policy = draw(st.just(NO_GFS) | policies)
    expiries = sorted({b.expires_at for b in backups if b.expires_at is not None})
    started = sorted({b.started_at for b in backups})
    now = draw(
        st.one_of(
            nows,
            st.sampled_from(expiries or [BASE]),
            st.sampled_from(expiries or [BASE]).map(lambda t: t - timedelta(seconds=1)),
            st.sampled_from(started or [BASE]),
        )
    )
    return backups, policy, now


@SETTINGS
@given(scenarios())
def test_safety_rules_hold_for_any_history(scenario: Scenario) -> None:
    backups, policy, now = scenario
    plan = plan_retention(backups, policy, now)
    check_invariants(backups, plan, now)
    json.dumps(plan.as_json())


@SETTINGS
@given(st.data(), scenarios())
def test_a_backup_is_not_deleted_at_the_instant_it_expires(data: st.DataObject, scenario: Scenario) -> None:
    backups, policy, _ = scenario
    # EXPIRED rows are deletable whatever their date; DELETED ones are not planned.
    live = (Status.COMPLETED, Status.FAILED, Status.IN_PROGRESS, Status.PENDING)
    dated = [b for b in backups if b.expires_at is not None and b.status in live]
    assume(dated)
    chosen = data.draw(st.sampled_from(dated))
    assert chosen.expires_at is not None
    at_expiry = plan_retention(backups, policy, chosen.expires_at).decision(chosen.id)
    assert at_expiry.action is Action.KEEP, at_expiry


@SETTINGS
@given(st.data(), scenarios())
def test_plan_is_deterministic_and_independent_of_input_order(data: st.DataObject, scenario: Scenario) -> None:
    backups, policy, now = scenario
    shuffled = data.draw(st.permutations(backups))
    plan = plan_retention(backups, policy, now)
    assert plan_retention(backups, policy, now) == plan
    assert plan_retention(shuffled, policy, now) == plan


@SETTINGS
@given(scenarios(), starts, st.booleans())
def test_adding_a_failed_backup_changes_no_other_decision(scenario: Scenario, started: datetime, expired: bool) -> None:
    backups, policy, now = scenario
    failed = BackupInfo(
        id="zz-failed",
        type="SCHEDULED",
        status=Status.FAILED,
        started_at=started,
        expires_at=now - timedelta(seconds=1) if expired else now + timedelta(days=1),
        depends_on=backups[0].id if backups else None,
    )
    before = plan_retention(backups, policy, now)
    after = plan_retention([*backups, failed], policy, now)
    assert [d for d in after.decisions if d.id != failed.id] == list(before.decisions)


@SETTINGS
@given(scenarios(), st.sampled_from(["daily", "weekly", "monthly", "yearly"]))
def test_a_larger_count_never_deletes_more(scenario: Scenario, rule: str) -> None:
    backups, policy, now = scenario
    smaller = plan_retention(backups, policy, now)
    larger = plan_retention(backups, replace(policy, **{rule: getattr(policy, rule) + 1}), now)
    assert set(larger.delete_ids) <= set(smaller.delete_ids)


@SETTINGS
@given(scenarios())
def test_each_rule_keeps_at_most_n_distinct_buckets_per_database(scenario: Scenario) -> None:
    backups, policy, now = scenario
    plan = plan_retention(backups, policy, now)
    by_id = {b.id: b for b in backups}
    for rule in policy.rules():
        labels: dict[str | None, list[str]] = {}
        for d in plan.decisions:
            for reason in d.reasons:
                if reason.startswith(f"{rule.name} "):
                    b = by_id[d.id]
                    assert b.status is Status.COMPLETED and b.started_at <= now
                    assert d.action is Action.KEEP
                    labels.setdefault(b.database_name, []).append(reason)
        for found in labels.values():
            assert len(found) == len(set(found)) <= rule.count
