"""pgkeep restore through the real command line: confirmation, errors and exit codes."""

from __future__ import annotations

import signal
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from cli_runner import Cli, assert_one_clear_line

from helpers import (
    DbHandle,
    add_long_values,
    fake_old_pg_dump_dir,
    get_row,
    make_context,
    schema_snapshot,
    table_locked,
    toast_methods,
    wait_for,
)
from pgkeep.config import DumpFormat
from pgkeep.errors import BackupFailedError, ExitCode
from pgkeep.fingerprint import fingerprint
from pgkeep.services.backup import create_backup


def take_backup(tmp_path: Path, db: DbHandle, **kwargs: object) -> tuple[str, Path]:
    """A backup made in-process into the CLI's catalog; returns its id and file."""
    ctx = make_context(tmp_path, db.url)
    try:
        result = create_backup(ctx, **kwargs)  # type: ignore[arg-type]
        return result.id, tmp_path / "backups" / get_row(ctx, result.id).filename
    finally:
        ctx.close()


def state(db: DbHandle) -> tuple[object, object]:
    return fingerprint(db.conninfo), schema_snapshot(db.conninfo)


def test_restore_without_yes_and_without_a_terminal_refuses(cli: Cli, tmp_path: Path, source_db: DbHandle) -> None:
    backup_id, _ = take_backup(tmp_path, source_db)
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("DELETE FROM summaries")
    before = state(source_db)
    result = cli.run("restore", backup_id)  # stdin is not a terminal
    assert_one_clear_line(result, ExitCode.NOT_CONFIRMED, "no terminal", "--yes")
    assert state(source_db) == before


def test_restore_with_yes_into_another_database(
    cli: Cli, tmp_path: Path, source_db: DbHandle, empty_db: DbHandle
) -> None:
    backup_id, _ = take_backup(tmp_path, source_db, fmt=DumpFormat.PLAIN)
    result = cli.run("restore", backup_id, "--yes", "--target-url", empty_db.url)
    assert result.returncode == 0, result.stderr
    assert "restored successfully" in result.stdout
    assert empty_db.name in result.stdout
    assert state(empty_db) == state(source_db)


def test_restore_of_a_corrupt_backup_is_refused_and_changes_nothing(
    cli: Cli, tmp_path: Path, source_db: DbHandle
) -> None:
    backup_id, path = take_backup(tmp_path, source_db)
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("DELETE FROM summaries")
    before = state(source_db)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    result = cli.run("restore", backup_id, "--yes")
    assert_one_clear_line(result, ExitCode.INVALID, "checksum mismatch")
    assert "restored successfully" not in result.stdout
    assert state(source_db) == before


def test_restore_failing_halfway_exits_non_zero_with_the_cause(cli: Cli, tmp_path: Path, source_db: DbHandle) -> None:
    with psycopg.connect(source_db.conninfo) as conn:
        # A CHECK reading another table: loading aa_child fails while zz_ref is still empty.
        conn.execute(
            "CREATE TABLE zz_ref (id int PRIMARY KEY);"
            "CREATE FUNCTION public.ref_exists(int) RETURNS boolean LANGUAGE sql"
            " AS 'SELECT EXISTS (SELECT 1 FROM public.zz_ref WHERE id = $1)';"
            "CREATE TABLE aa_child (id int CHECK (public.ref_exists(id)));"
            "INSERT INTO zz_ref VALUES (1); INSERT INTO aa_child VALUES (1);"
        )
    backup_id, _ = take_backup(tmp_path, source_db, fmt=DumpFormat.PLAIN)
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("DROP TABLE aa_child; UPDATE users SET role = 'admin'")
    before = state(source_db)
    result = cli.run("restore", backup_id, "--yes")
    assert result.returncode == ExitCode.FAILED, (result.stdout, result.stderr)
    assert "violates check constraint" in result.stderr
    assert "nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert "restored successfully" not in result.stdout
    assert state(source_db) == before


def test_restore_of_a_failed_backup_is_refused(cli: Cli, tmp_path: Path, source_db: DbHandle) -> None:
    ctx = make_context(tmp_path, source_db.url, pg_bin_dir=fake_old_pg_dump_dir(tmp_path / "bin"))
    try:
        try:
            create_backup(ctx)
        except BackupFailedError as exc:
            failed_id = str(exc.backup_id)
    finally:
        ctx.close()
    before = state(source_db)
    result = cli.run("restore", failed_id, "--yes")
    assert_one_clear_line(result, ExitCode.CONFLICT, "FAILED", "only COMPLETED")
    assert state(source_db) == before


