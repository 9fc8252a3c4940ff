"""Retention with a recovery window: cleanup removes old backups and WAL, and what stays still restores.

Three physical backups A, B, C are taken for real; their catalogued times
are then moved back (A three days ago, B two, C one hour) so that with a
one-day window B is the backup the window needs, A is expired and unneeded,
and C is the newest.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pitr_helpers import (
    APP_DB,
    PG15_BIN_DIR,
    Archiving,
    restored,
    restored_fingerprint,
    switch_and_wait_archived,
)

from helpers import get_row, make_context
from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, utcnow
from pgkeep.fingerprint import diff_fingerprints, fingerprint
from pgkeep.services import archive as archive_service
from pgkeep.services.manage import cleanup_expired
from pgkeep.services.physical import create_physical_backup
from pgkeep.storage import local_path_from_url
from pgkeep.wal.naming import segment_key
from pgkeep.wal.status import list_archive


def add_rows(arch: Archiving, n: int) -> None:
    arch.cluster.execute("CREATE TABLE IF NOT EXISTS t (id serial PRIMARY KEY, v text)", dbname=APP_DB)
    arch.cluster.execute("INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, %s) g", [n], dbname=APP_DB)


def test_cleanup_keeps_the_window_and_removes_older_wal(pg15_archiving: Archiving, tmp_path: Path) -> None:
    arch = pg15_archiving
    ids = []
    for _ in range(3):
        add_rows(arch, 500)
        ids.append(create_physical_backup(arch.ctx).id)
        add_rows(arch, 500)
        switch_and_wait_archived(arch.cluster)
    expected = fingerprint(arch.cluster.admin_conninfo(APP_DB))
    a, b, c = ids
    now = utcnow()
    with arch.ctx.catalog.session() as session:
        for backup_id, age in ((a, timedelta(days=3)), (b, timedelta(days=2)), (c, timedelta(hours=1))):
            repo.update_backup(
                session,
                backup_id,
                started_at=now - age,
                backup_start_at=now - age,
                backup_end_at=now - age + timedelta(seconds=5),
                expires_at=now - timedelta(minutes=1),
            )
    ctx = make_context(
        tmp_path,
        arch.url,
        catalog_url=arch.ctx.settings.catalog_url,
        storage_url=arch.storage_url,
        pg_bin_dir=PG15_BIN_DIR,
        retention_daily=0,
        retention_weekly=0,
        retention_monthly=0,
        recovery_window_days=1,
    )
    try:
        b_start = get_row(ctx, b).wal_start
        assert b_start is not None
        older = [
            f.obj.file
            for f in list_archive(ctx.storage)
            if segment_key(f.obj.file) < segment_key(b_start) and not f.obj.file.endswith(".history")
        ]
        assert older, "the archive should hold WAL from before backup B"

        plan = cleanup_expired(ctx, dry_run=True)
        assert plan.deleted == [a] and sorted(plan.wal_deleted) == sorted(older)
        reasons = {d["id"]: d["reasons"] for d in plan.plan}
        assert any(r.startswith("recovery window") for r in reasons[b])

        done = cleanup_expired(ctx)
        assert done.deleted == [a] and sorted(done.wal_deleted) == sorted(older)
        assert get_row(ctx, a).status is BackupStatus.DELETED
        assert not local_path_from_url(get_row(ctx, a).storage_url or "").exists()
        remaining = {f.obj.file for f in list_archive(ctx.storage)}
        assert not remaining & set(older)
        status = archive_service.status(ctx)
        assert status.ok and status.oldest_needed == b_start

        for backup_id in (b, c):  # every kept backup restores to the end of the window
            with restored(arch, f"kept-{backup_id[:8]}", backup_id=backup_id) as result:
                assert diff_fingerprints(expected, restored_fingerprint(arch, result)) == [], backup_id
    finally:
        ctx.close()
