"""Backups from a standby (a common way to spare the primary), and restores that must go to the primary.

The standby is a real one: pg_basebackup -R of the session's cluster,
streaming from it on a port of its own.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from helpers import DbHandle, backup_rows, make_context, scalar, wait_for
from pgkeep.config import DumpFormat
from pgkeep.devcluster import DevCluster, free_ports
from pgkeep.errors import ExitCode, TargetUnsuitableError
from pgkeep.fingerprint import fingerprint
from pgkeep.pgtools import postmaster
from pgkeep.services.backup import create_backup
from pgkeep.services.check import CheckOptions, run_checks
from pgkeep.services.restore import RestoreOptions, resolve_backup, restore


@pytest.fixture
def standby(pg15: DevCluster, source_db: DbHandle) -> Iterator[str]:
    """A streaming standby of the session cluster (``source_db`` included): the URL of its copy of ``source_db``."""
    data = pg15.base_dir / f"standby-{uuid.uuid4().hex[:8]}"
    port = free_ports(1)[0]
    user = postmaster.server_user(None)
    source = ["-h", str(pg15.socket_dir), "-p", str(pg15.port), "-U", pg15.superuser]
    options = ["-D", str(data), "-R", "-X", "stream", "--checkpoint=fast"]
    postmaster.run_as([str(pg15.bin_dir / "pg_basebackup"), *source, *options], user)
    with (data / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
    try:
        postmaster.start(pg15.bin_dir, data, data / "standby.log", user)
        url = source_db.url.replace(f":{pg15.port}/", f":{port}/")
        wait_for(lambda: _accepts(url), "the standby to accept connections")
        yield url
    finally:
        postmaster.stop(pg15.bin_dir, data, user, mode="immediate")
        shutil.rmtree(data, ignore_errors=True)


def _accepts(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone())
    except psycopg.OperationalError:
        return False


def test_backups_come_from_a_standby_and_restore_on_the_primary(
    tmp_path: Path, source_db: DbHandle, empty_db: DbHandle, standby: str
) -> None:
    ctx = make_context(tmp_path, standby)
    try:
        custom = create_backup(ctx)
        parallel = create_backup(ctx, fmt=DumpFormat.DIRECTORY, jobs=2)
        for result in (custom, parallel):
            restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(target_url=empty_db.url, jobs=2))
            assert fingerprint(empty_db.conninfo) == fingerprint(source_db.conninfo)

        # Into the standby itself: refused before anything happens, by the dry run too, and
        # without the safety backup a restore would otherwise take first.
        rows = len(backup_rows(ctx))
        for dry_run in (True, False):
            with pytest.raises(TargetUnsuitableError) as err:
                restore(ctx, resolve_backup(ctx, custom.id), RestoreOptions(dry_run=dry_run))
            assert "the server is a standby (in recovery), read-only" in err.value.message
            assert "primary" in str(err.value.hint) and err.value.exit_code == ExitCode.CONFIG
        assert len(backup_rows(ctx)) == rows

        [server] = [c for c in run_checks(ctx, CheckOptions()) if c.name == "server"]
        assert server.status == "warn" and "a standby: backups can come from it" in server.detail
        assert "max_standby_streaming_delay (30s)" in server.detail and "-1" in str(server.hint)
        with psycopg.connect(standby, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET max_standby_streaming_delay = -1")
            conn.execute("ALTER SYSTEM SET max_standby_archive_delay = -1")
            conn.execute("SELECT pg_reload_conf()")
        wait_for(lambda: scalar(standby, "SHOW max_standby_streaming_delay") == "-1", "the reload")
        [server] = [c for c in run_checks(ctx, CheckOptions()) if c.name == "server"]
        assert server.status == "ok" and "a standby" in server.detail
    finally:
        ctx.close()
