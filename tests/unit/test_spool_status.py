"""archive status --spool: what a pusher's spool says (a spool and pg_wal made by hand; the real
pusher is in tests/pitr/test_wal_async.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pgkeep.wal.spool import Spool
from pgkeep.wal.spool_status import LOG_LINE_CHARS, spool_status

SEG = [f"0000000100000000000000{n:02X}" for n in range(1, 6)]


def spool_serving(tmp_path: Path, ready: list[str]) -> tuple[Spool, Path]:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    pg_wal = tmp_path / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    for file in ready:
        (pg_wal / "archive_status" / f"{file}.ready").touch()
    (pg_wal / "archive_status" / f"{SEG[0]}.done").touch()
    spool.serve(pg_wal)
    return spool, pg_wal


def test_a_spool_no_pusher_has_used_yet(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    status = spool_status(spool)
    assert (status.pusher_running, status.pg_wal, status.ready, status.pushed_ahead) == (False, None, None, 0)
    assert status.errors == {} and status.last_log_line is None
    assert status.as_json()["readyCount"] is None
    assert not (spool.root / "pusher.lock").exists()  # read only: no lock file made for the pusher


def test_the_backlog_its_age_and_what_the_pusher_left(tmp_path: Path) -> None:
    spool, pg_wal = spool_serving(tmp_path, [SEG[3], SEG[2]])
    marked = (pg_wal / "archive_status" / f"{SEG[2]}.ready").stat().st_mtime
    spool.record_ok(SEG[3], "ab" * 32, "key")
    spool.record_error(SEG[2], "storage unreachable")
    spool.log_path.write_text(f"{SEG[1]}: stored\n{SEG[2]}: not stored: storage unreachable\n\n", encoding="utf-8")
    status = spool_status(spool, now=marked + 90)
    assert status.pg_wal == pg_wal and status.ready == [SEG[2], SEG[3]]  # oldest first
    assert status.oldest_ready_age_s == pytest.approx(90)
    assert status.pushed_ahead == 1 and status.errors == {SEG[2]: "storage unreachable"}
    assert status.last_log_line == f"{SEG[2]}: not stored: storage unreachable"
    report = status.as_json()
    assert (report["readyCount"], report["oldestReady"], report["oldestReadyAgeSeconds"]) == (2, SEG[2], 90.0)
    assert report["errors"] == [{"file": SEG[2], "error": "storage unreachable"}]


def test_caught_up_and_an_unreadable_pg_wal(tmp_path: Path) -> None:
    spool, pg_wal = spool_serving(tmp_path, [])
    status = spool_status(spool)
    assert status.ready == [] and status.oldest_ready_age_s is None
    shutil.rmtree(pg_wal / "archive_status")  # as if unreadable to this user
    assert spool_status(spool).ready is None


def test_only_the_logs_last_line_is_read_and_shortened(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    spool.log_path.write_text("x\n" * 100_000 + "y" * 1000 + "\n", encoding="utf-8")
    assert spool_status(spool).last_log_line == "y" * LOG_LINE_CHARS


def test_a_running_pusher_is_seen_through_its_lock(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    held = spool.take_lock()
    assert held is not None
    try:
        assert spool_status(spool).pusher_running
    finally:
        os.close(held)
    assert not spool_status(spool).pusher_running
    probe_left = spool.take_lock()  # the probe left nothing held
    assert probe_left is not None
    os.close(probe_left)


def test_a_missing_spool_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        spool_status(Spool(tmp_path / "nowhere"))
