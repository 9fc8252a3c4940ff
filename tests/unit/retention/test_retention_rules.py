"""Hand-asserted rules of the retention planner: safety, bucket semantics, inputs, JSON."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import pgkeep.retention
from pgkeep.catalog.models import BackupStatus, BackupType
from pgkeep.errors import ConfigError
from pgkeep.retention import (
    Action,
    BackupInfo,
    RetentionPlan,
    RetentionPolicy,
    Status,
    plan_retention,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NOTHING = RetentionPolicy(daily=0, weekly=0, monthly=0, yearly=0)


def backup(
    backup_id: str,
    days_ago: float,
    *,
    status: Status = Status.COMPLETED,
    expires_in_days: float | None = -1,
    **extra: object,
) -> BackupInfo:
    """A backup started ``days_ago`` before NOW, expiring ``expires_in_days`` after NOW."""
    expires = None if expires_in_days is None else NOW + timedelta(days=expires_in_days)
    return BackupInfo(
        id=backup_id,
        type="SCHEDULED",
        status=status,
        started_at=NOW - timedelta(days=days_ago),
        expires_at=expires,
        **extra,  # type: ignore[arg-type]
    )


def action(plan: RetentionPlan, backup_id: str) -> Action:
    return plan.decision(backup_id).action


# --- safety rules ---------------------------------------------------------------------------


def test_newest_completed_is_kept_when_expired_and_no_rule_applies() -> None:
    plan = plan_retention([backup("old", 9), backup("new", 8)], NOTHING, NOW)
    assert plan.decision("new").reasons == ("newest completed",)
    assert action(plan, "old") is Action.DELETE


def test_a_newer_failed_backup_does_not_take_the_newest_completed_protection() -> None:
    history = [backup("good", 8), backup("bad", 1, status=Status.FAILED)]
    plan = plan_retention(history, NOTHING, NOW)
    assert plan.decision("good").reasons == ("newest completed",)
    assert plan.decision("bad").reasons == ("failed backup expired 2026-11-25",)


def test_newest_completed_is_per_database() -> None:
    history = [
        backup("app-new", 1, database_name="app"),
        backup("billing-last", 30, database_name="billing"),
        backup("billing-older", 31, database_name="billing"),
    ]
    plan = plan_retention(history, NOTHING, NOW)
    assert plan.keep_ids == ("app-new", "billing-last")


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.FAILED, Status.EXPIRED])
def test_keep_flag_wins_over_expiry_for_every_status(status: Status) -> None:
    history = [backup("newest", 1), backup("pinned", 400, status=status, keep=True)]
    plan = plan_retention(history, NOTHING, NOW)
    assert plan.decision("pinned").reasons == ("keep flag",)


@pytest.mark.parametrize(("status", "reason"), [(Status.IN_PROGRESS, "in progress"), (Status.PENDING, "pending")])
def test_running_backups_are_never_deleted_even_past_expiry(status: Status, reason: str) -> None:
    plan = plan_retention([backup("run", 30, status=status)], NOTHING, NOW)
    assert plan.decision("run").reasons == (reason,)


def test_a_failed_backup_fills_no_bucket_and_triggers_no_deletion() -> None:
    # The completed backup is the only one of its day; a later failure on the same day
    # must not become the day's copy.
    good = backup("good", 3.5)
    failed_same_day = backup("failed", 3.4, status=Status.FAILED)
    newest = backup("newest", 0.1)
    policy = RetentionPolicy(daily=2, weekly=0, monthly=0)
    without = plan_retention([good, newest], policy, NOW)
    with_failure = plan_retention([good, failed_same_day, newest], policy, NOW)
    assert with_failure.decision("good") == without.decision("good")
    assert with_failure.decision("good").reasons == ("daily 2026-11-23",)
    assert with_failure.decision("failed").reasons == ("failed backup expired 2026-11-25",)


def test_nothing_is_deleted_before_it_expires() -> None:
    history = [backup(f"b{i}", i, expires_in_days=1) for i in range(20)]
    plan = plan_retention(history, NOTHING, NOW)
    assert plan.delete_ids == ()
    assert plan.decision("b5").reasons == ("not expired yet (expires 2026-11-27)",)


def test_expiry_is_strictly_before_now() -> None:
    history = [backup("newest", 0), backup("at-now", 1, expires_in_days=0), backup("past", 2)]
    plan = plan_retention(history, NOTHING, NOW)
    assert action(plan, "at-now") is Action.KEEP
    assert action(plan, "past") is Action.DELETE


def test_no_expiry_date_means_never_expired() -> None:
    plan = plan_retention([backup("newest", 0), backup("forever", 900, expires_in_days=None)], NOTHING, NOW)
    assert plan.decision("forever").reasons == ("no expiry date",)


def test_expired_status_is_retried_whatever_its_expiry_date() -> None:
    history = [backup("newest", 0), backup("stuck", 1, status=Status.EXPIRED, expires_in_days=10)]
    plan = plan_retention(history, NOTHING, NOW)
    assert plan.decision("stuck").reasons == ("EXPIRED: files still to remove",)
    assert plan.delete_ids == ("stuck",)


def test_deleted_rows_get_no_decision() -> None:
    plan = plan_retention([backup("newest", 0), backup("gone", 3, status=Status.DELETED)], NOTHING, NOW)
    assert [d.id for d in plan.decisions] == ["newest"]
    with pytest.raises(KeyError):
        plan.decision("gone")


def test_dependencies_are_kept_transitively_and_dependents_come_first() -> None:
    history = [
        backup("base", 5),
        backup("inc1", 4, depends_on="base"),
        backup("inc2", 3, depends_on="inc1", keep=True),
        backup("newest", 0),
    ]
    plan = plan_retention(history, NOTHING, NOW)
    assert plan.decision("inc1").reasons == ("dependency of inc2",)
    assert plan.decision("base").reasons == ("dependency of inc1",)
    assert plan.delete_ids == ()


def test_an_expired_chain_is_deleted_dependents_before_bases() -> None:
    history = [backup("base", 5), backup("inc", 4, depends_on="base"), backup("newest", 0)]
    plan = plan_retention(history, NOTHING, NOW)
    assert plan.delete_ids == ("inc", "base")


# --- GFS bucket semantics -------------------------------------------------------------------


def test_an_empty_bucket_does_not_use_up_one_of_n() -> None:
    # Backups 0, 1 and 10 days ago; daily=3 keeps all three: days 2-9 have no backup.
    history = [backup("d0", 0.1), backup("d1", 1), backup("d10", 10), backup("d11", 11)]
    plan = plan_retention(history, RetentionPolicy(daily=3, weekly=0, monthly=0), NOW)
    assert plan.keep_ids == ("d0", "d1", "d10")
    assert plan.decision("d10").reasons == ("daily 2026-11-16",)


def test_only_the_newest_backup_of_a_bucket_is_kept() -> None:
    history = [backup("morning", 2.2), backup("evening", 2.1), backup("newest", 0)]
    plan = plan_retention(history, RetentionPolicy(daily=2, weekly=0, monthly=0), NOW)
    assert plan.decision("evening").reasons == ("daily 2026-11-24",)
    assert action(plan, "morning") is Action.DELETE


def test_buckets_are_computed_in_the_policy_zone() -> None:
    # 2026-12-31 23:30 UTC is 2027-01-01 08:30 in Tokyo.
    started = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    info = BackupInfo("nye", "SCHEDULED", Status.COMPLETED, started, None)
    now = datetime(2027, 1, 2, tzinfo=UTC)
    tokyo = plan_retention([info], RetentionPolicy(0, 0, 0, 1, tz="Asia/Tokyo"), now)
    utc = plan_retention([info], RetentionPolicy(0, 0, 0, 1, tz="UTC"), now)
    assert "yearly 2027" in tokyo.decision("nye").reasons
    assert "yearly 2026" in utc.decision("nye").reasons


def test_backups_started_after_now_fill_no_bucket() -> None:
    history = [backup("today", 0.2), backup("skewed", -0.01, expires_in_days=7)]
    plan = plan_retention(history, RetentionPolicy(daily=1, weekly=0, monthly=0), NOW)
    assert plan.decision("today").reasons == ("daily 2026-11-26",)
    assert plan.decision("skewed").reasons == ("newest completed", "not expired yet (expires 2026-12-03)")


# --- inputs ---------------------------------------------------------------------------------


def test_catalog_enums_map_onto_the_retention_ones() -> None:
    assert {s.value for s in BackupStatus} == {s.value for s in Status}
    info = BackupInfo("x", BackupType.PRE_MIGRATION, BackupStatus.FAILED, NOW, None)  # type: ignore[arg-type]
    assert info.status is Status.FAILED
    assert info.type == "PRE_MIGRATION"
    assert BackupInfo("y", "MANUAL", "COMPLETED", NOW, None).status is Status.COMPLETED  # type: ignore[arg-type]


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 11, 26, 12, 0)
    with pytest.raises(ValueError, match="naive"):
        BackupInfo("x", "MANUAL", Status.COMPLETED, naive, None)
    with pytest.raises(ValueError, match="naive"):
        BackupInfo("x", "MANUAL", Status.COMPLETED, NOW, naive)
    with pytest.raises(ValueError, match="naive"):
        plan_retention([], RetentionPolicy(), naive)


def test_duplicate_ids_and_self_dependencies_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        plan_retention([backup("a", 1), backup("a", 2)], NOTHING, NOW)
    with pytest.raises(ValueError, match="itself"):
        backup("a", 1, depends_on="a")


@pytest.mark.parametrize("kwargs", [{"daily": -1}, {"weekly": 1.5}, {"monthly": True}, {"yearly": "2"}])
def test_invalid_counts_are_a_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="whole number"):
        RetentionPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../etc/passwd"])
def test_unknown_zone_is_a_config_error_with_a_hint(tz: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetentionPolicy(tz=tz)
    assert info.value.hint and "IANA" in info.value.hint


def test_defaults_are_the_issues() -> None:
    assert RetentionPolicy() == RetentionPolicy(daily=7, weekly=4, monthly=12, yearly=0, tz="UTC")


# --- output ---------------------------------------------------------------------------------


def test_plan_json_shape() -> None:
    plan = plan_retention([backup("old", 9), backup("new", 8)], NOTHING, NOW)
    document = json.loads(json.dumps(plan.as_json()))
    assert document == [
        {"id": "new", "action": "keep", "reasons": ["newest completed"]},
        {"id": "old", "action": "delete", "reasons": ["expired 2026-11-25 and no rule keeps it"]},
    ]


def test_empty_history_gives_an_empty_plan() -> None:
    plan = plan_retention([], RetentionPolicy(), NOW)
    assert plan == RetentionPlan(decisions=(), warnings=())
    assert plan.as_json() == []


def test_retention_imports_no_outer_layer() -> None:
    package = Path(pgkeep.retention.__file__).parent
    allowed = ("pgkeep.retention", "pgkeep.errors")
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pgkeep"):
                assert node.module.startswith(allowed), f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("pgkeep") or alias.name.startswith(allowed)


def test_a_physical_backup_does_not_stand_in_for_the_only_logical_one() -> None:
    """The only logical backup was deleted once a newer physical one existed: nothing was left
    for single-table or API restores, which are logical."""
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    expired = now - timedelta(days=1)
    logical = BackupInfo("l1", "MANUAL", Status.COMPLETED, now - timedelta(days=30), expired)
    physical = BackupInfo("p1", "FULL", Status.COMPLETED, now - timedelta(days=2), expired, kind="physical")
    plan = plan_retention([logical, physical], NOTHING, now)
    assert set(plan.keep_ids) == {"l1", "p1"} and plan.delete_ids == ()
    assert plan.decision("l1").reasons == ("newest completed",)
