"""pgkeep backup, list, show, verify, delete and cleanup, through the real command line.

State the commands read is prepared in-process through the same catalog; what
the user sees (output, JSON shapes, exit codes) comes from the real ``pgkeep``.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from cli_runner import Cli, assert_one_clear_line
from typer.testing import CliRunner

import pgkeep.cli
from helpers import (
    DbHandle,
    backup_rows,
    dir_entries,
    fake_old_pg_dump_dir,
    get_row,
    make_context,
    stored_files,
)
from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus, BackupType, utcnow
from pgkeep.errors import BackupFailedError, ExitCode
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context

BACKUP_RESULT_KEYS = {"id", "filename", "size", "checksum", "duration", "storageUrl"}
EXIT_CODES = "Exit codes: 0 success; 1 operation failed; 2 bad arguments; 3 unknown backup or file"


def flat(text: str) -> str:
    return " ".join(text.split())


def test_backup_json_is_the_specs_backup_result(cli: Cli, backups_dir: Path, catalog: Context) -> None:
    result = cli.json("backup", "--type", "pre_migration", "--format", "plain", "--compression", "gzip")
    assert set(result) == BACKUP_RESULT_KEYS
    assert isinstance(result["size"], int) and result["size"] > 0
    assert isinstance(result["duration"], int)
    assert len(result["checksum"]) == 64
    assert result["filename"].endswith(".sql.gz")
    assert "-backup-pre_migration-" in result["filename"]
    assert result["storageUrl"] == (backups_dir / result["filename"]).as_uri()
    assert dir_entries(backups_dir) == stored_files(result["filename"])
    row = get_row(catalog, result["id"])
    assert (row.status, row.size, row.checksum) == (BackupStatus.COMPLETED, result["size"], result["checksum"])
    assert row.type is BackupType.PRE_MIGRATION


def test_backup_human_output_names_file_size_and_checksum(cli: Cli, backups_dir: Path, catalog: Context) -> None:
    result = cli.run("backup", "--format", "directory", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    [row] = backup_rows(catalog)
    name = row.filename
    assert name.endswith(".dir.tar.zst")
    assert dir_entries(backups_dir) == stored_files(name)
    assert "Backup completed" in result.stdout
    assert str(backups_dir / name) in result.stdout
    assert f"Size: {(backups_dir / name).stat().st_size} bytes" in result.stdout
    assert f"Checksum: {row.checksum}" in result.stdout


def test_list_and_show(offline_cli: Cli, tmp_path: Path, source_db: DbHandle) -> None:
    ctx = make_context(tmp_path, source_db.url)
    try:
        types = (BackupType.MANUAL, BackupType.SCHEDULED, BackupType.MANUAL)
        ids = [create_backup(ctx, backup_type=t).id for t in types]
        with ctx.catalog.session() as session:  # as a pg_basebackup would have recorded it
            repo.update_backup(session, ids[0], kind="physical")
    finally:
        ctx.close()

    runs = offline_cli.run_many(
        ("list", "--limit", "2", "--json"),
        ("list", "--limit", "2", "--page", "2", "--json"),
        ("list", "--type", "SCHEDULED", "--json"),
        ("show", ids[1], "--json"),
        ("list", "--kind", "physical", "--json"),
    )
    for run in runs:
        assert run.returncode == 0, run.stderr
    page1, page2, scheduled, shown, physical = (json.loads(run.stdout) for run in runs)
    assert [(b["id"], b["kind"]) for b in physical["backups"]] == [(ids[0], "physical")]

    assert set(page1) == {"backups", "pagination"}
    assert page1["pagination"] == {"page": 1, "limit": 2, "total": 3, "pages": 2}
    assert [b["id"] for b in page1["backups"]] == ids[::-1][:2]  # newest first
    assert [b["id"] for b in page2["backups"]] == [ids[0]]
    for backup in page1["backups"] + page2["backups"]:
        assert isinstance(backup["size"], int) and backup["size"] > 0
        assert backup["status"] == "COMPLETED"
        assert backup["metadata"]["tableCount"] == len(backup["metadata"]["tableCounts"])

    assert [b["id"] for b in scheduled["backups"]] == [ids[1]]
    assert scheduled["pagination"] == {"page": 1, "limit": 20, "total": 1, "pages": 1}

    assert shown == scheduled["backups"][0]  # one backup object, as in the list
    for key in (
        "id",
        "filename",
        "size",
        "type",
        "status",
        "storageUrl",
        "checksum",
        "metadata",
        "startedAt",
        "completedAt",
        "expiresAt",
        "errorMessage",
    ):
        assert key in shown
    assert shown["type"] == "SCHEDULED"


def test_unknown_or_malformed_id_is_one_clear_line_and_bad_arguments_are_usage_errors(
    offline_cli: Cli,
) -> None:
    lookups = [("show", str(uuid.uuid4())), ("verify", "not-a-uuid"), ("delete", "x' OR 1=1 --")]
    *found, bad = offline_cli.run_many(*lookups, ("backup", "--format", "zip"))
    for args, result in zip(lookups, found, strict=True):
        assert_one_clear_line(result, ExitCode.NOT_FOUND, "not found", args[1])
        assert result.stdout == ""
    assert bad.returncode == ExitCode.USAGE, bad.stderr
    assert "Traceback" not in bad.stderr and "internal error" not in bad.stderr
    assert "'zip' is not one of" in bad.stderr


def test_verify(offline_cli: Cli, tmp_path: Path, source_db: DbHandle, backups_dir: Path) -> None:
    ctx = make_context(tmp_path, source_db.url)
    try:
        backup = create_backup(ctx)
    finally:
        ctx.close()
    ok = offline_cli.json("verify", backup.id)
    assert ok["valid"] is True and ok["message"] == "Backup verified successfully"
    # On a terminal, a bar on stderr shows how much of the backup was read; --quiet hides it.
    code, out, shown = offline_cli.run_on_a_terminal("verify", backup.id)
    assert code == 0 and "verified successfully" in out, (out, shown)
    assert "reading the backup" in shown and "reading the backup" not in out
    code, out, shown = offline_cli.run_on_a_terminal("verify", backup.id, "--quiet")
    assert code == 0 and "reading the backup" not in shown

    path = backups_dir / backup.filename
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    result = offline_cli.run("verify", backup.id, "--json")
    assert result.returncode == ExitCode.INVALID
    report = json.loads(result.stdout)
    assert report["valid"] is False and "checksum mismatch" in report["message"]


def test_delete_removes_the_file_and_marks_deleted(
    offline_cli: Cli, tmp_path: Path, source_db: DbHandle, backups_dir: Path
) -> None:
    ctx = make_context(tmp_path, source_db.url)
    try:
        keep, gone = create_backup(ctx), create_backup(ctx)
        result = offline_cli.run("delete", gone.id)
        assert result.returncode == 0, result.stderr
        assert "deleted" in result.stdout.lower()
        assert dir_entries(backups_dir) == stored_files(keep.filename)
        assert get_row(ctx, gone.id).status is BackupStatus.DELETED
        assert get_row(ctx, keep.id).status is BackupStatus.COMPLETED
    finally:
        ctx.close()


def test_cleanup_never_deletes_the_newest_completed_backup(
    offline_cli: Cli, tmp_path: Path, source_db: DbHandle, backups_dir: Path
) -> None:
    ctx = make_context(tmp_path, source_db.url)
    failing = make_context(tmp_path, source_db.url, pg_bin_dir=fake_old_pg_dump_dir(tmp_path / "bin"))
    try:
        old = create_backup(ctx)
        with pytest.raises(BackupFailedError) as info:
            create_backup(failing)
        newest = create_backup(ctx)
        with ctx.catalog.session() as session:  # everything expired a day ago
            for row in repo.all_backups(session):
                row.expires_at = utcnow() - timedelta(days=1)
            session.commit()
        failed_id = str(info.value.backup_id)

        plan = offline_cli.json("cleanup", "--dry-run")
        assert plan["deletedCount"] == 2 and plan["dryRun"] is True
        assert sorted(plan["deletedIds"]) == sorted([old.id, failed_id])
        assert dir_entries(backups_dir) == stored_files(old.filename, newest.filename)
        assert {r.status for r in backup_rows(ctx)} == {BackupStatus.COMPLETED, BackupStatus.FAILED}

        done = offline_cli.json("cleanup")
        assert done["deletedCount"] == 2 and done["dryRun"] is False
        assert dir_entries(backups_dir) == stored_files(newest.filename)
        statuses = {r.id: r.status for r in backup_rows(ctx)}
        assert statuses == {
            old.id: BackupStatus.DELETED,
            failed_id: BackupStatus.DELETED,
            newest.id: BackupStatus.COMPLETED,
        }
    finally:
        failing.close()
        ctx.close()


def _all_command_paths() -> list[list[str]]:
    """Every command and group, after importing every module of pgkeep.cli (as run() does)."""
    for module in pkgutil.iter_modules(pgkeep.cli.__path__):
        importlib.import_module(f"pgkeep.cli.{module.name}")
    from pgkeep.cli.main import app

    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_every_commands_help_lists_exit_codes() -> None:
    from pgkeep.cli.main import app

    paths = _all_command_paths()
    names = {" ".join(p) for p in paths}
    assert {"backup", "list", "show", "verify", "delete", "cleanup", "restore", "db upgrade"} <= names
    standard = {"", "backup", "list", "show", "verify", "delete", "cleanup", "restore", "db", "db upgrade"}
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        text = flat(result.output)
        # Some commands (e.g. an archive_command) have codes of their own; all list them.
        assert "Exit codes:" in text, path
        if " ".join(path) in standard:
            assert EXIT_CODES in text, path
            assert "4 a backup of this database is already in progress" in text, path
            assert "7 restore not confirmed" in text, path


def test_tables_never_cut_an_id_short(cli: Cli, catalog: Context) -> None:
    """An id with an ellipsis cannot be copied into `show`, `restore` or `revoke-token`."""
    ids = [cli.json("backup")["id"] for _ in range(2)]
    filenames = [get_row(catalog, backup_id).filename for backup_id in ids]
    narrow = cli.run("list", env={"COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    assert all(backup_id in narrow.stdout for backup_id in ids) and "…" not in narrow.stdout
    assert max(len(line.rstrip()) for line in narrow.stdout.splitlines()) <= 80
    assert "KiB" in narrow.stdout  # sizes for people
    wide = cli.run("list", env={"COLUMNS": "200"}).stdout
    assert all(backup_id in wide for backup_id in ids) and all(name in wide for name in filenames)

    shown = cli.run("show", ids[0]).stdout.splitlines()
    assert shown[0].split() == ["backup:", ids[0]] and shown[1].split() == ["status:", "COMPLETED"]
    assert any(line.split()[:2] == ["sha256:", get_row(catalog, ids[0]).checksum] for line in shown)
    assert not any("None" in line or "{" in line for line in shown)

    plan = cli.run("cleanup", "--dry-run", env={"COLUMNS": "80"}).stdout
    assert all(backup_id in plan for backup_id in ids) and "…" not in plan

    made = json.loads(cli.run("admin", "create-token", "--name", "nightly ci job", "--role", "viewer", "--json").stdout)
    timed = cli.run("admin", "create-token", "--name", "contractor", "--role", "viewer", "--expires-days", "3")
    assert timed.returncode == 0
    assert cli.run("admin", "revoke-token", made["id"]).returncode == 0
    tokens = cli.run("admin", "list-tokens", env={"COLUMNS": "80"}).stdout
    assert made["id"] in tokens and "…" not in tokens
    assert "revoked " in tokens and "expires " in tokens
