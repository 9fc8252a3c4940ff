"""Point-in-time recovery on PostgreSQL 15: base backup + archived WAL -> time, restore point, LSN, latest.

One history per module: pgbench load, a physical backup, then writes with a
fingerprint recorded at a time, at a named restore point and at an LSN.
Each restore goes into a new data directory, is started beside the source
(as the postgres OS user, on a free port) and must give back exactly the
recorded fingerprint.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from pitr_helpers import (
    APP_DB,
    PG15_BIN_DIR,
    PGKEEP,
    Archiving,
    pgbench,
    run_pgkeep,
    server_now,
    switch_and_wait_archived,
)

from helpers import count_local_opens, get_row, pgkeep_free_environ, run_on_a_terminal
from pgkeep.errors import InvalidRequestError, TargetNotReachedError
from pgkeep.fingerprint import Fingerprint, diff_fingerprints, fingerprint
from pgkeep.pgtools import postmaster
from pgkeep.services.physical import create_physical_backup
from pgkeep.services.pitr import (
    CLAIM_SUFFIX,
    DataDirectoryTakenError,
    PitrOptions,
    PitrResult,
    RecoveryTarget,
    restore_physical,
)
from pgkeep.services.verify import verify_backup
from pgkeep.storage import local_path_from_url


@dataclass(frozen=True)
class History:
    backup_id: str
    at_time: datetime
    fp_time: Fingerprint
    point_name: str
    fp_point: Fingerprint
    at_lsn: str
    fp_lsn: Fingerprint
    fp_final: Fingerprint


def writes(arch: Archiving, n: int = 200) -> None:
    pgbench(arch, "--no-vacuum", "-t", str(n), "-c", "1")


@pytest.fixture(scope="module")
def history(pg15_archiving: Archiving) -> History:
    arch = pg15_archiving
    pgbench(arch, "-i", "-s", "1", "-q")
    result = create_physical_backup(arch.ctx)
    conninfo = arch.cluster.admin_conninfo(APP_DB)
    writes(arch)
    at_time = server_now(arch.cluster)
    fp_time = fingerprint(conninfo)
    writes(arch)
    arch.cluster.execute("SELECT pg_create_restore_point('before_batch_3')")
    fp_point = fingerprint(conninfo)
    writes(arch)
    at_lsn = arch.cluster.query("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    fp_lsn = fingerprint(conninfo)
    writes(arch)
    fp_final = fingerprint(conninfo)
    switch_and_wait_archived(arch.cluster)
    return History(result.id, at_time, fp_time, "before_batch_3", fp_point, at_lsn, fp_lsn, fp_final)


@pytest.fixture
def restored(pg15_archiving: Archiving, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A data directory path for one restore; its server is stopped and the directory removed afterwards."""
    data_dir = pg15_archiving.new_dir(f"restore-{request.node.name[:40]}")
    yield data_dir
    postmaster.stop(PG15_BIN_DIR, data_dir, "postgres", mode="immediate")
    shutil.rmtree(data_dir, ignore_errors=True)


def restored_fingerprint(arch: Archiving, result: PitrResult) -> Fingerprint:
    conninfo = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=result.port, user="postgres", password=arch.cluster.superuser_password, dbname=APP_DB
    )
    return fingerprint(conninfo)


def assert_same(expected: Fingerprint, actual: Fingerprint) -> None:
    assert diff_fingerprints(expected, actual, a_label="recorded", b_label="restored") == []


def test_restore_to_a_time_gives_back_that_moment(pg15_archiving: Archiving, history: History, restored: Path) -> None:
    result = restore_physical(
        pg15_archiving.ctx,
        PitrOptions(restored, RecoveryTarget.parse(to_time=history.at_time.isoformat()), start=True),
    )
    assert result.target_reached and result.backup_id == history.backup_id
    assert_same(history.fp_time, restored_fingerprint(pg15_archiving, result))
    assert history.fp_time != history.fp_final


def test_a_directory_another_restore_is_writing_is_refused(
    pg15_archiving: Archiving, history: History, restored: Path
) -> None:
    """Two restores into one empty directory (two API processes, two operators): one goes on.

    The marker beside the directory is what the first one holds while it
    writes; the second is refused with its name and leaves everything as it was.
    """
    restored.mkdir(mode=0o700)
    marker = restored.parent / f".{restored.name}{CLAIM_SUFFIX}"
    marker.write_text("another pgkeep\n")
    options = PitrOptions(restored, RecoveryTarget.parse(latest=True))
    with pytest.raises(DataDirectoryTakenError) as refused:
        restore_physical(pg15_archiving.ctx, options)
    assert str(marker) in refused.value.message and refused.value.http_status == 409
    assert list(restored.iterdir()) == [] and marker.read_text() == "another pgkeep\n"

    # A claim of a live process on this host (this one) holds too.
    marker.write_text(f"{socket.gethostname()} pid {os.getpid()} since 2026-11-27T00:00:00+00:00\n")
    with pytest.raises(DataDirectoryTakenError):
        restore_physical(pg15_archiving.ctx, options)

    # The restore that held it died (killed with the API process): its claim is taken over.
    gone = subprocess.Popen(["true"])
    gone.wait()
    marker.write_text(f"{socket.gethostname()} pid {gone.pid} since 2026-11-27T00:00:00+00:00\n")
    result = restore_physical(pg15_archiving.ctx, options)
    assert result.backup_id == history.backup_id and (restored / "PG_VERSION").is_file()
    assert not marker.exists()  # released once the directory is written


