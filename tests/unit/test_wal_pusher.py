"""Asynchronous archiving's pure parts: archive_command's quick path, the spool, the pusher loop.

The pusher's pushes are fakes here (the real one, against a real server, is
in tests/pitr/test_wal_async.py); the spool and pg_wal are real directories.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgkeep.cli import quick
from pgkeep.cli.quick import QuickArgs, parse, quick_push
from pgkeep.wal import ahead
from pgkeep.wal.spool import Spool, settings_key

SEGMENTS = [f"0000000100000000000000{n:02X}" for n in range(1, 9)]


def make_pg_wal(root: Path, files: list[str]) -> Path:
    pg_wal = root / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    for name in files:
        (pg_wal / name).write_bytes(name.encode() * 100)
        (pg_wal / "archive_status" / f"{name}.ready").touch()
    return pg_wal


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def pg_wal(tmp_path: Path) -> Path:
    return make_pg_wal(tmp_path, SEGMENTS[:4])


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    queue = Spool(tmp_path / "spool")
    queue.prepare()
    return queue


# --- the quick path ---------------------------------------------------------------------------


def test_parse_takes_the_plain_forms_and_leaves_the_rest_to_the_cli() -> None:
    assert parse(["--config", "/c.env", "--spool=/s", "--jobs", "4", "--timeout=5", "pg_wal/X"]) == QuickArgs(
        Path("pg_wal/X"), Path("/s"), Path("/c.env"), 5.0, 4
    )
    assert parse(["--spool", "/s", "pg_wal/X"]) == QuickArgs(Path("pg_wal/X"), Path("/s"))
    for args in (
        ["pg_wal/X"],  # no spool: the synchronous push
        ["--spool", "/s"],  # no file
        ["--spool", "/s", "a", "b"],
        ["--spool", "/s", "--help", "a"],
        ["--spool", "/s", "--jobs", "0", "a"],  # out of range: the CLI's message
        ["--spool", "/s", "--timeout", "soon", "a"],
        ["--spool", "/s", "--unknown=1", "a"],
        ["--spool"],
    ):
        assert parse(args) is None, args


def test_settings_key_follows_the_config_file_and_pgkeep_variables(tmp_path: Path) -> None:
    config = tmp_path / "pgkeep.env"
    config.write_text("PGKEEP_STORAGE_URL=file:///a\n")
    key = settings_key(config, {"PGKEEP_ZSTD_LEVEL": "2", "HOME": "/root"})
    assert key == settings_key(config, {"PGKEEP_ZSTD_LEVEL": "2", "HOME": "/elsewhere"})
    assert key != settings_key(config, {"PGKEEP_ZSTD_LEVEL": "3", "HOME": "/root"})
    assert key != settings_key(None, {"PGKEEP_ZSTD_LEVEL": "2"})
    config.write_text("PGKEEP_STORAGE_URL=file:///b\n")
    assert key != settings_key(config, {"PGKEEP_ZSTD_LEVEL": "2"})


def test_quick_path_confirms_only_this_file_under_these_settings(pg_wal: Path, spool: Spool) -> None:
    name = SEGMENTS[0]
    path = pg_wal / name
    args = ["--spool", str(spool.root), str(path)]
    key = settings_key(None, {})

    spool.record_ok(name, sha(path), key)
    assert quick_push(args, {}) == 0
    assert quick_push(args, {"PGKEEP_STORAGE_URL": "file:///other"}) is None  # other settings
    spool.record_ok(name, "0" * 64, key)
    assert quick_push(args, {}) is None  # other bytes under this name
    spool.forget(name)
    spool.record_error(name, "storage down")
    assert quick_push(args, {}) is None  # the ordinary push reports the error
    spool.forget(name)
    assert quick_push(["--spool", str(spool.root), str(pg_wal / "notwal")], {}) is None


def test_quick_path_gives_up_after_its_timeout_while_the_pusher_works(
    pg_wal: Path, spool: Spool, capfd: pytest.CaptureFixture[str]
) -> None:
    lock = spool.take_lock()  # a pusher at work that never gets to this file
    assert lock is not None
    try:
        code = quick_push(["--spool", str(spool.root), "--timeout", "0.3", str(pg_wal / SEGMENTS[0])], {})
    finally:
        os.close(lock)
    assert code == 1
    assert "gave up after 0.3 s waiting for the pusher" in capfd.readouterr().err


def test_quick_path_starts_a_pusher_and_hands_over_when_it_ends_without_a_word(
    pg_wal: Path, spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[QuickArgs] = []

    def fake_start(queue: Spool, parsed: QuickArgs) -> subprocess.Popen[bytes]:
        started.append(parsed)
        return subprocess.Popen([sys.executable, "-c", "pass"])  # a pusher that records nothing

    monkeypatch.setattr(quick, "start_pusher", fake_start)
    args = ["--spool", str(spool.root), "--jobs", "3", str(pg_wal / SEGMENTS[0])]
    assert quick_push(args, {}) is None  # none ran: one started, it ended: the ordinary push
    assert len(started) == 1 and started[0].jobs == 3

    # A pusher at work that ends without this file (it was going idle as the file became
    # ready): a new one is started for it, once.
    lock = spool.take_lock()
    assert lock is not None
    timer = threading.Timer(0.2, os.close, [lock])
    timer.start()
    try:
        assert quick_push(args, {}) is None
    finally:
        timer.join()
    assert len(started) == 2


# --- the pusher -------------------------------------------------------------------------------


class FakePush:
    """Stores nothing; counts how many pushes run at once."""

    def __init__(self, jobs: int, fail: str | None = None) -> None:
        self.jobs = jobs
        self.fail = fail
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.all_busy = threading.Barrier(jobs, timeout=5)
        self.pushed: list[str] = []

    def __call__(self, path: Path) -> str:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if path.name == self.fail:
                raise RuntimeError("storage down")
            with contextlib.suppress(threading.BrokenBarrierError):  # fewer files left than jobs
                self.all_busy.wait()  # the first pushes meet: they did run at the same time
            with self.lock:
                self.pushed.append(path.name)
            return sha(path)
        finally:
            with self.lock:
                self.running -= 1


def test_pusher_stores_every_ready_file_jobs_at_a_time(pg_wal: Path, spool: Spool) -> None:
    push = FakePush(jobs=2)
    result = ahead.run(pg_wal, spool, push, key="k", jobs=2, idle_exit=0.1, poll=0.01)
    assert sorted(result.pushed) == SEGMENTS[:4] and result.failed is None
    assert push.most == 2
    for name in SEGMENTS[:4]:
        status = spool.status(name)
        assert status is not None and status.confirms(sha(pg_wal / name), "k")


def test_pusher_stops_at_the_first_failure_and_records_it(pg_wal: Path, spool: Spool) -> None:
    push = FakePush(jobs=1, fail=SEGMENTS[1])
    result = ahead.run(pg_wal, spool, push, key="k", jobs=1, idle_exit=0.1, poll=0.01)
    assert result.failed == SEGMENTS[1]
    assert push.pushed == [SEGMENTS[0]]  # nothing after the failure
    status = spool.status(SEGMENTS[1])
    assert status is not None and not status.ok and status.error == "storage down"
    assert spool.status(SEGMENTS[2]) is None


def test_pusher_keeps_within_lookahead_and_forgets_acknowledged_files(tmp_path: Path, spool: Spool) -> None:
    pg_wal = make_pg_wal(tmp_path, SEGMENTS)
    spool.record_ok("000000010000000000000000", "0" * 64, "k")  # acknowledged long ago
    most_ahead = 0
    stop = threading.Event()

    def archiver() -> None:
        """PostgreSQL's side: acknowledge files in order as their status appears."""
        nonlocal most_ahead
        for name in SEGMENTS:
            while not stop.is_set() and spool.status(name) is None:
                most_ahead = max(most_ahead, len(spool.recorded()))
                stop.wait(0.005)
            os.replace(pg_wal / "archive_status" / f"{name}.ready", pg_wal / "archive_status" / f"{name}.done")

    thread = threading.Thread(target=archiver)
    thread.start()
    try:
        result = ahead.run(pg_wal, spool, FakePush(jobs=1), key="k", jobs=1, lookahead=3, idle_exit=0.2, poll=0.01)
    finally:
        stop.set()
        thread.join()
    assert sorted(result.pushed) == SEGMENTS
    assert 1 <= most_ahead <= 3
    assert spool.recorded() == set()  # every status was for a file PostgreSQL had acknowledged


