"""Storage down during wal-push, for real: PostgreSQL 15 archives into SeaweedFS, which is SIGKILLed.

The module starts its own SeaweedFS (own data directory and ports) and a
cluster whose archive_command is ``pgkeep wal-push`` into a bucket on it.
While the server is dead every push fails (fast: the archiver must not be
held up), PostgreSQL keeps the segments and retries; once SeaweedFS runs
again on the same data and ports, archiving catches up and the archive has
every segment, with no hole and the same bytes.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pitr_helpers import (
    APP_DB,
    PG15_BIN_DIR,
    Archiving,
    archiver_stats,
    give_to_server_user,
    run_pgkeep,
    server_user_dir,
    start_archiving,
    stop_archiving,
    switch_and_wait_archived,
    wait_for,
)

from pgkeep.devs3 import DevS3
from pgkeep.wal.naming import parse_object

BUCKET = "pgkeep-outage"
# A push against a dead server: 3 attempts of an immediately refused connection, plus
# interpreter start. Far below what the archiver could tolerate; generous for a busy machine.
FAST_FAILURE_S = 20.0


@pytest.fixture(scope="module")
def s3() -> Iterator[DevS3]:
    """This module's own SeaweedFS: the test kills it, nobody else may depend on it."""
    server = DevS3.start()
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()  # its processes, by PID (SIGKILL after a short grace), and its directory


@pytest.fixture(scope="module")
def s3_archiving(server_runs_pgkeep: None, s3: DevS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archiving]:
    # No retry or timeout settings: wal-push's own budget is under test.
    storage = {
        "storage_url": f"s3://{BUCKET}/wal",
        "s3_endpoint_url": s3.endpoint_url,
        "s3_region": s3.region,
        "s3_force_path_style": True,
        "s3_access_key_id": s3.access_key,
        "s3_secret_access_key": s3.secret_key,
    }
    arch = start_archiving(PG15_BIN_DIR, tmp_path_factory.mktemp("pg15s3"), storage=storage)
    try:
        yield arch
    finally:
        stop_archiving(arch)


def write_and_switch(arch: Archiving) -> str:
    """Some WAL, then close the segment; the name of the segment closed."""
    arch.cluster.execute(
        "CREATE TABLE IF NOT EXISTS events (id bigserial PRIMARY KEY, payload text NOT NULL)", dbname=APP_DB
    )
    arch.cluster.execute(
        "INSERT INTO events (payload) SELECT md5(g::text) FROM generate_series(1, 500) g", dbname=APP_DB
    )
    return str(arch.cluster.query("SELECT pg_walfile_name(pg_switch_wal())")[0][0])


def archived_segments(arch: Archiving) -> set[str]:
    objects = (parse_object(info.name) for info in arch.ctx.storage.list())
    return {obj.file for obj in objects if obj is not None and obj.is_segment}


def test_s3_killed_during_archiving_loses_nothing(s3_archiving: Archiving, s3: DevS3) -> None:
    arch = s3_archiving
    before = [switch_and_wait_archived(arch.cluster) for _ in range(2)]
    failures_before, last_before = archiver_stats(arch)
    assert last_before == before[-1]

    s3.kill()
    assert not s3.running
    during = [write_and_switch(arch) for _ in range(3)]
    wait_for(lambda: archiver_stats(arch)[0] >= failures_before + 3, "the archiver to report failed wal-pushes")
    # Nothing was marked archived: PostgreSQL keeps every segment for a later retry.
    assert archiver_stats(arch)[1] == last_before
    status_dir = arch.cluster.data_dir / "pg_wal" / "archive_status"
    for segment in during:
        assert (status_dir / f"{segment}.ready").exists() and not (status_dir / f"{segment}.done").exists()
    server_log = arch.cluster.log_file.read_text(errors="replace")
    assert "archive command failed with exit code 1" in server_log
    assert "cannot talk to the S3 endpoint" in server_log

    # The archive cannot be listed, but the server's side is still reported.
    status = run_pgkeep("archive", "status", "--server", "--json", env=arch.env(PGKEEP_S3_MAX_ATTEMPTS="1"))
    assert status.returncode == 1, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["ok"] is False and report["problems"][0].startswith("cannot list the archive"), report
    assert report["server"]["failing"] is True and report["server"]["lastFailedWal"] in during, report
    assert report["server"]["readyCount"] >= len(during), report

    # The same push by hand: it fails, and within seconds (the archiver waits for it).
    work = server_user_dir("pgkeep-outage-")
    try:
        kept = work / during[1]
        shutil.copyfile(arch.cluster.data_dir / "pg_wal" / during[1], kept)
        give_to_server_user(kept)
        t0 = time.monotonic()
        pushed = run_pgkeep("wal-push", "--config", str(arch.config), str(kept), user="postgres")
        elapsed = time.monotonic() - t0
        assert pushed.returncode == 1, pushed.stderr
        assert "cannot talk to the S3 endpoint" in pushed.stderr and "after 3 attempts" in pushed.stderr
        assert elapsed < FAST_FAILURE_S, elapsed

        s3.restart()  # same data directory, same ports
        after = switch_and_wait_archived(arch.cluster)  # a new segment wakes the archiver, which retries
        failures, last = archiver_stats(arch)
        assert last == after and failures >= failures_before + 3

        assert set(before + during + [after]) <= archived_segments(arch)
        status = run_pgkeep("archive", "status", "--json", env=arch.env())
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["ok"] is True and report["holes"] == [] and report["newestSegment"] == after

        fetched = work / "fetched"
        got = run_pgkeep("wal-fetch", "--config", str(arch.config), during[1], str(fetched), user="postgres")
        assert got.returncode == 0, got.stderr
        assert fetched.read_bytes() == kept.read_bytes()
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An HTTP endpoint that accepts connections and never answers (a frozen server)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in accepted:
            conn.close()


def test_wal_push_to_a_frozen_server_gives_up_within_its_budget(silent_endpoint: str, tmp_path: Path) -> None:
    segment = tmp_path / "000000010000000000000001"
    segment.write_bytes(b"\0" * 8192)
    env = {
        "PGKEEP_STORAGE_URL": f"s3://{BUCKET}/wal",
        "PGKEEP_S3_ENDPOINT_URL": silent_endpoint,
        "PGKEEP_S3_REGION": "us-east-1",
        "PGKEEP_S3_ACCESS_KEY_ID": "k",
        "PGKEEP_S3_SECRET_ACCESS_KEY": "s",
        "PGKEEP_S3_MAX_ATTEMPTS": "10",  # capped at 3 for wal-push
        "PGKEEP_S3_READ_TIMEOUT": "1",  # lower than wal-push's cap: kept
    }
    capped = run_pgkeep("wal-push", "--timeout", "0", str(segment), env=env)
    assert capped.returncode == 1 and "after 3 attempts" in capped.stderr, capped.stderr

    # A deadline shorter than one read timeout: the deadline ends the push.
    t0 = time.monotonic()
    deadline = run_pgkeep("wal-push", "--timeout", "3", str(segment), env={**env, "PGKEEP_S3_READ_TIMEOUT": "60"})
    assert deadline.returncode == 1 and "gave up after 3 s" in deadline.stderr, deadline.stderr
    assert time.monotonic() - t0 < FAST_FAILURE_S
