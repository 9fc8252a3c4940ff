"""Failures seen from the command line: exit codes, one clear line, no secrets, no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from cli_runner import Cli, assert_one_clear_line

from helpers import (
    DbHandle,
    backup_rows,
    blocked_pg_dump_backend,
    child_pids,
    dir_entries,
    fake_old_pg_dump_dir,
    process_gone,
    stored_files,
    table_locked,
    wait_for,
)
from pgkeep.catalog.db import Catalog
from pgkeep.catalog.models import BackupStatus
from pgkeep.devcluster import DevCluster
from pgkeep.errors import ExitCode
from pgkeep.services.context import Context


def test_wrong_password_fails_clearly_without_showing_it(
    cli: Cli, pg15: DevCluster, source_db: DbHandle, backups_dir: Path, catalog: Context
) -> None:
    wrong = pg15.superuser_password + "!"
    result = cli.run("backup", env={"DATABASE_URL": pg15.url(source_db.name, password=wrong)})
    line = assert_one_clear_line(result, ExitCode.FAILED, "password authentication failed")
    for secret in (wrong, quote(wrong, safe=""), pg15.superuser_password):
        assert secret not in result.stderr and secret not in result.stdout
    [row] = backup_rows(catalog)
    assert row.status is BackupStatus.FAILED and row.error_message in line
    assert dir_entries(backups_dir) == []


def test_pg_dump_older_than_the_server_is_a_configuration_error(
    cli: Cli, tmp_path: Path, backups_dir: Path, catalog: Context
) -> None:
    bin_dir = fake_old_pg_dump_dir(tmp_path / "bin", "14.1")
    result = cli.run("backup", "--json", env={"PGKEEP_PG_BIN_DIR": str(bin_dir)})
    assert_one_clear_line(result, ExitCode.CONFIG, "PostgreSQL 15", "14.1", "PGKEEP_PG_BIN_DIR")
    assert [r.status for r in backup_rows(catalog)] == [BackupStatus.FAILED]
    assert dir_entries(backups_dir) == []


@dataclass
class BlockedBackup:
    """A `pgkeep backup --json` process whose pg_dump waits for ``lock``."""

    proc: subprocess.Popen[str]
    lock: psycopg.Connection

    def finish(self) -> subprocess.CompletedProcess[str]:
        self.lock.rollback()
        out, err = self.proc.communicate(timeout=60)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


@pytest.fixture
def blocked_cli_backup(cli: Cli, source_db: DbHandle) -> Iterator[BlockedBackup]:
    """`pgkeep backup` in its own process, held mid-run by a table lock."""
    with table_locked(source_db.conninfo) as lock:
        proc = cli.popen("backup", "--json")
        try:
            wait_for(
                lambda: proc.poll() is not None or blocked_pg_dump_backend(source_db.conninfo, source_db.name),
                "pgkeep's pg_dump to wait for the lock",
            )
            assert proc.poll() is None, proc.communicate()
            yield BlockedBackup(proc, lock)
        finally:
            lock.rollback()
            if proc.poll() is None:
                proc.communicate(timeout=60)


def test_second_backup_process_is_refused_with_its_own_exit_code(
    cli: Cli,
    source_db: DbHandle,
    backups_dir: Path,
    catalog: Context,
    blocked_cli_backup: BlockedBackup,
) -> None:
    second = cli.run("backup")
    assert_one_clear_line(second, ExitCode.BUSY, f"a backup of {source_db.name} is already in progress")
    assert [r.status for r in backup_rows(catalog)] == [BackupStatus.IN_PROGRESS]  # the first's

    first = blocked_cli_backup.finish()
    assert first.returncode == 0, first.stderr
    rows = backup_rows(catalog)
    assert [(r.id, r.status) for r in rows] == [(json.loads(first.stdout)["id"], BackupStatus.COMPLETED)]
    assert dir_entries(backups_dir) == stored_files(rows[0].filename)


def test_sigterm_aborts_a_backup_cleanly(
    blocked_cli_backup: BlockedBackup, backups_dir: Path, catalog: Context
) -> None:
    # A supervisor's stop (systemd, timeout, Kubernetes): the same clean-up as Ctrl-C,
    # not a dead process whose row waits for crash recovery.
    proc = blocked_cli_backup.proc
    [pg_dump] = wait_for(lambda: child_pids(proc.pid, "pg_dump"), "the pg_dump child")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    wait_for(lambda: process_gone(pg_dump), "pg_dump to be stopped")
    [row] = backup_rows(catalog)
    assert row.status is BackupStatus.FAILED
    assert row.error_message == "terminated (SIGTERM)"
    assert dir_entries(backups_dir) == []


def test_children_die_with_a_killed_pgkeep(blocked_cli_backup: BlockedBackup) -> None:
    proc = blocked_cli_backup.proc
    [pg_dump] = wait_for(lambda: child_pids(proc.pid, "pg_dump"), "the pg_dump child")
    environ = Path(f"/proc/{pg_dump}/environ").read_bytes().split(b"\0")
    [passfile] = [v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"PGPASSFILE=")]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    wait_for(lambda: process_gone(pg_dump), "pg_dump to die with its parent")
    # No cleanup ran, and no password is left on disk: the passfile never had a name
    # pg_dump used (it reads an inherited descriptor).
    assert passfile.startswith("/dev/fd/") or not Path(passfile).exists(), passfile


@pytest.fixture
def empty_pg_catalog(pg15: DevCluster) -> Iterator[str]:
    name = f"catalog_{uuid.uuid4().hex[:12]}"
    pg15.create_database(name)
    try:
        yield pg15.url(name)
    finally:
        pg15.drop_database(name)


def test_postgresql_catalog_behind_is_refused_until_db_upgrade(offline_cli: Cli, empty_pg_catalog: str) -> None:
    env = {"PGKEEP_CATALOG_URL": empty_pg_catalog}
    refused = offline_cli.run("list", env=env)
    assert_one_clear_line(refused, ExitCode.CONFIG, "pgkeep db upgrade")
    upgraded = offline_cli.run("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    Catalog(empty_pg_catalog).dispose()  # now at head: accepted


def test_exit_statuses_survive_the_fast_exit(offline_cli: Cli) -> None:
    """pgkeep leaves without interpreter teardown; its statuses and output must not change."""
    usage = offline_cli.run("list", "--no-such-option")
    assert usage.returncode == 2 and "No such option" in usage.stderr
    # As restore_command, a usage error must abort recovery (status above 125), not read
    # as "this WAL file is not in the archive" (1).
    assert offline_cli.run("wal-fetch").returncode == 128
    missing = offline_cli.run("show", str(uuid.uuid4()))
    assert missing.returncode == int(ExitCode.NOT_FOUND), missing.stderr
    listed = offline_cli.run("list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["backups"] == []
