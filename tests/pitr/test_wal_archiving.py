"""WAL archiving through ``pgkeep wal-push``: outages, re-pushes, damaged objects, holes.

A PostgreSQL 15 cluster archives into a local directory owned by the server's
OS user; making that directory unwritable is a storage outage as the
archiver sees it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest
import zstandard
from pitr_helpers import (
    APP_DB,
    PG15_BIN_DIR,
    Archiving,
    add_rows,
    archiver_stats,
    give_to_server_user,
    restored,
    restored_fingerprint,
    run_pgkeep,
    segment_objects,
    storage_outage,
    switch_and_wait_archived,
)

from helpers import get_row, make_context, wait_for
from pgkeep.errors import RestoreFailedError
from pgkeep.fingerprint import diff_fingerprints, fingerprint
from pgkeep.observability.metrics import build_registry
from pgkeep.pgtools import archiver, postmaster
from pgkeep.pgtools.physical import PhysicalBackupRefusedError
from pgkeep.services import archive as archive_service
from pgkeep.services.physical import create_physical_backup
from pgkeep.services.pitr import PitrOptions, RecoveryTarget, restore_physical


def copy_archive(arch: Archiving, name: str) -> Path:
    copy = arch.root / name
    shutil.copytree(arch.storage, copy)
    for path in [copy, *copy.iterdir()]:
        give_to_server_user(path)
    return copy


@pytest.fixture(scope="module")
def backup_id(pg15_archiving: Archiving) -> str:
    """A physical backup with archived WAL after it (three segments at least)."""
    arch = pg15_archiving
    add_rows(arch, 1000)
    backup = create_physical_backup(arch.ctx)
    for _ in range(2):
        add_rows(arch, 1000)
        switch_and_wait_archived(arch.cluster)
    return backup.id


def test_an_archive_command_that_is_not_found_is_seen_as_failing(
    pg15_archiving: Archiving, backup_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 127 (command not found) restarts the archiver without counting a failure: pg_stat_archiver
    alone said all was well while no WAL left pg_wal. pgkeep reads the waiting files too."""
    arch = pg15_archiving
    monkeypatch.setattr(archiver, "STALLED_AFTER_S", 1.0)  # the real threshold is minutes
    admin = arch.cluster.admin_conninfo()
    with psycopg.connect(admin, autocommit=True) as conn:
        failures_before = archiver_stats(arch)[0]
        conn.execute("ALTER SYSTEM SET archive_command = '/nonexistent/pgkeep wal-push %p'")
        conn.execute("SELECT pg_reload_conf()")
        try:
            add_rows(arch, 10)
            stuck = str(conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0])  # type: ignore[index]
            status = wait_for(lambda: (st := archiver.read_archiver(conn)).stalled and st, "WAL to be seen stuck")
            assert archiver_stats(arch)[0] == failures_before  # PostgreSQL counted nothing
            assert status.failing and not status.failure_counted and status.oldest_ready <= stuck  # type: ignore[operator]
            assert status.problems[0].startswith("WAL is not being archived: ")
            assert build_registry(arch.ctx).get_sample_value("pgkeep_wal_archiver_failing") == 1.0
            # A base backup would wait for its last segment's archiving forever: refused at once instead.
            with pytest.raises(PhysicalBackupRefusedError, match="need working WAL archiving: WAL is not being"):
                create_physical_backup(arch.ctx)
        finally:
            conn.execute("ALTER SYSTEM RESET archive_command")
            conn.execute("SELECT pg_reload_conf()")
    switch_and_wait_archived(arch.cluster)
    with psycopg.connect(admin, autocommit=True) as conn:
        assert not archiver.read_archiver(conn).failing


def test_storage_outage_is_retried_and_nothing_is_lost(pg15_archiving: Archiving, backup_id: str) -> None:
    arch = pg15_archiving
    with storage_outage(arch) as pending:
        # PostgreSQL keeps the segment until the push succeeds; the server says archiving fails.
        failing = run_pgkeep("archive", "status", "--server", "--json", env=arch.env())
        assert failing.returncode == 1, failing.stdout + failing.stderr
        server = json.loads(failing.stdout)["server"]
        assert server["failing"] is True and server["lastFailedWal"] == pending, server
        assert server["readyCount"] >= 1 and server["oldestReady"] <= pending, server
        assert any("archiving is failing" in p for p in server["problems"]), server
        registry = build_registry(arch.ctx)
        assert registry.get_sample_value("pgkeep_wal_archiver_failing") == 1.0
        assert (registry.get_sample_value("pgkeep_wal_archiver_ready_files") or 0) >= 1
        assert (registry.get_sample_value("pgkeep_wal_archiver_failed_total") or 0) >= 1
        # pgkeep check: archiving fails, and a fresh segment does not arrive.
        checked = run_pgkeep("check", "--physical", "--archive-test", "--timeout", "2", "--json", env=arch.env())
        assert checked.returncode == 1, checked.stdout + checked.stderr
        checks = {c["name"]: c for c in json.loads(checked.stdout)["checks"]}
        assert checks["archiving"]["status"] == "fail" and "archiving is failing" in checks["archiving"]["detail"]
        assert checks["archive test"]["status"] == "fail"
        assert "was not in" in checks["archive test"]["detail"], checks["archive test"]
    add_rows(arch, 10)
    last = switch_and_wait_archived(arch.cluster)  # a new segment wakes the archiver, which retries
    expected = fingerprint(arch.cluster.admin_conninfo(APP_DB))

    archived = segment_objects(arch.storage)
    assert pending in archived and last in archived
    status = archive_service.status(arch.ctx)
    assert status.ok and status.holes == [] and status.newest == last
    cli = run_pgkeep("archive", "status", "--server", "--json", env=arch.env())
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)
    assert report["ok"] is True and report["server"]["failing"] is False, report
    assert report["server"]["archiveMode"] == "on" and report["server"]["lastArchivedWal"] == last, report
    text = run_pgkeep("archive", "status", "--server", env=arch.env())
    assert text.returncode == 0 and f"last archived:  {last} at " in text.stdout, text.stdout + text.stderr
    checked = run_pgkeep("check", "--physical", "--archive-test", "--json", env=arch.env())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checks = {c["name"]: c for c in json.loads(checked.stdout)["checks"]}
    assert all(c["status"] == "ok" for c in checks.values()), checks
    switched = checks["archive test"]["detail"].split(": ")[1].split()[0]
    assert switched > last and switched in segment_objects(arch.storage)
    registry = build_registry(arch.ctx)
    assert registry.get_sample_value("pgkeep_wal_archive_ok") == 1.0
    assert registry.get_sample_value("pgkeep_wal_archiver_failing") == 0.0
    assert registry.get_sample_value("pgkeep_wal_archiver_ready_files") == 0.0
    lag = registry.get_sample_value("pgkeep_wal_archive_newest_age_seconds")
    assert lag is not None and 0 <= lag < 120

    with restored(arch, "after-outage") as result:
        assert result.backup_id == backup_id
        assert diff_fingerprints(expected, restored_fingerprint(arch, result)) == []


