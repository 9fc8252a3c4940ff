"""The recovery window and WAL cleanup plans (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pgkeep.retention import BackupInfo, RetentionPolicy, plan_retention
from pgkeep.retention.wal import PhysicalBackup, plan_wal_cleanup, recovery_window_pins

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def physical(backup_id: str, days_ago: float, segment: int) -> PhysicalBackup:
    return PhysicalBackup(backup_id, NOW - timedelta(days=days_ago), f"00000001000000000000{segment:04X}")


def test_the_window_pins_the_newest_backup_consistent_at_its_start() -> None:
    backups = [physical("a", 10, 2), physical("b", 6, 10), physical("c", 2, 20)]
    pins = recovery_window_pins(backups, timedelta(days=7), NOW)
    assert list(pins) == ["a"] and pins["a"].startswith("recovery window")
    assert list(recovery_window_pins(backups, timedelta(days=5), NOW)) == ["b"]
    # No backup is as old as the window: the oldest one is the best there is.
    assert list(recovery_window_pins(backups, timedelta(days=30), NOW)) == ["a"]
    assert recovery_window_pins(backups, timedelta(0), NOW) == {}
    assert recovery_window_pins([], timedelta(days=7), NOW) == {}


def test_wal_older_than_the_oldest_kept_backup_goes_oldest_first() -> None:
    files = [
        "000000010000000000000003",
        "000000010000000000000001",
        "000000010000000000000002.00000028.backup",
        "000000010000000000000004",
        "00000002.history",
        "000000010000000000000002",
        "000000010000000000000002.partial",
    ]
    assert plan_wal_cleanup(files, ["000000010000000000000004", "000000010000000000000003"]) == [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000002.00000028.backup",
        "000000010000000000000002.partial",
    ]
    assert plan_wal_cleanup(files, []) == []  # no physical backup kept: nothing can be judged useless


def test_pins_keep_an_expired_backup_and_its_incremental_chain() -> None:
    def info(backup_id: str, days_ago: int, depends_on: str | None = None) -> BackupInfo:
        started = NOW - timedelta(days=days_ago)
        return BackupInfo(backup_id, "FULL", "COMPLETED", started, started + timedelta(days=1), depends_on=depends_on)

    backups = [info("full", 9), info("inc", 8, depends_on="full"), info("newest", 1)]
    policy = RetentionPolicy(daily=0, weekly=0, monthly=0, yearly=0)
    plain = plan_retention(backups, policy, NOW)
    assert set(plain.delete_ids) == {"full", "inc"}
    pinned = plan_retention(backups, policy, NOW, pinned={"inc": "recovery window: test"})
    assert pinned.delete_ids == ()
    assert pinned.decision("inc").reasons == ("recovery window: test",)
    assert pinned.decision("full").reasons == ("dependency of inc",)
