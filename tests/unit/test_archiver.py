"""What pg_stat_archiver's numbers mean for point-in-time recovery (pure logic, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgkeep.pgtools.archiver import ArchiverStatus, archiver_problems

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def status(**changes: Any) -> ArchiverStatus:
    base: dict[str, Any] = {
        "archive_mode": "on",
        "command_set": True,
        "in_recovery": False,
        "archived_count": 10,
        "last_archived_wal": "00000001000000000000000A",
        "last_archived_time": T0,
        "failed_count": 0,
        "last_failed_wal": None,
        "last_failed_time": None,
        "stats_reset": T0 - timedelta(days=1),
    }
    return ArchiverStatus(**(base | changes))


def failed(at: datetime, **changes: Any) -> ArchiverStatus:
    return status(failed_count=3, last_failed_wal="00000001000000000000000B", last_failed_time=at, **changes)


def test_a_healthy_archiver_has_no_problem() -> None:
    s = status()
    assert (s.archiving, s.failing, archiver_problems(s)) == (True, False, [])


def test_a_failure_newer_than_the_last_success_is_failing_now() -> None:
    s = failed(T0 + timedelta(seconds=5))
    assert s.failing
    [problem] = archiver_problems(s)
    assert problem.startswith("archiving is failing: 00000001000000000000000B failed at 2026-11-27T12:00:05+00:00")
    assert "the last success was 00000001000000000000000A at 2026-11-27T12:00:00+00:00" in problem


def test_a_failure_followed_by_a_success_is_history() -> None:
    s = failed(T0 - timedelta(seconds=5))
    assert not s.failing and archiver_problems(s) == []


def test_failures_and_never_a_success() -> None:
    s = failed(T0, archived_count=0, last_archived_wal=None, last_archived_time=None)
    assert s.failing
    assert "no success since the statistics were reset" in archiver_problems(s)[0]


def test_archive_mode_off_is_the_only_problem_named() -> None:
    s = failed(T0 + timedelta(seconds=5), archive_mode="off", command_set=False)
    assert not s.archiving
    assert archiver_problems(s) == [
        "archive_mode is off: this server archives no WAL (point-in-time recovery needs it on)"
    ]


def test_an_empty_archive_command_keeps_wal_in_pg_wal() -> None:
    assert archiver_problems(status(command_set=False)) == [
        "archive_command is empty: WAL accumulates in pg_wal and nothing is archived"
    ]


@pytest.mark.parametrize(("mode", "archiving"), [("on", False), ("always", True)])
def test_a_standby_archives_only_with_always(mode: str, archiving: bool) -> None:
    s = failed(T0 + timedelta(seconds=5), archive_mode=mode, in_recovery=True)
    assert s.archiving is archiving
    assert bool(archiver_problems(s)) is archiving  # on a standby with "on", its primary archives


def test_json_names_the_state_and_rounds_the_age() -> None:
    s = failed(T0 + timedelta(seconds=5))
    s.ready, s.oldest_ready, s.oldest_ready_age_s = 2, "00000001000000000000000B", 12.34567
    out = s.as_json()
    assert out["ok"] is False and out["failing"] is True
    assert (out["readyCount"], out["oldestReady"]) == (2, "00000001000000000000000B")
    assert out["oldestReadyAgeSeconds"] == 12.346
    assert out["lastFailedAt"] == "2026-11-27T12:00:05+00:00"


def test_wal_stuck_without_a_counted_failure_is_failing() -> None:
    """An archive_command that is not found exits 127: PostgreSQL restarts the archiver and counts nothing."""
    stuck = status(
        archived_count=0,
        last_archived_wal=None,
        last_archived_time=None,
        last_archived_age_s=None,
        ready=7,
        oldest_ready="000000010000000000000001",
        oldest_ready_age_s=704.0,
    )
    assert stuck.stalled and stuck.failing and not stuck.failure_counted
    [problem] = archiver_problems(stuck)
    assert problem.startswith(
        "WAL is not being archived: 7 file(s) wait in pg_wal, the oldest (000000010000000000000001) for 704 s"
    )
    # Catching up on a backlog is not stuck: something was archived within the window.
    busy = status(ready=500, oldest_ready_age_s=900.0, last_archived_age_s=2.0)
    assert not busy.failing and archiver_problems(busy) == []
    # A file that waits briefly, or a backlog nobody may read, is no evidence.
    assert not status(ready=1, oldest_ready_age_s=30.0, last_archived_age_s=600.0).failing
    assert not status(ready=None, last_archived_age_s=9999.0).failing