def test_restore_to_a_named_restore_point(pg15_archiving: Archiving, history: History, restored: Path) -> None:
    result = restore_physical(
        pg15_archiving.ctx, PitrOptions(restored, RecoveryTarget.parse(to_name=history.point_name), start=True)
    )
    assert result.target_reached
    assert_same(history.fp_point, restored_fingerprint(pg15_archiving, result))


def test_restore_to_an_lsn(pg15_archiving: Archiving, history: History, restored: Path) -> None:
    result = restore_physical(
        pg15_archiving.ctx, PitrOptions(restored, RecoveryTarget.parse(to_lsn=history.at_lsn), start=True)
    )
    assert result.target_reached
    assert_same(history.fp_lsn, restored_fingerprint(pg15_archiving, result))


def test_cli_restores_the_latest_state_and_reports_it(
    pg15_archiving: Archiving, history: History, restored: Path
) -> None:
    """The command line, as an operator runs it: --latest --start --json."""
    proc = run_pgkeep(
        "restore",
        "--kind",
        "physical",
        "--data-dir",
        str(restored),
        "--latest",
        "--start",
        "--json",
        env=pg15_archiving.env(),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["targetReached"] is True and report["started"] is True
    assert report["backupId"] == history.backup_id and report["reachedLsn"]
    conninfo = psycopg.conninfo.make_conninfo(
        host="127.0.0.1",
        port=report["port"],
        user="postgres",
        password=pg15_archiving.cluster.superuser_password,
        dbname=APP_DB,
    )
    assert_same(history.fp_final, fingerprint(conninfo))
    # Recovery is over: the settings file written for restore_command is gone, recovery.signal too.
    assert not (restored / "pgkeep-restore.env").exists()
    assert not (restored / "recovery.signal").exists()


def test_cli_shows_the_unpacking_on_a_terminal(pg15_archiving: Archiving, history: History, restored: Path) -> None:
    env = {**pgkeep_free_environ(), **pg15_archiving.env(), "TERM": "xterm-256color"}
    command = [str(PGKEEP), "restore", "--kind", "physical", "--latest"]
    code, out, shown = run_on_a_terminal([*command, "--data-dir", str(restored)], env)
    assert code == 0, shown
    assert "reading the backup" in shown and "reading the backup" not in out
    size = int(get_row(pg15_archiving.ctx, history.backup_id).size)
    assert f"/{size / 1e6:.1f} MB" in shown  # the bar knew its end (the chain's size) from the plan
    assert out.startswith("✅"), out
    quiet_dir = pg15_archiving.new_dir("restore-quiet")
    try:
        code, out, shown = run_on_a_terminal([*command, "--data-dir", str(quiet_dir), "--quiet"], env)
        assert code == 0, shown
        assert "reading the backup" not in shown
    finally:
        shutil.rmtree(quiet_dir, ignore_errors=True)


def test_refusals_come_before_anything_is_written(pg15_archiving: Archiving, history: History, tmp_path: Path) -> None:
    ctx = pg15_archiving.ctx
    data_dir = pg15_archiving.new_dir("refused")

    def refused(target: RecoveryTarget, *needles: str, directory: Path = data_dir) -> None:
        with pytest.raises(InvalidRequestError) as info:
            restore_physical(ctx, PitrOptions(directory, target, start=True))
        for needle in needles:
            assert needle in info.value.message
        assert not data_dir.exists()

    row_time = history.at_time
    refused(RecoveryTarget.parse(to_time="2001-01-01T00:00:00Z"), "older than the oldest physical backup")
    refused(
        RecoveryTarget.parse(to_time=(row_time.replace(year=row_time.year + 1)).isoformat()),
        "later than the end of the archived WAL",
    )
    refused(RecoveryTarget.parse(to_lsn="FF/0"), "later than the end of the archived WAL")
    refused(RecoveryTarget.parse(to_lsn="0/10"), "older than the oldest physical backup")
    occupied = pg15_archiving.new_dir("occupied")
    occupied.mkdir()
    (occupied / "PG_VERSION").write_text("15\n")
    with pytest.raises(InvalidRequestError, match="not an empty directory"):
        restore_physical(ctx, PitrOptions(occupied, RecoveryTarget.parse(latest=True)))
    assert [p.name for p in occupied.iterdir()] == ["PG_VERSION"]
    with pytest.raises(InvalidRequestError, match="one recovery target"):
        RecoveryTarget.parse(to_time="2026-01-01", latest=True)
    # A time without a zone is UTC.
    parsed = RecoveryTarget.parse(to_time="2026-01-01T10:00:00").time
    assert parsed is not None and parsed.isoformat() == "2026-01-01T10:00:00+00:00"


def test_verify_checks_checksums_manifest_and_wal_and_drills_a_restore(
    pg15_archiving: Archiving, history: History
) -> None:
    ctx = pg15_archiving.ctx
    for level in ("checksum", "archive", "restore"):
        result = verify_backup(ctx, history.backup_id, level)
        assert result.valid, (level, result.message)
    assert "pg_verifybackup" in verify_backup(ctx, history.backup_id, "archive").message
    assert "amcheck" in result.message

    artifact = local_path_from_url(get_row(ctx, history.backup_id).storage_url or "")
    original = artifact.read_bytes()
    try:
        damaged = bytearray(original)
        damaged[len(damaged) // 2] ^= 0xFF
        artifact.write_bytes(bytes(damaged))
        for level in ("checksum", "archive"):
            result = verify_backup(ctx, history.backup_id, level)
            assert not result.valid and "SHA-256" in result.message, result.message
    finally:
        artifact.write_bytes(original)


def test_verify_reads_a_physical_backup_once_and_reports_its_progress(
    pg15_archiving: Archiving, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The unpacking pass checks the SHA-256 and size itself: a separate checksum pass
    # before it would read (from S3: download) the whole backup twice. The restore drill
    # starts the very files pg_verifybackup checked instead of unpacking the backup again.
    ctx = pg15_archiving.ctx
    row = get_row(ctx, history.backup_id)
    artifact = local_path_from_url(row.storage_url or "").name
    opened = count_local_opens(monkeypatch)
    for level in ("checksum", "archive", "restore"):
        opened.clear()
        progress: list[int] = []
        result = verify_backup(ctx, history.backup_id, level, on_read=progress.append)
        assert result.valid, (level, result.message)
        assert opened.count(artifact) == 1, (level, opened)
        assert progress == sorted(progress) and progress[-1] == int(row.size), level


def test_the_listing_shows_kind_and_wal_positions(pg15_archiving: Archiving, history: History) -> None:
    listed = run_pgkeep("list", "--json", env=pg15_archiving.env())
    assert listed.returncode == 0, listed.stderr
    (backup,) = [b for b in json.loads(listed.stdout)["backups"] if b["id"] == history.backup_id]
    assert backup["kind"] == "physical" and backup["type"] == "FULL" and backup["format"] == "tar"
    assert backup["timeline"] == 1 and backup["startLsn"] and backup["endLsn"]
    assert backup["walStart"] <= backup["walEnd"] and backup["backupEndAt"] >= backup["backupStartAt"]
    assert backup["metadata"]["pgManifest"]["filename"].endswith(".backup_manifest.zst")
    wrong = run_pgkeep("restore", history.backup_id, "--yes", env=pg15_archiving.env())
    assert wrong.returncode == 2 and "--kind physical --data-dir DIR" in wrong.stderr


def test_the_api_lists_physical_backups_with_their_kind(pg15_archiving: Archiving, history: History) -> None:
    from fastapi.testclient import TestClient

    from pgkeep.api import create_app
    from pgkeep.catalog.admin_models import Role
    from pgkeep.services import admin

    ctx = pg15_archiving.ctx
    token = admin.create_token(ctx, "pitr viewer", Role.VIEWER)
    with TestClient(create_app(ctx)) as client:
        response = client.get("/api/admin/backups", headers={"Authorization": f"Bearer {token.token}"})
    assert response.status_code == 200, response.text
    (backup,) = [b for b in response.json()["backups"] if b["id"] == history.backup_id]
    assert backup["kind"] == "physical" and backup["endLsn"] and backup["walStart"]


def test_a_rebuilt_catalog_knows_physical_backups(pg15_archiving: Archiving, history: History, tmp_path: Path) -> None:
    from helpers import make_context
    from pgkeep.services.rebuild import rebuild_catalog

    fresh = make_context(tmp_path, pg15_archiving.url, storage_url=pg15_archiving.storage_url)
    try:
        report = rebuild_catalog(fresh)
        assert history.backup_id in [entry["id"] for entry in report.imported], report.as_json()
        assert report.problems == []
        original, rebuilt = get_row(pg15_archiving.ctx, history.backup_id), get_row(fresh, history.backup_id)
        for column in ("kind", "timeline", "start_lsn", "end_lsn", "backup_end_at", "wal_start", "wal_end"):
            assert getattr(rebuilt, column) == getattr(original, column), column
    finally:
        fresh.close()


def test_a_restore_point_that_was_never_made_is_the_requests_fault(
    pg15_archiving: Archiving, history: History, restored: Path
) -> None:
    """Recovery replays the whole archive without meeting the name: a 422, not a server failure (500)."""
    options = PitrOptions(restored, RecoveryTarget.parse(to_name="no-such-point"), start=True)
    with pytest.raises(TargetNotReachedError) as err:
        restore_physical(pg15_archiving.ctx, options)
    assert err.value.http_status == 422 and err.value.code == "recovery_target_not_reached"
    assert "recovery stopped before reaching the target" in err.value.message
    assert "recovery ended before configured recovery target was reached" in err.value.message
