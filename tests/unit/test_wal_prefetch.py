"""Prefetching for restore_command: which segments come next, the fetcher loop, the quick path.

Fetches are fakes here; a real recovery through the fetcher is in tests/pitr/test_wal_async.py
(and every point-in-time restore in tests/pitr runs with it).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgkeep.cli import quick
from pgkeep.cli.quick import QuickArgs, parse, quick_fetch
from pgkeep.config import Compression
from pgkeep.testing import MemoryStorage
from pgkeep.wal import prefetch
from pgkeep.wal.naming import object_name
from pgkeep.wal.spool import FETCHER, Spool, settings_key

TL1 = "00000001"
SEGMENTS = [f"{TL1}00000000000000{n:02X}" for n in range(1, 7)]


def archive_with(names: list[str]) -> MemoryStorage:
    storage = MemoryStorage()
    for name in names:
        storage.objects[object_name(name, "a" * 64, Compression.ZSTD, False)] = (b"x", datetime.now(UTC))
    return storage


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    queue = Spool(tmp_path / "spool", FETCHER)
    queue.prepare()
    return queue


def test_archived_from_follows_the_archive_across_a_4gib_unit_and_stops_at_nothing_invented() -> None:
    storage = archive_with(
        [
            f"{TL1}00000000000000FE",
            f"{TL1}00000000000000FF",
            f"{TL1}0000000100000000",
            f"{TL1}0000000100000002",  # ...01 is missing: a hole
            "00000002000000000000FF00",  # another timeline
            f"{TL1}00000000000000FD",  # before the wanted one
            "00000002.history",
            f"{TL1}00000000000000FF.partial",
        ]
    )
    got = prefetch.archived_from(storage, f"{TL1}00000000000000FE", 8)
    assert got == [
        f"{TL1}00000000000000FE",
        f"{TL1}00000000000000FF",
        f"{TL1}0000000100000000",
        f"{TL1}0000000100000002",
    ]
    assert prefetch.archived_from(storage, f"{TL1}00000000000000FE", 1) == got[:2]
    assert prefetch.archived_from(storage, f"{TL1}0000000100000001", 4) == [f"{TL1}0000000100000002"]


class Recovery:
    """PostgreSQL's side: asks for each segment in turn through the quick path's protocol
    (want, wait for a status, take the content), then for one the archive lacks."""

    def __init__(self, spool: Spool, files: list[str]) -> None:
        self.spool = spool
        self.files = files
        self.handed: list[str] = []
        self.answers: dict[str, str] = {}
        self.error: BaseException | None = None

    def __call__(self) -> None:
        try:
            for file in self.files:
                self.spool.want(file)
                status = None
                for _ in range(2000):
                    status = self.spool.status(file)
                    if status is not None:
                        break
                    threading.Event().wait(0.005)
                assert status is not None, f"no status for {file}"
                self.answers[file] = "ok" if status.ok else status.error
                if status.ok:
                    self.spool.content(file).unlink()
                    self.handed.append(file)
        except BaseException as exc:
            self.error = exc


def fake_fetch(spool: Spool, fetched: list[str]):  # type: ignore[no-untyped-def]
    def fetch(file: str) -> str:
        data = file.encode() * 10
        spool.content(file).write_bytes(data)
        fetched.append(file)
        return hashlib.sha256(data).hexdigest()

    return fetch


def test_fetcher_works_ahead_of_recovery_and_reports_the_end_of_the_archive(spool: Spool) -> None:
    storage = archive_with(SEGMENTS[:5])
    fetched: list[str] = []
    recovery = Recovery(spool, [*SEGMENTS[:5], SEGMENTS[5]])  # the last is not archived
    thread = threading.Thread(target=recovery)
    thread.start()
    result = prefetch.run(
        spool,
        lambda want, count: prefetch.archived_from(storage, want, count),
        fake_fetch(spool, fetched),
        key="k",
        jobs=2,
        lookahead=3,
        idle_exit=0.3,
        poll=0.005,
    )
    thread.join()
    assert recovery.error is None, recovery.error
    assert recovery.handed == SEGMENTS[:5]
    assert recovery.answers[SEGMENTS[5]] == prefetch.MISSING
    assert sorted(fetched) == SEGMENTS[:5]  # each once
    assert sorted(result.fetched) == SEGMENTS[:5]
    # What recovery is past was cleared as it went; the last answer stays until the next request.
    assert spool.recorded() <= {SEGMENTS[4], SEGMENTS[5]}


def test_fetcher_stops_when_its_spool_is_removed(spool: Spool, tmp_path: Path) -> None:
    spool.want(SEGMENTS[0])
    storage = archive_with(SEGMENTS[:1])

    def fetch_then_remove(file: str) -> str:
        spool.root.rename(tmp_path / "gone")  # recovery ended: pgkeep moves the spool away
        return "0" * 64

    result = prefetch.run(
        spool,
        lambda want, count: prefetch.archived_from(storage, want, count),
        fetch_then_remove,
        key="k",
        idle_exit=30,
        poll=0.005,
    )
    assert result.fetched == []  # its status could not be written: nothing claimed


# --- the quick path ------------------------------------------------------------------------------


def test_parse_fetch_arguments() -> None:
    assert parse(["--config=/c", "--spool", "/s", "%f-name", "pg_wal/RECOVERYXLOG"], fetch=True) == QuickArgs(
        Path("pg_wal/RECOVERYXLOG"), Path("/s"), Path("/c"), quick.FETCH_WAIT_S, 2, "%f-name"
    )
    assert parse(["--spool", "/s", "only-one"], fetch=True) is None
    assert parse(["--spool", "/s", "--timeout", "3", "a", "b"], fetch=True) is None  # wal-fetch has no --timeout


def test_quick_fetch_hands_over_a_checked_copy_once(spool: Spool, tmp_path: Path) -> None:
    file = SEGMENTS[0]
    data = b"wal bytes" * 100
    spool.content(file).write_bytes(data)
    spool.record_ok(file, hashlib.sha256(data).hexdigest(), settings_key(None, {}))
    dest = tmp_path / "RECOVERYXLOG"
    args = ["--spool", str(spool.root), file, str(dest)]

    assert quick_fetch(args, {"PGKEEP_STORAGE_URL": "file:///elsewhere"}) is None  # other settings
    assert not dest.exists()
    assert quick_fetch(args, {}) == 0
    assert dest.read_bytes() == data and not spool.content(file).exists()
    wanted = spool.wanted()
    assert wanted is not None and wanted[0] == file


def test_quick_fetch_refuses_a_copy_that_changed_and_leaves_history_files_alone(
    spool: Spool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = SEGMENTS[0]
    spool.content(file).write_bytes(b"changed after it was checked")
    spool.record_ok(file, "0" * 64, settings_key(None, {}))
    dest = tmp_path / "RECOVERYXLOG"
    assert quick_fetch(["--spool", str(spool.root), file, str(dest)], {}) is None
    assert not dest.exists()

    assert quick_fetch(["--spool", str(spool.root), "00000002.history", str(dest)], {}) is None
    assert spool.wanted() is not None and spool.wanted()[0] == file  # type: ignore[index]


def test_quick_fetch_asks_again_for_a_copy_already_handed_over(
    spool: Spool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL asks for the last segment again as recovery ends: the status of the copy
    handed over is dropped and the fetcher is asked (here: one that never answers)."""
    file = SEGMENTS[0]
    spool.record_ok(file, "0" * 64, settings_key(None, {}))  # handed over: no content left
    started: list[str] = []

    def fake_start(queue: Spool, parsed: QuickArgs) -> subprocess.Popen[bytes]:
        started.append(parsed.file)
        return subprocess.Popen([sys.executable, "-c", "pass"])

    monkeypatch.setattr(quick, "start_fetcher", fake_start)
    assert quick_fetch(["--spool", str(spool.root), file, str(tmp_path / "X")], {}) is None
    assert started == [file] and spool.status(file) is None


def test_sweep_removes_only_old_temporary_files(spool: Spool) -> None:
    old = spool.temp_path("old")
    young = spool.temp_path("young")
    for path in (old, young):
        path.write_text("x")
    os.utime(old, (0, 0))
    spool.sweep_temp()
    assert not old.exists() and young.exists()  # a young one may be a command's, about to be renamed


def test_an_archive_that_cannot_be_listed_is_an_error_for_the_wanted_segment(spool: Spool) -> None:
    spool.want(SEGMENTS[0])

    def unreachable(want: str, count: int) -> list[str]:
        raise ConnectionError("storage down")

    result = prefetch.run(spool, unreachable, lambda file: "0" * 64, key="k", idle_exit=0.1, poll=0.005)
    status = spool.status(SEGMENTS[0])
    assert status is not None and not status.ok and "storage down" in status.error
    assert result.fetched == []


def test_quick_fetch_says_why_it_cannot_use_the_spool(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    not_a_dir = tmp_path / "spool-file"
    not_a_dir.write_text("x")
    assert quick_fetch(["--spool", str(not_a_dir), SEGMENTS[0], str(tmp_path / "X")], {}) is None
    assert "cannot be used" in capfd.readouterr().err
