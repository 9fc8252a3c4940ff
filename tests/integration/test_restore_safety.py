"""Restores are all-or-nothing, restore only what is restorable, and ask first."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from helpers import (
    PG15_BIN_DIR,
    DbHandle,
    backup_rows,
    fake_old_pg_dump_dir,
    make_context,
    open_pipes,
    scalar,
    schema_snapshot,
    table_locked,
    write_script,
)
from pgkeep.catalog import repository as repo
from pgkeep.catalog.models import BackupStatus
from pgkeep.config import DumpFormat
from pgkeep.devcluster import DevCluster
from pgkeep.errors import (
    BackupFailedError,
    ExitCode,
    InvalidStateError,
    NotConfirmedError,
    PgkeepError,
    RestoreFailedError,
)
from pgkeep.fingerprint import fingerprint
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.manage import delete_backup
from pgkeep.services.restore import RestoreOptions, RestorePlan, resolve_backup, restore

# A CHECK that reads another table: pg_dump loads aa_child before zz_ref exists in the
# target, so the restore fails in the middle of loading data (a classic dump pitfall).
FAILS_ON_RESTORE = """
CREATE TABLE zz_ref (id int PRIMARY KEY);
CREATE FUNCTION public.ref_exists(int) RETURNS boolean LANGUAGE sql
    AS 'SELECT EXISTS (SELECT 1 FROM public.zz_ref WHERE id = $1)';
CREATE TABLE aa_child (id int CHECK (public.ref_exists(id)));
INSERT INTO zz_ref VALUES (1);
INSERT INTO aa_child VALUES (1);
"""


def snapshot(db: DbHandle) -> tuple[object, object]:
    return fingerprint(db.conninfo), schema_snapshot(db.conninfo)


@pytest.mark.parametrize("fmt", [DumpFormat.CUSTOM, DumpFormat.PLAIN], ids=lambda v: v.value)
def test_restore_failing_halfway_leaves_the_target_unchanged(
    ctx: Context, source_db: DbHandle, empty_db: DbHandle, fmt: DumpFormat
) -> None:
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute(FAILS_ON_RESTORE)
    backup_id = create_backup(ctx, fmt=fmt).id
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("UPDATE users SET display_name = 'after' WHERE id < 5")
    targets = {"live database": source_db, "other database": empty_db}
    with psycopg.connect(empty_db.conninfo) as conn:
        conn.execute("CREATE TABLE keep_me AS SELECT generate_series(1, 3) AS n")
    for label, target in targets.items():
        before = snapshot(target)
        pipes = open_pipes()
        with pytest.raises(RestoreFailedError) as info:
            restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=target.url))
        assert "violates check constraint" in str(info.value), label
        assert "nothing was changed" in str(info.value)
        assert "the backup itself is intact" in str(info.value)  # read to the end and checked
        assert info.value.exit_code is not ExitCode.OK
        assert info.value.backup_id == backup_id
        assert snapshot(target) == before, label
        assert open_pipes() == pipes, label


def test_restore_with_a_missing_role_fails_and_changes_nothing(
    ctx: Context, pg15: DevCluster, source_db: DbHandle, empty_db: DbHandle
) -> None:
    role = f"Owner-{uuid.uuid4().hex[:8]}"
    pg15.create_role(role, None, login=False)
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("CREATE TABLE owned (id int)")
        conn.execute(sql.SQL("ALTER TABLE owned OWNER TO {}").format(sql.Identifier(role)))
    backup_id = create_backup(ctx).id
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("DROP TABLE owned")
    pg15.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    with psycopg.connect(empty_db.conninfo) as conn:
        conn.execute("CREATE TABLE keep_me (id int)")
    before = snapshot(empty_db)
    for dry_run in (True, False):  # a dry run refuses it as the restore does
        with pytest.raises(PgkeepError, match=r"do(es)? not exist") as info:
            restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=empty_db.url, dry_run=dry_run))
        assert role in str(info.value)
        assert info.value.exit_code is not ExitCode.OK
        assert snapshot(empty_db) == before
    # Without ownership the same archive restores fine.
    restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=empty_db.url, no_owner=True))
    restored = fingerprint(empty_db.conninfo)
    assert restored.pop("public.owned")[0] == 0  # dropped from the source after the backup
    assert restored == fingerprint(source_db.conninfo)


def test_only_completed_backups_can_be_restored(ctx: Context, tmp_path: Path, source_db: DbHandle) -> None:
    refused = make_context(tmp_path, source_db.url, pg_bin_dir=fake_old_pg_dump_dir(tmp_path / "bin"))
    try:
        with pytest.raises(BackupFailedError) as info:
            create_backup(refused)
    finally:
        refused.close()
    failed_id = str(info.value.backup_id)
    deleted_id = create_backup(ctx).id
    delete_backup(ctx, deleted_id)
    in_progress_id = create_backup(ctx).id
    with ctx.catalog.session() as session:
        repo.update_backup(session, in_progress_id, status=BackupStatus.IN_PROGRESS)
    before = snapshot(source_db)
    for backup_id, status in (
        (failed_id, "FAILED"),
        (deleted_id, "DELETED"),
        (in_progress_id, "IN_PROGRESS"),
    ):
        with pytest.raises(InvalidStateError, match=f"is {status}; only COMPLETED") as err:
            resolve_backup(ctx, backup_id)
        assert err.value.exit_code is ExitCode.CONFLICT
    assert snapshot(source_db) == before
    assert sorted(r.status.value for r in backup_rows(ctx)) == ["DELETED", "FAILED", "IN_PROGRESS"]


def test_not_confirmed_changes_nothing(ctx: Context, source_db: DbHandle) -> None:
    backup_id = create_backup(ctx).id
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("DELETE FROM summaries")
    before = snapshot(source_db)
    plans: list[RestorePlan] = []

    def decline(plan: RestorePlan) -> bool:
        plans.append(plan)
        return False

    with pytest.raises(NotConfirmedError) as info:
        restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(), confirm=decline)
    assert info.value.exit_code is ExitCode.NOT_CONFIRMED
    assert snapshot(source_db) == before
    # The person was shown what would be replaced, without the password.
    assert len(plans) == 1 and source_db.name in plans[0].target
    assert "@" in plans[0].target and "p@ss" not in plans[0].target


def test_dry_run_verifies_and_changes_nothing(ctx: Context, source_db: DbHandle) -> None:
    backup_id = create_backup(ctx).id
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("DELETE FROM summaries")
    before = snapshot(source_db)
    outcome = restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(dry_run=True))
    assert outcome.dry_run
    assert outcome.plan is not None and outcome.plan.target.endswith(f"/{source_db.name}")
    assert snapshot(source_db) == before


def test_dry_run_checks_the_target_as_the_restore_would(
    ctx: Context, pg15: DevCluster, source_db: DbHandle, empty_db: DbHandle
) -> None:
    # The privilege check: test_restore_with_a_missing_role_fails_and_changes_nothing.
    backup_id = create_backup(ctx).id
    artifact = resolve_backup(ctx, backup_id)
    missing = empty_db.url.rsplit("/", 1)[0] + f"/pgkeep_missing_{uuid.uuid4().hex[:8]}"
    with pytest.raises(RestoreFailedError, match="does not exist") as info:
        restore(ctx, artifact, RestoreOptions(target_url=missing, dry_run=True))
    assert info.value.hint and "--create-db" in info.value.hint
    outcome = restore(ctx, artifact, RestoreOptions(target_url=missing, dry_run=True, create_database=True))
    assert outcome.dry_run and outcome.plan is not None
    created = "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgkeep_missing%'"
    assert scalar(pg15.admin_conninfo("postgres"), created) == 0


def test_psqls_error_is_reported_even_when_pg_restore_dies_of_its_exit_first(
    tmp_path: Path, source_db: DbHandle, empty_db: DbHandle
) -> None:
    """psql stops on an error and exits; pg_restore, writing into the closed pipe, dies of SIGPIPE.
    pgkeep may collect pg_restore's status before psql's: the cause is still psql's error."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in PG15_BIN_DIR.iterdir():
        (bin_dir / tool.name).symlink_to(tool)
    (bin_dir / "psql").unlink()
    # A psql that takes its first byte, closes its input (pg_restore then dies of SIGPIPE),
    # and reports its error a second later: the order the race can produce, every time.
    write_script(
        bin_dir / "psql",
        f'if [ "$1" = "--version" ]; then exec {PG15_BIN_DIR}/psql --version; fi\n'
        "head -c 1 >/dev/null\n"
        "exec 0<&-\n"
        "sleep 1\n"
        "echo 'psql:<stdin>:1: ERROR:  simulated failure after closing the input' >&2\n"
        "exit 3\n",
    )
    with psycopg.connect(source_db.conninfo) as conn:  # more than a pipe holds: pg_restore must block
        conn.execute("CREATE TABLE filler AS SELECT g, md5(g::text) AS h FROM generate_series(1, 60000) g")
    plain_ctx = make_context(tmp_path, source_db.url)
    try:
        backup_id = create_backup(plain_ctx, fmt=DumpFormat.CUSTOM).id
    finally:
        plain_ctx.close()
    ctx = make_context(tmp_path, source_db.url, pg_bin_dir=bin_dir)
    try:
        before = snapshot(empty_db)
        with pytest.raises(RestoreFailedError) as info:
            restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=empty_db.url, safety_backup=False))
        assert "simulated failure after closing the input" in str(info.value), str(info.value)
        assert "SIGPIPE" not in str(info.value)
        assert snapshot(empty_db) == before
    finally:
        ctx.close()