def test_a_hole_in_the_archive_is_reported(pg15_archiving: Archiving, backup_id: str) -> None:
    arch = pg15_archiving
    copy = copy_archive(arch, "holed")
    names = sorted(segment_objects(copy))
    missing = names[-2]
    segment_objects(copy)[missing].unlink()
    result = run_pgkeep("archive", "status", "--json", env=arch.env(PGKEEP_STORAGE_URL=f"file://{copy}"))
    assert result.returncode == 1
    assert f'"{missing}"' in result.stdout


def test_same_segment_twice_is_fine_different_content_fails_loudly(pg15_archiving: Archiving, backup_id: str) -> None:
    arch = pg15_archiving
    name = sorted(segment_objects(arch.storage))[-1]
    work = arch.root / "repush"
    work.mkdir()
    give_to_server_user(work)
    original = work / name
    fetched = run_pgkeep("wal-fetch", "--config", str(arch.config), name, str(original), user="postgres")
    assert fetched.returncode == 0, fetched.stderr
    before = sorted(p.name for p in arch.storage.iterdir())

    again = run_pgkeep("wal-push", "--config", str(arch.config), str(original), user="postgres")
    assert again.returncode == 0, again.stderr

    data = bytearray(original.read_bytes())
    data[1000] ^= 0xFF
    original.write_bytes(bytes(data))
    clash = run_pgkeep("wal-push", "--config", str(arch.config), str(original), user="postgres")
    assert clash.returncode == 1
    assert "different content" in clash.stderr and "two clusters" in clash.stderr
    assert sorted(p.name for p in arch.storage.iterdir()) == before


def test_a_damaged_wal_object_is_refused_and_stops_the_restore(
    pg15_archiving: Archiving, backup_id: str, tmp_path: Path
) -> None:
    arch = pg15_archiving
    copy = copy_archive(arch, "damaged")
    objects = segment_objects(copy)
    first_needed = get_row(arch.ctx, backup_id).wal_start
    assert first_needed in objects
    # Same name, valid zstd, one byte of WAL changed: only the SHA-256 can tell.
    path = objects[first_needed]
    wal = bytearray(zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()))
    wal[4096] ^= 0x01
    path.write_bytes(zstandard.ZstdCompressor().compress(bytes(wal)))
    # Bytes flipped in the stored stream: the decompressor (or the digest) refuses them.
    other = objects[sorted(objects)[-1]]
    raw = bytearray(other.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    other.write_bytes(bytes(raw))
    env = {"PGKEEP_STORAGE_URL": f"file://{copy}"}

    for name in (first_needed, sorted(objects)[-1]):
        out = tmp_path / name
        result = run_pgkeep("wal-fetch", name, str(out), env=env)
        assert result.returncode > 125, (result.returncode, result.stderr)
        assert not out.exists()
    assert "damaged" in run_pgkeep("wal-fetch", first_needed, str(tmp_path / "x"), env=env).stderr
    assert run_pgkeep("wal-fetch", "0000000100000000000000FF", str(tmp_path / "y"), env=env).returncode == 1

    ctx = make_context(
        tmp_path / "ctx",
        arch.url,
        catalog_url=arch.ctx.settings.catalog_url,
        storage_url=f"file://{copy}",
        pg_bin_dir=PG15_BIN_DIR,
    )
    data_dir = arch.new_dir("from-damaged")
    try:
        with pytest.raises(RestoreFailedError) as info:
            restore_physical(ctx, PitrOptions(data_dir, RecoveryTarget.parse(latest=True), start=True))
        assert "recovery stopped before reaching the target" in info.value.message
        assert "damaged" in info.value.message
    finally:
        ctx.close()
        postmaster.stop(PG15_BIN_DIR, data_dir, "postgres", mode="immediate")
        shutil.rmtree(data_dir, ignore_errors=True)
