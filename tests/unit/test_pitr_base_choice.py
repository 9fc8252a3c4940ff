"""Choosing the base backup of a point-in-time restore (pure data), and wal-push's time budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pgkeep.catalog.models import BackupStatus, DatabaseBackup
from pgkeep.cli.wal import PUSH_CONNECT_TIMEOUT_S, PUSH_MAX_ATTEMPTS, PUSH_READ_TIMEOUT_S, push_settings
from pgkeep.config import load_settings
from pgkeep.services.pitr import RecoveryTarget, choose_base, next_xid_of, target_hint, xid_assigned_after

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
EPOCH = 1 << 32


def backup(backup_id: str, hours: int, next_xid: Any = None) -> DatabaseBackup:
    """A COMPLETED physical backup that ended ``hours`` after T0 at LSN 0/<hours>000000."""
    physical: dict[str, Any] = {"end_lsn": f"0/{hours + 1:X}000000"}
    if next_xid is not None:
        physical["nextXid"] = next_xid
    return DatabaseBackup(
        id=backup_id,
        status=BackupStatus.COMPLETED,
        kind="physical",
        started_at=T0 + timedelta(hours=hours, minutes=-5),
        backup_end_at=T0 + timedelta(hours=hours),
        end_lsn=physical["end_lsn"],
        metadata_={"physical": physical},
    )


def chosen(rows: list[DatabaseBackup], **target: Any) -> tuple[str, str | None]:
    row, warning = choose_base(rows, RecoveryTarget.parse(**target))
    return row.id, warning


def test_xid_comparison_full_and_32_bit() -> None:
    # Full ids (with epoch) compare exactly.
    assert xid_assigned_after(3 * EPOCH + 100, 3 * EPOCH + 100)
    assert not xid_assigned_after(3 * EPOCH + 99, 3 * EPOCH + 100)
    assert not xid_assigned_after(2 * EPOCH + 500, 3 * EPOCH + 100)
    # A bare 32-bit id is placed in the epoch nearest the backup's next id.
    assert xid_assigned_after(100, 3 * EPOCH + 100) and xid_assigned_after(5000, 3 * EPOCH + 100)
    assert not xid_assigned_after(99, 3 * EPOCH + 100)
    # Across a wrap: a backup just after it; a target from just before it came earlier...
    assert not xid_assigned_after(EPOCH - 1000, 3 * EPOCH + 10)
    # ...and for a backup just before a wrap, a target just after it came later.
    assert xid_assigned_after(10, 3 * EPOCH - 1000)
    # Epoch 0: a small full id and a 32-bit id are the same thing.
    assert xid_assigned_after(1000, 900) and not xid_assigned_after(800, 900)


def test_next_xid_is_read_from_the_metadata_and_may_be_missing() -> None:
    assert next_xid_of(backup("a", 1, 1234)) == 1234
    assert next_xid_of(backup("a", 1, "1234")) == 1234
    assert next_xid_of(backup("a", 1)) is None
    assert next_xid_of(backup("a", 1, "garbage")) is None
    assert next_xid_of(DatabaseBackup(id="x", metadata_=None)) is None


def test_an_xid_target_gets_the_newest_backup_that_ended_before_the_transaction_started() -> None:
    rows = [backup("old", 1, 1000), backup("mid", 2, 2000), backup("new", 3, 3000)]
    assert chosen(rows, to_xid="2500") == ("mid", None)
    assert chosen(rows, to_xid="2000") == ("mid", None)  # the backup's next id: assigned after it ended
    assert chosen(rows, to_xid="9999") == ("new", None)
    assert chosen(list(reversed(rows)), to_xid="1500") == ("old", None)  # order of the input does not matter
    # 64-bit form of the same ids (epoch 0) and of a later epoch.
    later = [backup("e1", 1, EPOCH + 10), backup("e2", 2, EPOCH + 5000)]
    assert chosen(later, to_xid=str(EPOCH + 4000)) == ("e1", None)
    assert chosen(later, to_xid="4000") == ("e1", None)  # its 32-bit form
    assert chosen(later, to_xid="6000") == ("e2", None)


def test_an_xid_target_before_every_backup_or_unknown_falls_back_to_the_oldest_with_a_warning() -> None:
    rows = [backup("old", 1, 1000), backup("new", 2, 2000)]
    row, warning = chosen(rows, to_xid="900")
    assert row == "old" and warning is not None and "900" in warning and "old" in warning
    # Rows from before the next id was recorded: nothing is known, the oldest is safest.
    unknown = [backup("old", 1), backup("new", 2)]
    row, warning = chosen(unknown, to_xid="5000")
    assert row == "old" and warning is not None
    # A newer row without the value does not hide an older one known to be safe.
    assert chosen([backup("old", 1, 1000), backup("new", 2)], to_xid="5000") == ("old", None)


def test_a_restore_point_gets_the_oldest_backup() -> None:
    rows = [backup("mid", 2, 2000), backup("old", 1, 1000), backup("new", 3, 3000)]
    assert chosen(rows, to_name="before_upgrade") == ("old", None)


def test_time_lsn_and_latest_get_the_newest_of_the_usable() -> None:
    rows = [backup("old", 1), backup("new", 2)]
    assert chosen(rows, latest=True) == ("new", None)
    assert chosen(rows, to_time=(T0 + timedelta(hours=5)).isoformat()) == ("new", None)
    assert chosen(rows, to_lsn="0/F000000") == ("new", None)


def test_the_failure_hint_points_to_an_older_backup_for_xid_and_name_targets() -> None:
    for target in (RecoveryTarget.parse(to_xid="42"), RecoveryTarget.parse(to_name="p")):
        assert "--backup an older one" in target_hint(target, "b1")
    assert target_hint(RecoveryTarget.parse(latest=True), "b1") == ""


def test_wal_push_caps_the_s3_retry_budget_but_keeps_lower_settings() -> None:
    generous = push_settings(load_settings(s3_max_attempts=10, s3_connect_timeout=30, s3_read_timeout=300))
    assert generous.s3_max_attempts == PUSH_MAX_ATTEMPTS
    assert generous.s3_connect_timeout == PUSH_CONNECT_TIMEOUT_S
    assert generous.s3_read_timeout == PUSH_READ_TIMEOUT_S
    tight = push_settings(load_settings(s3_max_attempts=1, s3_connect_timeout=1, s3_read_timeout=2))
    assert (tight.s3_max_attempts, tight.s3_connect_timeout, tight.s3_read_timeout) == (1, 1, 2)