def test_pusher_abandons_a_push_that_hangs(pg_wal: Path, spool: Spool) -> None:
    release = threading.Event()

    def hang(path: Path) -> str:
        release.wait(10)
        return sha(path)

    try:
        result = ahead.run(pg_wal, spool, hang, key="k", jobs=1, push_deadline=0.2, poll=0.01)
    finally:
        release.set()
    assert result.timed_out == SEGMENTS[0] and result.failed == SEGMENTS[0]
    status = spool.status(SEGMENTS[0])
    assert status is not None and "gave up after 0.2 s" in status.error


def test_ready_files_come_in_the_archivers_order(tmp_path: Path) -> None:
    pg_wal = make_pg_wal(tmp_path, [SEGMENTS[1], "00000002.history", SEGMENTS[0]])
    (pg_wal / "archive_status" / "junk.ready").touch()
    (pg_wal / "archive_status" / f"{SEGMENTS[2]}.done").touch()
    assert ahead.ready_files(pg_wal) == ["00000002.history", SEGMENTS[0], SEGMENTS[1]]


@pytest.fixture(autouse=True)
def _no_real_pusher(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test here may start a real pusher by accident."""

    def refuse(queue: Spool, parsed: QuickArgs) -> subprocess.Popen[bytes]:
        raise AssertionError("a real pusher would start")

    monkeypatch.setattr(quick, "start_pusher", refuse)
    yield


def test_a_spool_serving_another_cluster_is_not_waited_on(
    pg_wal: Path, spool: Spool, capfd: pytest.CaptureFixture[str]
) -> None:
    spool.serve(Path("/srv/other-cluster/pg_wal"))
    lock = spool.take_lock()  # that cluster's pusher at work
    assert lock is not None
    try:
        code = quick_push(["--spool", str(spool.root), "--timeout", "30", str(pg_wal / SEGMENTS[0])], {})
    finally:
        os.close(lock)
    assert code is None  # straight to the ordinary push, not a 30 s wait
    assert "serves another cluster's WAL (/srv/other-cluster/pg_wal)" in capfd.readouterr().err


def test_an_unusable_spool_is_said_and_the_ordinary_push_runs(
    pg_wal: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    not_a_dir = tmp_path / "spool-file"
    not_a_dir.write_text("x")
    assert quick_push(["--spool", str(not_a_dir), str(pg_wal / SEGMENTS[0])], {}) is None
    err = capfd.readouterr().err
    assert f"the spool {not_a_dir} cannot be used" in err and "pushing directly" in err


def test_the_pusher_gets_the_config_by_the_same_path_so_its_statuses_are_trusted(
    pg_wal: Path, spool: Spool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config file reached through a symlinked directory (/etc/pgkeep -> elsewhere): the
    pusher's settings key must be the command's, or every status would be refused."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "pgkeep.env").write_text("PGKEEP_STORAGE_URL=file:///a\n")
    (tmp_path / "etc").symlink_to(real)
    config = tmp_path / "etc" / "pgkeep.env"
    launched: list[list[str]] = []

    class FakePopen:
        def __init__(self, argv: list[str], **kwargs: object) -> None:
            launched.append(argv)

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    quick._start_worker(spool, QuickArgs(pg_wal / SEGMENTS[0], spool.root, config), ["wal-push-ahead"])
    argv = launched[0]
    given = Path(argv[argv.index("--config") + 1])
    assert settings_key(given, {}) == settings_key(config, {})
