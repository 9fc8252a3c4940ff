"""Which base backup a --to-xid or --to-name restore uses, on PostgreSQL 15.

Two physical backups with writes between them; a transaction committed and a
restore point created between the two. The newest backup ended after both,
so recovery from it could never stop there: without ``--backup``, pgkeep
must pick the older one (by the next transaction id recorded at each
backup's end for an XID; the oldest backup for a restore point).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pitr_helpers import APP_DB, PG15_BIN_DIR, Archiving, run_pgkeep, switch_and_wait_archived

from helpers import get_row
from pgkeep.errors import RestoreFailedError
from pgkeep.fingerprint import Fingerprint, diff_fingerprints, fingerprint
from pgkeep.pgtools import postmaster
from pgkeep.services.physical import create_physical_backup
from pgkeep.services.pitr import PitrOptions, RecoveryTarget, next_xid_of, plan, restore_physical


@dataclass(frozen=True)
class TwoBackups:
    older: str
    newer: str
    xid: int  # committed between the two backups
    fp_xid: Fingerprint  # the state right after it committed
    point: str  # restore point created between the two backups
    fp_point: Fingerprint


def write(arch: Archiving, n: int = 300) -> None:
    arch.cluster.execute(
        "INSERT INTO events (payload) SELECT md5(random()::text) FROM generate_series(1, %s)", [n], dbname=APP_DB
    )


@pytest.fixture(scope="module")
def two_backups(pg15_archiving: Archiving) -> TwoBackups:
    arch = pg15_archiving
    conninfo = arch.cluster.admin_conninfo(APP_DB)
    arch.cluster.execute("CREATE TABLE events (id bigserial PRIMARY KEY, payload text NOT NULL)", dbname=APP_DB)
    write(arch)
    older = create_physical_backup(arch.ctx).id
    write(arch)
    with psycopg.connect(conninfo) as conn:  # one transaction: its id is the target
        conn.execute("INSERT INTO events (payload) VALUES ('the target transaction')")
        row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
        assert row is not None
        xid = int(row[0])
    fp_xid = fingerprint(conninfo)
    write(arch)
    arch.cluster.execute("SELECT pg_create_restore_point('between_backups')")
    fp_point = fingerprint(conninfo)
    write(arch)
    newer = create_physical_backup(arch.ctx).id
    write(arch)
    switch_and_wait_archived(arch.cluster)
    return TwoBackups(older, newer, xid, fp_xid, "between_backups", fp_point)


@pytest.fixture
def data_dir(pg15_archiving: Archiving, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A path for one restore; its server is stopped and the directory removed afterwards."""
    path = pg15_archiving.new_dir(f"choice-{request.node.name[:40]}")
    yield path
    postmaster.stop(PG15_BIN_DIR, path, "postgres", mode="immediate")
    shutil.rmtree(path, ignore_errors=True)


def restored_fingerprint(arch: Archiving, port: int) -> Fingerprint:
    conninfo = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=port, user="postgres", password=arch.cluster.superuser_password, dbname=APP_DB
    )
    return fingerprint(conninfo)


def test_each_backup_records_the_next_xid_at_its_end(pg15_archiving: Archiving, two_backups: TwoBackups) -> None:
    older = next_xid_of(get_row(pg15_archiving.ctx, two_backups.older))
    newer = next_xid_of(get_row(pg15_archiving.ctx, two_backups.newer))
    assert older is not None and newer is not None
    assert older <= two_backups.xid < newer


def test_to_xid_without_backup_uses_the_backup_that_ended_before_it(
    pg15_archiving: Archiving, two_backups: TwoBackups, data_dir: Path
) -> None:
    arch = pg15_archiving
    chosen = plan(arch.ctx, PitrOptions(data_dir, RecoveryTarget.parse(to_xid=str(two_backups.xid))))
    assert [row.id for row in chosen.chain] == [two_backups.older]
    # The command line, as an operator runs it.
    proc = run_pgkeep(
        "restore",
        "--kind",
        "physical",
        "--data-dir",
        str(data_dir),
        "--to-xid",
        str(two_backups.xid),
        "--start",
        "--json",
        env=arch.env(),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["backupId"] == two_backups.older and report["targetReached"] is True
    diff = diff_fingerprints(two_backups.fp_xid, restored_fingerprint(arch, report["port"]))
    assert diff == []


def test_to_name_without_backup_uses_the_oldest_backup(
    pg15_archiving: Archiving, two_backups: TwoBackups, data_dir: Path
) -> None:
    arch = pg15_archiving
    result = restore_physical(
        arch.ctx, PitrOptions(data_dir, RecoveryTarget.parse(to_name=two_backups.point), start=True)
    )
    assert result.backup_id == two_backups.older and result.target_reached and result.port is not None
    assert diff_fingerprints(two_backups.fp_point, restored_fingerprint(arch, result.port)) == []


def test_an_xid_before_the_named_backup_fails_loudly_with_the_way_out(
    pg15_archiving: Archiving, two_backups: TwoBackups, data_dir: Path
) -> None:
    target = RecoveryTarget.parse(to_xid=str(two_backups.xid))
    with pytest.raises(RestoreFailedError) as info:
        restore_physical(pg15_archiving.ctx, PitrOptions(data_dir, target, backup_id=two_backups.newer, start=True))
    assert "recovery stopped before reaching the target" in info.value.message
    assert "--backup an older one" in (info.value.hint or "")
