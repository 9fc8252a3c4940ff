"""Asynchronous archiving: ``archive_command = 'pgkeep wal-push --spool DIR %p'`` on a real server.

The pusher stores the ready segments ahead of the archiver; archive_command
confirms each from its status. The archive it builds must be the same
archive: no hole, and a point-in-time restore from it gives the data back.
An outage must still fail archive_command, and lose nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from pitr_helpers import (
    APP_DB,
    PG15_BIN_DIR,
    Archiving,
    add_rows,
    archiver_stats,
    restored,
    restored_fingerprint,
    run_pgkeep,
    segment_objects,
    start_archiving,
    stop_archiving,
    storage_outage,
    switch_and_wait_archived,
    wait_for,
)

from helpers import s3_overrides
from pgkeep.devs3 import DevS3
from pgkeep.fingerprint import diff_fingerprints, fingerprint
from pgkeep.services import archive as archive_service
from pgkeep.services.physical import create_physical_backup
from pgkeep.services.pitr import PREFETCH_SPOOL, PitrOptions, RecoveryTarget, restore_physical
from pgkeep.wal.spool import Spool
from pgkeep.wal.status import list_archive


@pytest.fixture(scope="module")
def async_archiving(server_runs_pgkeep: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archiving]:
    arch = start_archiving(PG15_BIN_DIR, tmp_path_factory.mktemp("pg15async"), spool=True)
    try:
        yield arch
    finally:
        stop_archiving(arch)


def spool_of(arch: Archiving) -> Spool:
    return Spool(arch.root / "spool")


def pusher_log(arch: Archiving) -> str:
    return spool_of(arch).log_path.read_text(encoding="utf-8")


def test_the_pusher_archives_ahead_and_the_archive_restores(async_archiving: Archiving) -> None:
    arch = async_archiving
    add_rows(arch, 1000)
    backup = create_physical_backup(arch.ctx)
    segments = []
    for _ in range(6):  # several segments ready at once: the pusher has work ahead of the archiver
        add_rows(arch, 2000)
        segments.append(arch.cluster.query("SELECT pg_walfile_name(pg_switch_wal())")[0][0])
    last = switch_and_wait_archived(arch.cluster)
    expected = fingerprint(arch.cluster.admin_conninfo(APP_DB))

    assert archiver_stats(arch)[0] == 0
    archived = segment_objects(arch.storage)
    assert set(segments) | {last} <= set(archived)
    log = pusher_log(arch)
    assert all(f"{segment}: stored" in log for segment in segments), log  # the pusher stored them
    spool = spool_of(arch)
    wait_for(lambda: not spool.worker_running(), "the pusher to stop once idle")
    assert spool.recorded() == set()  # every status was used and cleared
    status = archive_service.status(arch.ctx)
    assert status.ok and status.holes == [] and status.newest == last

    with restored(arch, "async-restored") as result:
        assert result.backup_id == backup.id
        # restore_command prefetched: the fetcher's log is kept in the recovery log, its spool is gone.
        assert result.log_file is not None
        recovery_log = result.log_file.read_text(encoding="utf-8")
        prefetched = [segment for segment in segments if f"{segment}: fetched" in recovery_log]
        assert len(prefetched) >= len(segments) - 1, recovery_log[-3000:]
        assert not (result.data_dir / PREFETCH_SPOOL).exists()
        assert diff_fingerprints(expected, restored_fingerprint(arch, result)) == []


def pusher_report(arch: Archiving) -> dict[str, Any]:
    result = run_pgkeep("archive", "status", "--spool", str(arch.root / "spool"), "--json", env=arch.env())
    assert result.returncode in (0, 1), result.stderr  # the archive's verdict; the spool's is only a report
    return dict(json.loads(result.stdout)["spool"])


def test_an_outage_fails_archive_command_and_loses_nothing(async_archiving: Archiving) -> None:
    arch = async_archiving
    with storage_outage(arch) as pending:
        assert f"{pending}: not stored" in pusher_log(arch)
        # archive status --spool shows the backlog PostgreSQL keeps, and why.
        report = pusher_report(arch)
        assert report["pgWal"] == str(arch.cluster.data_dir / "pg_wal")
        assert report["oldestReady"] == pending and report["readyCount"] >= 1
        assert report["oldestReadyAgeSeconds"] >= 0
        assert f"{pending}: not stored" in report["lastLogLine"]
        said = run_pgkeep("archive", "status", "--spool", str(arch.root / "spool"), env=arch.env()).stdout
        assert f"ready in pg_wal, the oldest ({pending})" in said, said
        assert "pusher log:" in said and f"{pending}: not stored" in said, said
    add_rows(arch, 10)
    last = switch_and_wait_archived(arch.cluster)  # a new segment wakes the archiver, which retries
    archived = segment_objects(arch.storage)
    assert pending in archived and last in archived
    status = archive_service.status(arch.ctx)
    assert status.ok and status.holes == []
    report = pusher_report(arch)
    assert report["oldestReady"] != pending and report["errors"] == []


def test_s3_archive_pushed_ahead_and_restored_with_prefetching(
    server_runs_pgkeep: None, devs3: DevS3, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SeaweedFS both ways: several pushes at once through one S3 client (threads), confirmed
    by archive_command; then a point-in-time restore whose fetcher downloads them ahead."""
    arch = start_archiving(
        PG15_BIN_DIR, tmp_path_factory.mktemp("pg15asyncs3"), storage=s3_overrides(devs3), spool=True
    )
    try:
        add_rows(arch, 1000)
        backup = create_physical_backup(arch.ctx)
        segments = []
        for _ in range(4):
            add_rows(arch, 2000)
            segments.append(arch.cluster.query("SELECT pg_walfile_name(pg_switch_wal())")[0][0])
        last = switch_and_wait_archived(arch.cluster)
        expected = fingerprint(arch.cluster.admin_conninfo(APP_DB))
        assert archiver_stats(arch)[0] == 0
        log = pusher_log(arch)
        assert all(f"{segment}: stored" in log for segment in segments), log
        archived = {item.obj.file for item in list_archive(arch.ctx.storage) if item.obj.is_segment}
        assert set(segments) | {last} <= archived

        with restored(arch, "s3-restored") as result:
            assert result.backup_id == backup.id
            assert result.log_file is not None
            recovery_log = result.log_file.read_text(encoding="utf-8")
            assert all(f"{segment}: fetched" in recovery_log for segment in segments[1:]), recovery_log[-3000:]
            assert diff_fingerprints(expected, restored_fingerprint(arch, result)) == []
    finally:
        stop_archiving(arch)


@pytest.mark.parametrize("prefetch", [True, False])
def test_restore_command_prefetches_unless_told_not_to(async_archiving: Archiving, prefetch: bool) -> None:
    arch = async_archiving
    if not archive_service.physical_backups(arch.ctx):
        create_physical_backup(arch.ctx)
    data_dir = arch.new_dir(f"conf-{prefetch}")
    try:
        restore_physical(arch.ctx, PitrOptions(data_dir, RecoveryTarget.parse(latest=True), prefetch=prefetch))
        conf = (data_dir / "postgresql.auto.conf").read_text(encoding="utf-8")
        (line,) = [line for line in conf.splitlines() if line.startswith("restore_command")]
        assert ("--spool" in line) is prefetch, line
        if prefetch:
            assert f"--spool {data_dir / PREFETCH_SPOOL} %f %p" in line
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    wrong = run_pgkeep("restore", "some-id", "--no-prefetch", "--yes", env=arch.env())
    assert wrong.returncode == 2 and "need --kind physical" in wrong.stderr
