"""pgkeep check: readiness of catalog, storage, server, client tools, role access and archiving.

Run through the real command line against the session's PostgreSQL 15
cluster (which does not archive). Archiving clusters, and the WAL switch of
--archive-test, are tested in ``tests/pitr/test_wal_archiving.py``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_runner import Cli, assert_one_clear_line
from psycopg import sql
from pyrage import x25519

from helpers import DbHandle, dir_entries, fake_old_pg_dump_dir, make_context, s3_env, s3_overrides
from pgkeep.devcluster import DevCluster
from pgkeep.devs3 import DevS3
from pgkeep.errors import ExitCode
from pgkeep.services import check as check_service
from pgkeep.services.backup import create_backup

NAMES = ["catalog", "storage", "encryption", "server", "client tools", "access", "archiving"]


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def run_check(cli: Cli, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = cli.run("check", "--json", *args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_a_ready_installation_passes_and_leaves_nothing_behind(cli: Cli, backups_dir: Path) -> None:
    code, report = run_check(cli)
    assert code == 0 and report["ok"] is True, report
    checks = by_name(report)
    assert list(checks) == NAMES
    assert all(c["status"] == "ok" for c in checks.values()), report
    assert "wrote, read back and deleted a probe object" in checks["storage"]["detail"]
    assert "iB free" in checks["storage"]["detail"]
    assert checks["server"]["detail"].startswith("PostgreSQL 15.")
    assert "pg_dump 15." in checks["client tools"]["detail"] and "pg_restore 15." in checks["client tools"]["detail"]
    assert checks["archiving"]["detail"].startswith("archive_mode is off: logical backups only")
    assert dir_entries(backups_dir) == []  # the probe is gone

    text = cli.run("check")
    assert text.returncode == 0
    *lines, verdict = text.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * len(NAMES)
    assert verdict == f"ready ({len(NAMES)} ok, 0 warnings, 0 failed)"


def test_probes_left_by_an_interrupted_check_are_removed(cli: Cli, backups_dir: Path) -> None:
    backups_dir.mkdir(parents=True, exist_ok=True)
    two_hours_ago = time.time() - 7200
    for stale in ("pgkeep-check-killed1", "pgkeep-check-killed2"):
        (backups_dir / stale).write_bytes(b"probe")
        os.utime(backups_dir / stale, (two_hours_ago, two_hours_ago))
    (backups_dir / "pgkeep-check-running").write_bytes(b"probe")  # another check, writing right now
    code, report = run_check(cli)
    assert code == 0, report
    assert by_name(report)["storage"]["detail"].startswith(
        f"file://{backups_dir}: wrote, read back and deleted a probe object (and 2 left by an interrupted check)"
    )
    assert dir_entries(backups_dir) == ["pgkeep-check-running"]


def test_physical_requires_archiving(cli: Cli) -> None:
    code, report = run_check(cli, "--physical")
    assert code == int(ExitCode.FAILED) and report["ok"] is False
    archiving = by_name(report)["archiving"]
    assert archiving["status"] == "fail"
    assert archiving["detail"] == "physical backups need WAL archiving: the server has archive_mode = off"
    assert "archive_mode = on" in archiving["hint"]
    assert "pg_basebackup 15." in by_name(report)["client tools"]["detail"]
    replication = by_name(report)["replication"]
    assert replication["status"] == "ok" and replication["detail"].startswith(
        "a replication connection (as pg_basebackup opens) works: timeline 1, WAL at "
    )


@pytest.fixture
def backup_role(pg15: DevCluster, source_db: DbHandle) -> Iterator[tuple[str, str]]:
    """A login role that can read some of ``source_db`` but not all: (URL, role name)."""
    name = f"reader_{uuid.uuid4().hex[:8]}"
    pg15.create_role(name, "reader-pw-1")
    statements = [
        "CREATE TABLE public.hidden_t (id int)",
        "CREATE TABLE public.policed_t (id int)",
        "ALTER TABLE public.policed_t ENABLE ROW LEVEL SECURITY",
    ]
    for statement in statements:
        pg15.execute(statement, dbname=source_db.name)
    grant_everything = sql.SQL(
        """DO $$ DECLARE s text; BEGIN
          FOR s IN SELECT nspname FROM pg_namespace
                   WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, {role});
            EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', s, {role});
            EXECUTE format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', s, {role});
          END LOOP; END $$"""
    ).format(role=sql.Literal(name))
    pg15.execute(grant_everything, dbname=source_db.name)
    revoke = sql.SQL("REVOKE SELECT ON public.hidden_t FROM {}").format(sql.Identifier(name))
    pg15.execute(revoke, dbname=source_db.name)
    try:
        yield pg15.url(source_db.name, user=name, password="reader-pw-1"), name
    finally:
        pg15.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)), dbname=source_db.name)
        pg15.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_what_pg_dump_would_refuse_is_named(
    cli: Cli, pg15: DevCluster, source_db: DbHandle, backup_role: tuple[str, str]
) -> None:
    url, name = backup_role
    code, report = run_check(cli, env={"DATABASE_URL": url})
    assert code == int(ExitCode.FAILED)
    access = by_name(report)["access"]
    assert access["status"] == "fail"
    assert access["detail"].startswith("the role cannot read 1 table(s) or sequence(s) a backup dumps: public.hidden_t")

    # Readable now, but row-level security applies: pg_dump would refuse it too.
    pg15.execute(sql.SQL("GRANT SELECT ON public.hidden_t TO {}").format(sql.Identifier(name)), dbname=source_db.name)
    code, report = run_check(cli, env={"DATABASE_URL": url})
    access = by_name(report)["access"]
    assert code == int(ExitCode.FAILED) and access["status"] == "fail"
    assert "row-level security applies to the role on 1 table(s): public.policed_t" in access["detail"]
    assert "BYPASSRLS" in access["hint"]
    # ... and pg_dump does refuse it: the check is not stricter than the backup.
    backup = cli.run("backup", env={"DATABASE_URL": url})
    assert backup.returncode == int(ExitCode.FAILED) and "row-level security" in backup.stderr

    # Physical backups need a replication connection, which this role may not open.
    code, report = run_check(cli, "--physical", env={"DATABASE_URL": url})
    replication = by_name(report)["replication"]
    assert code == int(ExitCode.FAILED) and replication["status"] == "fail"
    assert "must be superuser or replication role to start walsender" in replication["detail"]
    assert "REPLICATION" in replication["hint"]

    pg15.execute(sql.SQL("ALTER ROLE {} BYPASSRLS").format(sql.Identifier(name)))
    code, report = run_check(cli, env={"DATABASE_URL": url})
    assert code == 0 and by_name(report)["access"]["status"] == "ok", report


def test_large_objects_the_role_cannot_read_are_named(
    cli: Cli, pg15: DevCluster, source_db: DbHandle, backup_role: tuple[str, str]
) -> None:
    url, name = backup_role
    role = sql.Identifier(name)
    for statement in [
        sql.SQL("GRANT SELECT ON public.hidden_t TO {}").format(role),
        sql.SQL("ALTER TABLE public.policed_t DISABLE ROW LEVEL SECURITY"),
        sql.SQL("GRANT pg_read_all_data TO {}").format(role),  # which does not cover large objects
    ]:
        pg15.execute(statement, dbname=source_db.name)
    oids = [
        int(row[0])
        for row in pg15.query("SELECT lo_from_bytea(0, 'x') FROM generate_series(1, 7)", dbname=source_db.name)
    ]
    code, report = run_check(cli, env={"DATABASE_URL": url})
    access = by_name(report)["access"]
    assert code == int(ExitCode.FAILED) and access["status"] == "fail", report
    named = ", ".join(str(oid) for oid in sorted(oids)[:5])
    assert access["detail"] == f"the role cannot read 7 large object(s): {named} and 2 more"
    assert "GRANT SELECT ON LARGE OBJECT" in access["hint"]
    # pg_dump refuses them as the check says.
    backup = cli.run("backup", env={"DATABASE_URL": url})
    assert backup.returncode == int(ExitCode.FAILED) and "permission denied for large object" in backup.stderr

    # One granted to the role, the others to PUBLIC: readable through either.
    pg15.execute(
        sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO {}").format(sql.Literal(oids[0]), role), dbname=source_db.name
    )
    for oid in oids[1:]:
        pg15.execute(
            sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO PUBLIC").format(sql.Literal(oid)), dbname=source_db.name
        )
    code, report = run_check(cli, env={"DATABASE_URL": url})
    assert code == 0 and by_name(report)["access"]["detail"].endswith(
        "every table, sequence and large object a backup dumps"
    )
    assert cli.run("backup", env={"DATABASE_URL": url}).returncode == 0


def test_old_client_tools_fail_with_the_fix(cli: Cli, tmp_path: Path) -> None:
    bin_dir = fake_old_pg_dump_dir(tmp_path / "oldbin")
    code, report = run_check(cli, env={"PGKEEP_PG_BIN_DIR": str(bin_dir)})
    tools = by_name(report)["client tools"]
    assert code == int(ExitCode.FAILED) and tools["status"] == "fail"
    assert "no pg_dump of version 15 or newer" in tools["detail"] and "PGKEEP_PG_BIN_DIR" in tools["hint"]


def test_an_unusable_storage_and_an_unreachable_server(offline_cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, report = run_check(offline_cli, env={"PGKEEP_STORAGE_URL": f"file://{blocker}/backups"})
    assert code == int(ExitCode.FAILED)
    checks = by_name(report)
    assert checks["catalog"]["status"] == "ok"
    assert checks["storage"]["status"] == "fail"
    assert "as the storage directory: Not a directory" in checks["storage"]["detail"]
    assert checks["server"]["status"] == "fail"
    assert checks["server"]["detail"].startswith("cannot connect to nobody@127.0.0.1:9/nowhere")
    assert [checks[n]["status"] for n in ("client tools", "access", "archiving")] == ["skip"] * 3
    text = offline_cli.run("check", env={"PGKEEP_STORAGE_URL": f"file://{blocker}/backups"})
    assert text.stdout.splitlines()[-1] == "NOT ready: fix what failed (2 ok, 0 warnings, 2 failed, 3 skipped)"


def test_a_backup_into_an_unusable_storage_directory_says_so(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    backup = cli.run("backup", env={"PGKEEP_STORAGE_URL": f"file://{blocker}/backups"})
    assert_one_clear_line(
        backup, int(ExitCode.FAILED), f"cannot use {blocker}/backups as the storage directory: Not a directory"
    )


def test_little_free_space_next_to_the_newest_backup_warns(
    tmp_path: Path, source_db: DbHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_context(tmp_path, source_db.url)
    try:
        backup = create_backup(ctx)
        assert backup.size
        usage = check_service.shutil.disk_usage(tmp_path)
        monkeypatch.setattr(check_service.shutil, "disk_usage", lambda path: usage._replace(free=backup.size * 3 // 2))
        storage = check_service.check_storage(ctx)
        assert storage.status == "warn", storage
        assert "less than 2x the newest backup" in storage.detail and storage.hint
        monkeypatch.setattr(check_service.shutil, "disk_usage", lambda path: usage._replace(free=backup.size * 3))
        assert check_service.check_storage(ctx).status == "ok"
    finally:
        ctx.close()


def test_s3_storage_is_probed_and_bad_credentials_fail(cli: Cli, devs3: DevS3) -> None:
    overrides = s3_overrides(devs3)
    code, report = run_check(cli, env=s3_env(overrides))
    storage = by_name(report)["storage"]
    assert code == 0 and storage["status"] == "ok", report
    assert storage["detail"] == f"{overrides['storage_url']}: wrote, read back and deleted a probe object"
    client = devs3.client()
    bucket, prefix = overrides["storage_url"].removeprefix("s3://").split("/", 1)
    assert client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount") == 0  # the probe is gone

    wrong = s3_env(overrides | {"s3_secret_access_key": "not-the-key"})
    code, report = run_check(cli, env=wrong)
    storage = by_name(report)["storage"]
    assert code == int(ExitCode.FAILED) and storage["status"] == "fail", report
    assert "not-the-key" not in json.dumps(report)


def test_encryption_keys_are_checked_against_the_recipients(cli: Cli, tmp_path: Path) -> None:
    ours, stranger = x25519.Identity.generate(), x25519.Identity.generate()
    recipients = f"{ours.to_public()},{x25519.Identity.generate().to_public()}"  # and an offline key
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# a comment\n{ours}\n")
    wrong_file = tmp_path / "wrong.txt"
    wrong_file.write_text(f"{stranger}\n")
    env = {"PGKEEP_AGE_RECIPIENTS": recipients}

    code, report = run_check(cli, env=env)  # no key here: a warning, not a failure
    encryption = by_name(report)["encryption"]
    assert code == 0 and encryption["status"] == "warn", report
    assert "encrypted (age) to 2 key(s)" in encryption["detail"] and "cannot verify" in encryption["detail"]

    code, report = run_check(cli, env={**env, "PGKEEP_AGE_IDENTITY_FILE": str(wrong_file)})
    encryption = by_name(report)["encryption"]
    assert code == int(ExitCode.FAILED) and encryption["status"] == "fail", report
    assert "nothing here can read the new backups" in encryption["detail"]
    assert str(stranger) not in json.dumps(report)  # a private key is never echoed

    code, report = run_check(cli, env={**env, "PGKEEP_AGE_IDENTITY_FILE": str(key_file)})
    encryption = by_name(report)["encryption"]
    assert code == 0 and encryption["status"] == "ok", report
    assert "holds 1 of them: this host reads them" in encryption["detail"]
    assert str(ours) not in json.dumps(report)


def test_an_unreachable_catalog_fails_without_its_password(cli: Cli) -> None:
    url = "postgresql+psycopg://keeper:catpw-secret@127.0.0.1:9/pgkeep"
    code, report = run_check(cli, env={"PGKEEP_CATALOG_URL": url})
    catalog = by_name(report)["catalog"]
    assert code == int(ExitCode.FAILED) and catalog["status"] == "fail", report
    assert catalog["detail"].startswith("cannot reach the catalog postgresql+psycopg://keeper:***@127.0.0.1:9/pgkeep")
    assert "catpw-secret" not in json.dumps(report)
    assert by_name(report)["server"]["status"] == "ok"  # the other checks still ran