def blocked_backend(conninfo: str, dbname: str) -> int | None:
    """Server pid of a session of ``dbname`` waiting for a lock, if any."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", (dbname,)
        ).fetchone()
    return int(row[0]) if row else None


def test_sigterm_mid_restore_rolls_back_and_exits_143(
    cli: Cli, tmp_path: Path, source_db: DbHandle, empty_db: DbHandle
) -> None:
    backup_id, _ = take_backup(tmp_path, source_db)
    with psycopg.connect(empty_db.conninfo) as conn:
        conn.execute("CREATE TABLE lock_me (id int)")
    before = state(empty_db)
    # The restore's first statement drops lock_me: it waits while we hold a lock on it.
    with table_locked(empty_db.conninfo, "lock_me", "ACCESS SHARE"):
        proc = cli.popen("restore", backup_id, "--yes", "--no-safety-backup", "--target-url", empty_db.url)
        wait_for(
            lambda: proc.poll() is not None or blocked_backend(source_db.conninfo, empty_db.name),
            "the restore to wait for the lock",
        )
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    assert state(empty_db) == before  # rolled back: nothing of the backup, lock_me still there


def test_a_restore_on_a_terminal_shows_how_much_of_the_backup_it_has_read(
    cli: Cli, tmp_path: Path, source_db: DbHandle, empty_db: DbHandle
) -> None:
    backup_id, _ = take_backup(tmp_path, source_db)
    code, out, shown = cli.run_on_a_terminal("restore", backup_id, "--yes", "--target-url", empty_db.url)
    assert code == 0, (out, shown)
    assert "restored successfully" in out
    assert "reading the backup" in shown
    assert "reading the backup" not in out  # the bar goes to stderr only
    assert state(empty_db) == state(source_db)

    code, out, shown = cli.run_on_a_terminal("restore", backup_id, "--dry-run", "--quiet")
    assert code == 0, (out, shown)
    assert "Dry run" in out
    assert "reading the backup" not in shown


def test_toast_compression_option(cli: Cli, tmp_path: Path, source_db: DbHandle, empty_db: DbHandle) -> None:
    add_long_values(source_db.conninfo)
    backup_id, _ = take_backup(tmp_path, source_db)
    result = cli.run("restore", backup_id, "--yes", "--target-url", empty_db.url, "--toast-compression", "server")
    assert result.returncode == 0, result.stderr
    assert toast_methods(empty_db.conninfo) == ("pglz", "pglz")
    assert "compressed with" not in result.stdout
    result = cli.run("restore", backup_id, "--yes", "--target-url", empty_db.url)
    assert result.returncode == 0, result.stderr
    assert toast_methods(empty_db.conninfo) == ("lz4", "pglz")
    assert "Long values will be compressed with lz4" in result.stdout  # said before anything changes
    result = cli.run("restore", backup_id, "--yes", "--target-url", empty_db.url, "--toast-compression", "zstd")
    assert result.returncode == ExitCode.USAGE and "zstd" in result.stderr
    # A dry run looks at the target too, and says what the restore would do there.
    result = cli.run("restore", backup_id, "--dry-run", "--target-url", empty_db.url)
    assert result.returncode == 0, result.stderr
    password = urlsplit(empty_db.url).password
    assert password and password not in result.stdout
    [said] = [line for line in result.stdout.splitlines() if "Would restore into" in line]
    assert said.endswith(f"/{empty_db.name}")
    assert "Long values will be compressed with lz4" in result.stdout
    dry = cli.json("restore", backup_id, "--dry-run", "--target-url", empty_db.url, "--toast-compression", "server")
    assert dry["dryRun"] is True and dry["target"] == said.split("Would restore into ")[1]
    assert dry["toastCompression"] is None  # the server's default
    assert dry["otherSessions"] == 0 and "other session" not in result.stdout
    # Someone is connected to the target: the dry run says what that means for the restore.
    with psycopg.connect(empty_db.conninfo), psycopg.connect(empty_db.conninfo):
        result = cli.run("restore", backup_id, "--dry-run", "--target-url", empty_db.url)
        dry = cli.json("restore", backup_id, "--dry-run", "--target-url", empty_db.url)
    assert result.returncode == 0, result.stderr
    assert "⚠️  2 other sessions are connected to the target: a table one of them uses holds" in result.stdout
    assert dry["otherSessions"] == 2
    missing = empty_db.url.rsplit("/", 1)[0] + "/pgkeep_no_such_db"
    result = cli.run("restore", backup_id, "--dry-run", "--target-url", missing)
    assert_one_clear_line(result, ExitCode.FAILED, "pgkeep_no_such_db does not exist", "--create-db")
    result = cli.run("restore", "--kind", "physical", "--data-dir", str(tmp_path / "d"), "--toast-compression", "lz4")
    assert result.returncode == ExitCode.USAGE and "Traceback" not in result.stderr
    assert "--toast-compression is for logical restores" in result.stderr


def test_a_pg_dump_directory_is_refused_with_how_to_restore_it(
    cli: Cli, tmp_path: Path, source_db: DbHandle, empty_db: DbHandle
) -> None:
    """`restore --file DIR` said "backup file not found: ." of a directory that exists."""
    import subprocess

    dump = tmp_path / "external"
    subprocess.run(["/usr/lib/postgresql/15/bin/pg_dump", "-Fd", "-f", str(dump), "-d", source_db.conninfo], check=True)
    refused = cli.run("restore", "--file", str(dump), "--dry-run")
    line = assert_one_clear_line(refused, int(ExitCode.USAGE), f"{dump} is a directory")
    assert "tar -C" in line
    tar = tmp_path / "external.dir.tar"
    subprocess.run(["tar", "-C", str(dump), "-cf", str(tar), "."], check=True)  # as the hint says
    done = cli.run("restore", "--file", str(tar), "--yes", "--target-url", empty_db.url)
    assert done.returncode == 0, done.stderr
    assert fingerprint(empty_db.conninfo) == fingerprint(source_db.conninfo)