@pytest.mark.parametrize("jobs", [1, 2], ids=["one transaction", "parallel"])
def test_a_restore_held_up_by_a_session_gives_up_naming_it(
    tmp_path: Path, source_db: DbHandle, empty_db: DbHandle, jobs: int
) -> None:
    """An application's open transaction on a table: the restore waits PGKEEP_LOCK_WAIT_TIMEOUT, not forever."""
    ctx = make_context(tmp_path, source_db.url, lock_wait_timeout=1)
    try:
        backup_id = create_backup(ctx).id
        with psycopg.connect(empty_db.conninfo) as conn:
            conn.execute("CREATE TABLE in_use (id int)")
        before = snapshot(empty_db)
        with table_locked(empty_db.conninfo, "in_use", "ACCESS SHARE") as reader:
            reader_pid = reader.info.backend_pid
            with pytest.raises(RestoreFailedError) as info:
                options = RestoreOptions(target_url=empty_db.url, safety_backup=False, jobs=jobs)
                restore(ctx, resolve_backup(ctx, backup_id), options)
        message = str(info.value)
        assert f"waited 1 s for a table of {empty_db.name} another session uses" in message, message
        assert f"pid {reader_pid} holds public.in_use (user postgres, idle in transaction for " in message, message
        assert info.value.hint and "--atomic" in info.value.hint
        if jobs == 1:  # one transaction: rolled back, nothing changed
            assert snapshot(empty_db) == before
    finally:
        ctx.close()
