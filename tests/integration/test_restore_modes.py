"""Safe restores: atomic swap, selective restore, globals and the privilege check before anything changes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from helpers import DbHandle, make_context, make_settings, scalar, wait_for
from pgkeep.config import DumpFormat
from pgkeep.errors import InsufficientPrivilegeError, InvalidRequestError, RestoreFailedError
from pgkeep.fingerprint import fingerprint
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.restore import RestoreOptions, resolve_backup, restore

PGKEEP = str(Path(sys.executable).parent / "pgkeep")


@pytest.fixture
def ctx(tmp_path: Path, source_db: DbHandle):  # type: ignore[no-untyped-def]
    context = make_context(tmp_path, source_db.url)
    yield context
    context.close()


def _exec(conninfo: str, query: str) -> None:
    with psycopg.connect(conninfo) as conn:
        conn.execute(query)  # type: ignore[arg-type]


def _databases(conninfo: str, pattern: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,))]


def test_atomic_restore_swaps_in_the_backup_and_ends_other_sessions(ctx: Context, source_db: DbHandle) -> None:
    backed_up = fingerprint(source_db.conninfo)
    result = create_backup(ctx)
    _exec(source_db.conninfo, "DELETE FROM summaries")
    bystander = psycopg.connect(source_db.conninfo, autocommit=True)
    try:
        outcome = restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(atomic=True))
        assert outcome.terminated_sessions >= 1
        with pytest.raises(psycopg.OperationalError):
            bystander.execute("SELECT 1")
    finally:
        bystander.close()
    assert fingerprint(source_db.conninfo) == backed_up
    assert outcome.safety_backup_id is not None
    assert _databases(source_db.conninfo, "%\\_pgkeep\\_%") == []


def test_atomic_restore_killed_halfway_leaves_the_original_untouched(tmp_path: Path, source_db: DbHandle, pg15) -> None:  # type: ignore[no-untyped-def]
    # An index whose build sleeps makes the restore reliably slow at one point.
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute(
            "CREATE FUNCTION slow_key(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE "
            "AS $$ BEGIN PERFORM pg_sleep(0.5); RETURN i; END $$"
        )
        conn.execute("CREATE TABLE slow_t AS SELECT g AS id FROM generate_series(1, 6) g")
        conn.execute("CREATE INDEX slow_idx ON slow_t (slow_key(id))")
    ctx = make_context(tmp_path, source_db.url)
    try:
        result = create_backup(ctx)
    finally:
        ctx.close()
    _exec(source_db.conninfo, "DELETE FROM summaries WHERE id % 2 = 0")
    before = fingerprint(source_db.conninfo)
    settings = make_settings(tmp_path, source_db.url)
    env = {
        **os.environ,
        "DATABASE_URL": source_db.url,
        "PGKEEP_CATALOG_URL": settings.catalog_url,
        "PGKEEP_STORAGE_URL": settings.storage_url,
        "PGKEEP_STATE_DIR": str(settings.state_dir),
    }
    proc = subprocess.Popen(
        [PGKEEP, "restore", result.id, "--yes", "--atomic", "--no-safety-backup"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Wait until the new database is being built (the slow index is in progress).
        wait_for(
            lambda: scalar(
                pg15.admin_conninfo(),
                sql.SQL(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname LIKE '%pgkeep_new%' AND query LIKE '%slow_idx%'"
                ),
            ),
            "the restore to build the slow index",
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    # The original is exactly as it was and still accepts connections.
    assert fingerprint(source_db.conninfo) == before
    assert scalar(source_db.conninfo, "SELECT count(*) FROM users") > 0
    # The next atomic restore clears the leftover and succeeds.
    ctx = make_context(tmp_path, source_db.url)
    try:
        restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(atomic=True, safety_backup=False))
    finally:
        ctx.close()
    assert fingerprint(source_db.conninfo)["public.summaries"][0] == 1000
    assert _databases(source_db.conninfo, "%\\_pgkeep\\_%") == []


def test_selective_restore_brings_back_exactly_the_chosen_tables_next_to_live_data(
    ctx: Context, source_db: DbHandle
) -> None:
    backed_up = fingerprint(source_db.conninfo)
    result = create_backup(ctx)
    _exec(source_db.conninfo, "DELETE FROM summaries WHERE id <= 10")  # rows deleted by mistake
    _exec(source_db.conninfo, "UPDATE users SET email = 'changed@example.com' WHERE id = 1")
    live = fingerprint(source_db.conninfo)

    # Into the original schema, an existing table is refused before anything changes.
    with pytest.raises(InvalidRequestError, match="exists in the target"):
        restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(tables=("public.summaries",)))

    outcome = restore(
        ctx, resolve_backup(ctx, result.id), RestoreOptions(tables=("summaries",), into_schema="recovered")
    )
    assert "recovered.summaries" in outcome.message
    assert outcome.safety_backup_id is None
    after = fingerprint(source_db.conninfo)
    # The recovered copy is the backed-up table; everything live is untouched.
    # (Only the table and its data come back, not its indexes: compare rows, not the PK-ordered hash.)
    assert after["recovered.summaries"][0] == backed_up["public.summaries"][0]
    assert (
        scalar(
            source_db.conninfo,
            "SELECT count(*) FROM (SELECT * FROM public.summaries EXCEPT SELECT * FROM recovered.summaries) x",
        )
        == 0
    )
    assert {k: v for k, v in after.items() if not k.startswith("recovered.")} == live
    assert sorted(k for k in after if k.startswith("recovered.")) == ["recovered.summaries"]
    missing = scalar(
        source_db.conninfo,
        "SELECT count(*) FROM recovered.summaries r WHERE NOT EXISTS "
        "(SELECT 1 FROM public.summaries s WHERE s.id = r.id)",
    )
    assert missing == 10


def test_selective_restore_of_a_dropped_schema(ctx: Context, source_db: DbHandle) -> None:
    from helpers import WEIRD_SCHEMA, WEIRD_TABLE

    backed_up = fingerprint(source_db.conninfo)
    result = create_backup(ctx, fmt=DumpFormat.DIRECTORY, jobs=2)
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(WEIRD_SCHEMA)))
    restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(schemas=(WEIRD_SCHEMA,)))
    assert fingerprint(source_db.conninfo) == backed_up
    key = f"{WEIRD_SCHEMA}.{WEIRD_TABLE}"
    assert key in backed_up


def test_a_partitioned_table_comes_back_with_its_partitions_and_names_are_replaced_whole(
    ctx: Context, source_db: DbHandle
) -> None:
    """A partitioned table holds no rows: restored alone it came back empty and "completed". And
    --into-schema rewrote ``public.t`` inside ``public.tkind`` too, so the restore failed."""
    _exec(
        source_db.conninfo,
        """CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
        CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
            PARTITION BY LIST (id);
        CREATE TABLE events_2025_low PARTITION OF events_2025 FOR VALUES IN (1, 2, 3);
        CREATE TABLE events_2025_rest PARTITION OF events_2025 DEFAULT;
        CREATE TABLE "Events 2026" PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        INSERT INTO events SELECT g, '2025-06-01' FROM generate_series(1, 628) g;
        INSERT INTO events SELECT g, '2026-06-01' FROM generate_series(1, 10) g;
        CREATE TYPE tkind AS ENUM ('a', 'b');
        CREATE TABLE t (id int PRIMARY KEY, k tkind);
        INSERT INTO t VALUES (1, 'a'), (2, 'b');""",
    )
    result = create_backup(ctx)
    _exec(source_db.conninfo, "DELETE FROM events WHERE id <= 5")
    outcome = restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(tables=("events", "t"), into_schema="rescue"))
    assert outcome.message.endswith("restored rescue.events, rescue.t (with 4 partitions)")
    assert scalar(source_db.conninfo, "SELECT count(*) FROM rescue.events") == 638
    assert scalar(source_db.conninfo, "SELECT count(*) FROM rescue.events WHERE id <= 5") == 10  # 5 of each year
    tree = scalar(
        source_db.conninfo,
        "SELECT string_agg(relid::regclass || '<' || coalesce(parentrelid::regclass::text, '-'), ' ' "
        "ORDER BY level, relid::text) FROM pg_partition_tree('rescue.events')",
    )
    assert tree == (
        'rescue.events<- rescue."Events 2026"<rescue.events rescue.events_2025<rescue.events '
        "rescue.events_2025_low<rescue.events_2025 rescue.events_2025_rest<rescue.events_2025"
    )
    assert scalar(source_db.conninfo, "SELECT string_agg(k::text, ',' ORDER BY id) FROM rescue.t") == "a,b"
    assert scalar(source_db.conninfo, "SELECT count(*) FROM public.events") == 628  # live data untouched


def test_what_is_not_in_the_backup_is_named_not_reported_restored(ctx: Context, source_db: DbHandle) -> None:
    result = create_backup(ctx)
    for dry_run in (True, False):
        options = RestoreOptions(
            tables=("public.missing", "Users"), schemas=("nosuch",), into_schema=None, dry_run=dry_run
        )
        with pytest.raises(InvalidRequestError) as err:
            restore(ctx, resolve_backup(ctx, result.id), options)
        assert err.value.message == (
            "not in the backup, nothing was changed: public.missing, public.Users (the backup has public.users), "
            "schema nosuch"
        )
        with pytest.raises(InvalidRequestError, match="missing"):
            restore(
                ctx,
                resolve_backup(ctx, result.id),
                RestoreOptions(tables=("public.missing",), into_schema="rs2", dry_run=dry_run),
            )
        # A table that exists where it would go: the dry run says so as the restore would.
        with pytest.raises(InvalidRequestError, match="exists in the target"):
            restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(tables=("users",), dry_run=dry_run))
    assert scalar(source_db.conninfo, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('rs2', 'nosuch')") == 0


def test_selective_restore_needs_an_archive_format(ctx: Context) -> None:
    result = create_backup(ctx, fmt=DumpFormat.PLAIN)
    with pytest.raises(InvalidRequestError, match="custom or directory"):
        restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(tables=("users",)))


def test_missing_owner_role_is_refused_before_anything_changes_and_globals_bring_it_back(
    tmp_path: Path, source_db: DbHandle, empty_db: DbHandle, pg15
) -> None:  # type: ignore[no-untyped-def]
    pg15.create_role("app_owner_x", "secret-pw-1", login=True)
    try:
        with psycopg.connect(source_db.conninfo) as conn:
            conn.execute("ALTER TABLE summaries OWNER TO app_owner_x")
        ctx = make_context(tmp_path, source_db.url)
        try:
            result = create_backup(ctx, include_globals=True)
            # The role vanishes (a new server would not have it).
            with psycopg.connect(source_db.conninfo) as conn:
                conn.execute("ALTER TABLE summaries OWNER TO postgres")
            pg15.execute("DROP ROLE app_owner_x")
            _exec(empty_db.conninfo, "CREATE TABLE keep_me AS SELECT 1 AS x")
            before = fingerprint(empty_db.conninfo)
            with pytest.raises(InsufficientPrivilegeError, match="app_owner_x"):
                restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(target_url=empty_db.url))
            assert fingerprint(empty_db.conninfo) == before
            restore(
                ctx,
                resolve_backup(ctx, result.id),
                RestoreOptions(target_url=empty_db.url, restore_globals=True, safety_backup=False),
            )
        finally:
            ctx.close()
        assert (
            scalar(empty_db.conninfo, "SELECT tableowner FROM pg_tables WHERE tablename = 'summaries'") == "app_owner_x"
        )
        # The role came back with its password: it can log in.
        url = pg15.url(empty_db.name, user="app_owner_x", password="secret-pw-1")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("app_owner_x",)
    finally:
        pg15.execute("DROP OWNED BY app_owner_x", dbname=empty_db.name) if _role_exists(pg15, "app_owner_x") else None
        if _role_exists(pg15, "app_owner_x"):
            pg15.execute("DROP ROLE app_owner_x")


def _role_exists(pg15, name: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(pg15.query("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)))


def test_non_superuser_restore_needs_no_owner(tmp_path: Path, source_db: DbHandle, pg15) -> None:  # type: ignore[no-untyped-def]
    pg15.create_role("restorer_x", "restorer-pw", login=True)
    target = f"owned_by_restorer_{os.getpid()}"
    pg15.create_database(target, owner="restorer_x")
    try:
        ctx = make_context(tmp_path, source_db.url)
        try:
            result = create_backup(ctx)
            url = pg15.url(target, user="restorer_x", password="restorer-pw")
            with pytest.raises(InsufficientPrivilegeError, match="--no-owner"):
                restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(target_url=url))
            restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(target_url=url, no_owner=True, no_acl=True))
        finally:
            ctx.close()
        assert fingerprint(pg15.admin_conninfo(target)) == fingerprint(source_db.conninfo)
        owner = scalar(pg15.admin_conninfo(target), "SELECT tableowner FROM pg_tables WHERE tablename = 'users'")
        assert owner == "restorer_x"
    finally:
        pg15.drop_database(target)
        pg15.execute("DROP ROLE restorer_x")


def _database_properties(conninfo: str, name: str) -> tuple:  # type: ignore[type-arg]
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT d.datconnlimit, shobj_description(d.oid, 'pg_database'), "
            "(SELECT array_agg(s ORDER BY s) FROM pg_db_role_setting r, unnest(r.setconfig) s "
            " WHERE r.setdatabase = d.oid) FROM pg_database d WHERE d.datname = %s",
            (name,),
        ).fetchone()
    return tuple(row) if row else ()


def test_atomic_restore_keeps_the_database_settings_comment_and_limit(ctx: Context, source_db: DbHandle, pg15) -> None:  # type: ignore[no-untyped-def]
    name = sql.Identifier(source_db.name)
    for statement in (
        sql.SQL("ALTER DATABASE {} SET work_mem = '7MB'").format(name),
        sql.SQL('ALTER DATABASE {} SET search_path = "$user", public, "Other Schema"').format(name),
        sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 50").format(name),
        sql.SQL("COMMENT ON DATABASE {} IS 'the app''s data'").format(name),
    ):
        pg15.execute(statement.as_string(None))
    before = _database_properties(pg15.admin_conninfo(), source_db.name)
    assert before[0] == 50 and before[1] == "the app's data" and len(before[2]) == 2
    result = create_backup(ctx)
    restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(atomic=True, safety_backup=False))
    assert _database_properties(pg15.admin_conninfo(), source_db.name) == before


def test_safety_backup_is_taken_for_a_target_without_tables(
    ctx: Context, source_db: DbHandle, empty_db: DbHandle
) -> None:
    result = create_backup(ctx)
    _exec(empty_db.conninfo, "CREATE FUNCTION only_this() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    outcome = restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(target_url=empty_db.url))
    assert outcome.safety_backup_id is not None
    untouched = restore(
        ctx, resolve_backup(ctx, result.id), RestoreOptions(target_url=empty_db.url, safety_backup=False)
    )
    assert untouched.safety_backup_id is None


def test_a_full_temp_dir_and_a_role_without_createdb_are_clear_errors_and_leave_no_new_database(
    ctx: Context,
    source_db: DbHandle,
    pg15,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """A parallel restore stages the archive in PGKEEP_TEMP_DIR: a full disk there was an
    "internal error: OSError", and --create-db left the new, empty database behind."""
    import errno

    from pgkeep.pgtools.archive_offsets import OffsetRecorder

    result = create_backup(ctx)
    name = f"new_{source_db.name}"
    target = pg15.url(name)

    def disk_full(self: object, chunk: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(OffsetRecorder, "observe", disk_full)  # the staged copy's write fails as on a full disk
        with pytest.raises(RestoreFailedError) as err:
            restore(
                ctx, resolve_backup(ctx, result.id), RestoreOptions(target_url=target, create_database=True, jobs=2)
            )
    assert err.value.message.startswith(f"cannot write the archive's working copy in {ctx.temp_root()}")
    assert "No space left on device" in err.value.message and "PGKEEP_TEMP_DIR" in str(err.value.hint)
    assert _databases(source_db.conninfo, name) == []

    # A role that may not create databases: the dry run says so, as the restore would.
    pg15.create_role("no_createdb_x", "pw-Qq12", login=True)
    try:
        limited = pg15.url(name, user="no_createdb_x", password="pw-Qq12")
        for dry_run in (True, False):
            with pytest.raises(InsufficientPrivilegeError, match="lacks the CREATEDB privilege"):
                options = RestoreOptions(
                    target_url=limited, create_database=True, no_owner=True, no_acl=True, dry_run=dry_run
                )
                restore(ctx, resolve_backup(ctx, result.id), options)
        assert _databases(source_db.conninfo, name) == []
        # An atomic restore creates a database too: its dry run says so.
        in_place = pg15.url(source_db.name, user="no_createdb_x", password="pw-Qq12")
        with pytest.raises(InsufficientPrivilegeError, match="an atomic restore needs to create a database"):
            options = RestoreOptions(target_url=in_place, atomic=True, no_owner=True, no_acl=True, dry_run=True)
            restore(ctx, resolve_backup(ctx, result.id), options)
    finally:
        pg15.execute("DROP ROLE no_createdb_x")


def test_a_role_that_cannot_empty_the_target_is_refused_before_anything_changes(
    ctx: Context,
    source_db: DbHandle,
    pg15,  # type: ignore[no-untyped-def]
) -> None:
    """It dropped what it owned, then failed on "must be owner of table", and only the dry run passed."""
    result = create_backup(ctx)
    pg15.create_role("reader_rst", "pw-Rr12", login=True)
    try:
        pg15.execute(
            "GRANT pg_read_all_data TO reader_rst; GRANT CREATE ON SCHEMA public TO reader_rst", dbname=source_db.name
        )
        before = fingerprint(source_db.conninfo)
        limited = pg15.url(source_db.name, user="reader_rst", password="pw-Rr12")
        for dry_run in (True, False):
            with pytest.raises(InsufficientPrivilegeError) as err:
                options = RestoreOptions(target_url=limited, no_owner=True, no_acl=True, dry_run=dry_run)
                restore(ctx, resolve_backup(ctx, result.id), options)
            assert err.value.message.startswith(
                f"cannot restore, nothing was changed: role reader_rst cannot empty {source_db.name} first, "
                "it may not drop what it does not own: "
            )
            assert "public.meetings" in err.value.message and err.value.message.endswith("more")
        assert fingerprint(source_db.conninfo) == before
    finally:
        pg15.execute("DROP OWNED BY reader_rst", dbname=source_db.name)
        pg15.execute("DROP ROLE reader_rst")


def test_a_restore_that_stages_more_than_the_temp_dir_holds_is_refused_first(ctx: Context, source_db: DbHandle) -> None:
    from pgkeep.catalog import repository as repo

    result = create_backup(ctx)
    with ctx.catalog.session() as session:  # a dump bigger than any disk here
        row = repo.get_backup(session, result.id)
        repo.update_backup(session, result.id, metadata_={**(row.metadata_ or {}), "uncompressedSize": 1 << 60})
    for options in (RestoreOptions(jobs=2, dry_run=True), RestoreOptions(tables=("users",), into_schema="x")):
        with pytest.raises(RestoreFailedError) as err:
            restore(ctx, resolve_backup(ctx, result.id), options)
        assert err.value.message.startswith("cannot restore, nothing was changed: this restore stages the")
        assert "1048576.0 TiB" in err.value.message and "PGKEEP_TEMP_DIR" in str(err.value.hint)
    # Without --jobs a custom backup streams into psql: no room needed.
    assert restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(dry_run=True)).dry_run
