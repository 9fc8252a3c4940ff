"""Restore-correctness corpus: every kind of object comes back exactly as it was.

The corpus (``tests/fixtures/corpus/*.sql``, loaded in name order) holds one or a
few rows of many column types and one of each object kind a database may
contain. It is loaded once per module into a template database; each test works
on a clone. After a backup and a restore, the restored database's state must be
identical to the source's, where "state" is more than the table contents:

- the schema, as a normalised ``pg_dump --schema-only`` (object definitions,
  comments, grants, policies, trigger enablement, default privileges, ...);
- every table's row count and content hash (:func:`pgkeep.fingerprint.fingerprint`);
- every materialized view's populated flag and, when populated, its rows (one
  created WITH NO DATA must stay unpopulated; pg_dump stores a REFRESH, not the
  rows, so the corpus keeps its populated views fresh);
- every sequence's ``last_value`` and ``is_called``;
- every large object's OID, owner, comment, grants and content;
- every extension's version and schema.

``test_state_detects_each_kind_of_change`` proves the comparison would catch
a restore that got any of these wrong.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from helpers import PG15_BIN_DIR, DbHandle, make_context
from pgkeep.config import Compression, DumpFormat
from pgkeep.devcluster import DevCluster
from pgkeep.fingerprint import Fingerprint, diff_fingerprints, fingerprint
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.restore import RestoreOptions, resolve_backup, restore

CORPUS_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "corpus"
CORPUS_ROLE = "corpus owner"  # owns some corpus objects; a space, as pg_restore --list prints it unquoted

# Same pinned settings as pgkeep.fingerprint: row text must not depend on the session.
_SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, MDY'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
)

_USER_RELATIONS = """
SELECT n.nspname, c.relname, c.relkind, c.relispopulated
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('m', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""

_LARGE_OBJECTS = """
SELECT m.oid::bigint, pg_get_userbyid(m.lomowner), m.lomacl::text,
       obj_description(m.oid, 'pg_largeobject'), encode(sha256(lo_get(m.oid)), 'hex')
FROM pg_largeobject_metadata m ORDER BY 1
"""

_EXTENSIONS = """
SELECT e.extname, e.extversion, n.nspname
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY 1
"""

# Lines of a plain dump that differ between two dumps of identical databases.
_VOLATILE_DUMP_LINE = re.compile(r"^(-- Dumped (from database|by pg_dump) version .*|\\(un)?restrict \S+)$", re.M)


@dataclass(frozen=True)
class CorpusState:
    """Everything a restore must give back, in comparable form."""

    schema: str
    tables: Fingerprint
    matviews: dict[str, tuple[bool, int, str]]  # name -> (populated, rows, content hash)
    sequences: dict[str, tuple[int, bool]]  # name -> (last_value, is_called)
    large_objects: dict[int, tuple[str, str | None, str | None, str]]  # oid -> (owner, acl, comment, sha256)
    extensions: dict[str, tuple[str, str]]  # name -> (version, schema)


def schema_dump(conninfo: str, dbname: str) -> str:
    """``pg_dump --schema-only``, without the lines that differ between identical databases."""
    result = subprocess.run(
        [str(PG15_BIN_DIR / "pg_dump"), "--schema-only", "--no-password", f"--dbname={conninfo}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return _VOLATILE_DUMP_LINE.sub("", result.stdout).replace(dbname, "<dbname>")


def corpus_state(db: DbHandle) -> CorpusState:
    """The :class:`CorpusState` of ``db``, read in one snapshot (plus the schema dump)."""
    matviews: dict[str, tuple[bool, int, str]] = {}
    sequences: dict[str, tuple[int, bool]] = {}
    with psycopg.connect(db.conninfo) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        for setting in _SESSION_SETTINGS:
            conn.execute(setting)
        for schema, name, relkind, populated in conn.execute(_USER_RELATIONS).fetchall():
            rel = sql.Identifier(schema, name)
            key = f"{schema}.{name}"
            if relkind == "S":
                row = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(rel)).fetchone()
                assert row is not None
                sequences[key] = (int(row[0]), bool(row[1]))
            elif not populated:
                matviews[key] = (False, 0, "")  # selecting from it would fail
            else:
                row = conn.execute(
                    sql.SQL(
                        "SELECT count(*), encode(sha256(convert_to(coalesce("
                        "string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), ''), 'UTF8')), 'hex') "
                        "FROM {} AS t"
                    ).format(rel)
                ).fetchone()
                assert row is not None
                matviews[key] = (True, int(row[0]), str(row[1]))
        large_objects = {int(r[0]): (r[1], r[2], r[3], r[4]) for r in conn.execute(_LARGE_OBJECTS).fetchall()}
        extensions = {r[0]: (r[1], r[2]) for r in conn.execute(_EXTENSIONS).fetchall()}
    return CorpusState(
        schema=schema_dump(db.conninfo, db.name),
        tables=fingerprint(db.conninfo),
        matviews=matviews,
        sequences=sequences,
        large_objects=large_objects,
        extensions=extensions,
    )


def diff_states(expected: CorpusState, actual: CorpusState) -> dict[str, list[str]]:
    """What differs, by part of the state; empty when the states are identical."""
    differences: dict[str, list[str]] = {}
    for part in fields(CorpusState):
        want, got = getattr(expected, part.name), getattr(actual, part.name)
        if want == got:
            continue
        if part.name == "schema":
            lines = difflib.unified_diff(want.splitlines(), got.splitlines(), "expected", "actual", lineterm="", n=1)
            differences["schema"] = list(lines)[:80]
        elif part.name == "tables":
            differences["tables"] = diff_fingerprints(want, got, a_label="expected", b_label="actual")
        else:
            differences[part.name] = [
                f"{key}: expected {want.get(key)!r}, actual {got.get(key)!r}"
                for key in sorted(want.keys() | got.keys(), key=str)
                if want.get(key) != got.get(key)
            ]
    return differences


def assert_same_state(expected: CorpusState, actual: CorpusState) -> None:
    differences = diff_states(expected, actual)
    assert not differences, "restored database differs from the source:\n" + "\n".join(
        f"[{part}] {line}" for part, lines in differences.items() for line in lines
    )


# --- fixtures ----------------------------------------------------------------------------------------


def _wait_no_connections(cluster: DevCluster, dbname: str, timeout: float = 10) -> None:
    """CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template."""
    deadline = time.monotonic() + timeout
    while cluster.query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [dbname])[0][0]:
        assert time.monotonic() < deadline, f"connections to {dbname!r} are still open"
        time.sleep(0.02)


def _handle(cluster: DevCluster, name: str) -> DbHandle:
    return DbHandle(name=name, url=cluster.url(name), conninfo=cluster.admin_conninfo(name))


@pytest.fixture(scope="module")
def corpus_template(pg15: DevCluster) -> Iterator[DbHandle]:
    """The corpus, loaded once per module into a template database."""
    name = f"corpus_tpl_{uuid.uuid4().hex[:8]}"
    pg15.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(CORPUS_ROLE)))
    pg15.create_database(name)
    try:
        for path in sorted(CORPUS_DIR.glob("*.sql")):
            with psycopg.connect(pg15.admin_conninfo(name), autocommit=True) as conn:
                try:
                    conn.execute(path.read_text(encoding="utf-8"))
                except psycopg.Error as exc:
                    raise AssertionError(f"loading {path.name} failed: {exc}") from exc
        _wait_no_connections(pg15, name)
        yield _handle(pg15, name)
    finally:
        pg15.drop_database(name)
        pg15.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(CORPUS_ROLE)))


@pytest.fixture(scope="module")
def corpus_baseline(pg15: DevCluster, corpus_template: DbHandle) -> CorpusState:
    """The state of a freshly loaded corpus: what every restore must give back."""
    state = corpus_state(corpus_template)
    _wait_no_connections(pg15, corpus_template.name)
    return state


def _clone(cluster: DevCluster, template: DbHandle, prefix: str) -> Iterator[DbHandle]:
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    _wait_no_connections(cluster, template.name)  # e.g. a test that just read the template
    cluster.create_database(name, template=template.name)
    try:
        yield _handle(cluster, name)
    finally:
        cluster.drop_database(name)


@pytest.fixture
def corpus_db(pg15: DevCluster, corpus_template: DbHandle, corpus_baseline: CorpusState) -> Iterator[DbHandle]:
    """A fresh clone of the corpus (the baseline is taken before any clone exists)."""
    yield from _clone(pg15, corpus_template, "corpus_src_")


@pytest.fixture
def corpus_ctx(tmp_path: Path, corpus_db: DbHandle) -> Iterator[Context]:
    """Backs up ``corpus_db`` over TCP (awkward password) into ``tmp_path/backups``."""
    context = make_context(tmp_path, corpus_db.url)
    try:
        yield context
    finally:
        context.close()


# --- the corpus and its fingerprint ------------------------------------------------------------------

# Each kind of object the corpus must contain, as a query counting them: a fixture
# edit that loses one makes the round trips below prove less, so it fails here.
_COVERAGE = {
    "many column types": "SELECT count(DISTINCT atttypid) >= 55 FROM pg_attribute "
    "WHERE attrelid = 'corpus.all_types'::regclass AND attnum > 0",
    "partitioned table": "SELECT count(*) FROM pg_class WHERE relkind = 'p'",
    "default partition": "SELECT count(*) FROM pg_partitioned_table WHERE partdefid <> 0",
    "range partitioning": "SELECT count(*) FROM pg_partitioned_table WHERE partstrat = 'r'",
    "list partitioning": "SELECT count(*) FROM pg_partitioned_table WHERE partstrat = 'l'",
    "inheritance child": "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE NOT c.relispartition",
    "view": "SELECT count(*) FROM pg_class WHERE relkind = 'v' AND relnamespace::regnamespace::text "
    "NOT IN ('pg_catalog', 'information_schema')",
    "populated materialized view": "SELECT count(*) FROM pg_class WHERE relkind = 'm' AND relispopulated",
    "unpopulated materialized view": "SELECT count(*) FROM pg_class WHERE relkind = 'm' AND NOT relispopulated",
    "sequence not called": "SELECT count(*) FROM pg_sequences WHERE last_value IS NULL",
    "large object": "SELECT count(*) FROM pg_largeobject_metadata",
    "sql function": "SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
    "WHERE l.lanname = 'sql' AND p.pronamespace = 'corpus'::regnamespace",
    "sql-standard function body": "SELECT count(*) FROM pg_proc WHERE prosqlbody IS NOT NULL",
    "plpgsql function": "SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
    "WHERE l.lanname = 'plpgsql' AND p.prokind = 'f'",
    "procedure": "SELECT count(*) FROM pg_proc WHERE prokind = 'p'",
    "aggregate": "SELECT count(*) FROM pg_proc WHERE prokind = 'a' AND pronamespace = 'corpus'::regnamespace",
    "trigger": "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal",
    "disabled trigger": "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'",
    "event trigger": "SELECT count(*) FROM pg_event_trigger",
    "user-defined cast": "SELECT count(*) FROM pg_cast WHERE oid >= 16384",
    "comment": "SELECT count(*) FROM pg_description WHERE objoid >= 16384",
    "check constraint": "SELECT count(*) FROM pg_constraint WHERE contype = 'c' "
    "AND connamespace <> 'pg_catalog'::regnamespace",
    "not valid constraint": "SELECT count(*) FROM pg_constraint WHERE NOT convalidated",
    "unique constraint": "SELECT count(*) FROM pg_constraint WHERE contype = 'u'",
    "deferrable foreign key": "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND condeferrable",
    "self-referencing foreign key": "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = confrelid",
    "foreign key to a partitioned table": "SELECT count(*) FROM pg_constraint c JOIN pg_class t "
    "ON t.oid = c.confrelid WHERE c.contype = 'f' AND t.relkind = 'p'",
    "exclusion constraint": "SELECT count(*) FROM pg_constraint WHERE contype = 'x'",
    "stored generated column": "SELECT count(*) FROM pg_attribute WHERE attgenerated = 's'",
    "identity column": "SELECT count(*) FROM pg_attribute WHERE attidentity <> ''",
    "row level security policy": "SELECT count(*) FROM pg_policy",
    "forced row level security": "SELECT count(*) FROM pg_class WHERE relforcerowsecurity",
    "expression index": "SELECT count(*) FROM pg_index WHERE indexprs IS NOT NULL",
    "partial index": "SELECT count(*) FROM pg_index WHERE indpred IS NOT NULL",
    "column collated C": "SELECT count(*) FROM pg_attribute WHERE attcollation = 'pg_catalog.\"C\"'::regcollation "
    "AND attrelid >= 16384",
    "user-defined collation": "SELECT count(*) FROM pg_collation WHERE collnamespace = 'corpus'::regnamespace",
    "enum": "SELECT count(*) FROM pg_type WHERE typtype = 'e'",
    "domain": "SELECT count(*) FROM pg_type WHERE typtype = 'd' AND typnamespace = 'corpus'::regnamespace",
    "user-defined range": "SELECT count(*) FROM pg_type WHERE typtype = 'r' AND typnamespace = 'corpus'::regnamespace",
    "multirange column": "SELECT count(*) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
    "WHERE t.typtype = 'm' AND a.attrelid >= 16384",
    "unlogged table": "SELECT count(*) FROM pg_class WHERE relpersistence = 'u' AND relkind = 'r'",
    "default privileges": "SELECT count(*) FROM pg_default_acl",
    "extended statistics": "SELECT count(*) FROM pg_statistic_ext",
    "owner whose name has a space": "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
    "WHERE r.rolname LIKE '% %'",
    "identifier needing quotes": "SELECT count(*) FROM pg_class WHERE relnamespace >= 16384 "
    "AND quote_ident(relname) <> relname",
    "non-ascii schema name": "SELECT count(*) FROM pg_namespace WHERE nspname ~ '[^\\x01-\\x7f]'",
}
_EXTENSIONS_NEEDED = {"pgcrypto", "hstore", "citext", "btree_gist"}


def test_corpus_has_every_object_kind(corpus_template: DbHandle, corpus_baseline: CorpusState) -> None:
    with psycopg.connect(corpus_template.conninfo) as conn:
        missing = [kind for kind, query in _COVERAGE.items() if not conn.execute(query).fetchone()[0]]  # type: ignore[index]
    assert missing == []
    assert corpus_baseline.extensions.keys() >= _EXTENSIONS_NEEDED
    assert corpus_baseline.sequences["corpus.seq_not_called"] == (7, False)
    assert corpus_baseline.sequences["corpus.seq_called"] == (42, True)
    assert corpus_baseline.matviews["corpus.never_refreshed"] == (False, 0, "")
    assert 424242 in corpus_baseline.large_objects
    # Partition leaves, inheritance children and awkward names are all fingerprinted.
    for table in (
        "corpus.measurements_2025_temp",
        "corpus.measurements_default",
        "public.orders_rest",
        "corpus.amphibians",
        "Ünïcødé Schema.Order",
        "corpus.items",
        "public.items",
        "corpus.zero_columns",
    ):
        assert corpus_baseline.tables[table][0] > 0, table


# (SQL run on a clone of the corpus, part of the state that must notice it)
MUTATIONS = {
    "row text": ("UPDATE corpus.all_types SET txt = txt || ' ' WHERE id = 1", "tables"),
    "one byte of a bytea": (r"UPDATE corpus.all_types SET raw = '\x00ff00deadbeef01' WHERE id = 1", "tables"),
    "row moved between partitions": (
        "UPDATE corpus.measurements SET taken_on = '2023-06-01' WHERE taken_on = '2022-06-01'",
        "tables",
    ),
    "duplicate row removed": (
        "DELETE FROM public.no_pk WHERE ctid = (SELECT min(ctid) FROM public.no_pk WHERE b = 'dup')",
        "tables",
    ),
    "sequence is_called": ("SELECT setval('corpus.seq_not_called', 7, true)", "sequences"),
    "large object content": (r"SELECT lo_put(424242, 0, '\x01')", "large_objects"),
    "matview populated": ("REFRESH MATERIALIZED VIEW corpus.never_refreshed", "matviews"),
    "matview rows": (
        "UPDATE corpus.gadgets SET price = 11 WHERE id = 2; REFRESH MATERIALIZED VIEW corpus.gadget_snapshot",
        "matviews",
    ),
    "column comment": ("COMMENT ON COLUMN corpus.all_types.num IS 'changed'", "schema"),
    "trigger enabled": ("ALTER TABLE corpus.gadgets ENABLE TRIGGER gadgets_refuse", "schema"),
    "not valid constraint validated": (
        "UPDATE corpus.assemblies SET qty = 1 WHERE qty <= 0; "
        "ALTER TABLE corpus.assemblies VALIDATE CONSTRAINT qty_positive",
        "schema",
    ),
    "extension moved": ("ALTER EXTENSION hstore SET SCHEMA ext", "extensions"),
}


@pytest.mark.parametrize(("change", "part"), MUTATIONS.values(), ids=MUTATIONS.keys())
def test_state_detects_each_kind_of_change(
    pg15: DevCluster, corpus_db: DbHandle, corpus_baseline: CorpusState, change: str, part: str
) -> None:
    """A restore that got this one thing wrong would fail the comparison (and say where)."""
    pg15.execute(change, dbname=corpus_db.name)
    differences = diff_states(corpus_baseline, corpus_state(corpus_db))
    assert part in differences, differences


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "compression", "backup_jobs", "restore_jobs"),
    [
        pytest.param(DumpFormat.CUSTOM, Compression.ZSTD, 1, 1, id="custom"),
        pytest.param(DumpFormat.PLAIN, Compression.GZIP, 1, 1, id="plain"),
        pytest.param(DumpFormat.DIRECTORY, Compression.NONE, 2, 1, id="directory-jobs2"),
        pytest.param(DumpFormat.CUSTOM, Compression.ZSTD, 1, 2, id="custom-parallel-restore"),
        pytest.param(DumpFormat.DIRECTORY, Compression.ZSTD, 2, 2, id="directory-parallel-restore"),
    ],
)
def test_round_trip_gives_back_the_corpus(
    corpus_ctx: Context,
    corpus_db: DbHandle,
    empty_db: DbHandle,
    corpus_baseline: CorpusState,
    fmt: DumpFormat,
    compression: Compression,
    backup_jobs: int,
    restore_jobs: int,
) -> None:
    source = corpus_state(corpus_db)
    assert_same_state(corpus_baseline, source)
    result = create_backup(corpus_ctx, fmt=fmt, compression=compression, jobs=backup_jobs)

    restore(
        corpus_ctx, resolve_backup(corpus_ctx, result.id), RestoreOptions(target_url=empty_db.url, jobs=restore_jobs)
    )

    assert_same_state(source, corpus_state(empty_db))


# Content of the atomic restore's target before the restore: different, and clashing
# with the corpus's names (a schema, a table, an extension, a large object OID).
DIFFERENT_CONTENT = """
CREATE EXTENSION citext;
CREATE SCHEMA corpus;
CREATE TABLE corpus.all_types (id integer PRIMARY KEY, other citext);
INSERT INTO corpus.all_types VALUES (1, 'not the corpus');
CREATE TABLE public.unrelated (x text);
INSERT INTO public.unrelated VALUES ('old');
CREATE SEQUENCE corpus.seq_called;
SELECT lo_from_bytea(424242, 'different content');
"""


def test_atomic_restore_over_a_database_with_different_content(
    pg15: DevCluster, corpus_ctx: Context, corpus_db: DbHandle, empty_db: DbHandle
) -> None:
    source = corpus_state(corpus_db)
    result = create_backup(corpus_ctx, fmt=DumpFormat.CUSTOM, compression=Compression.ZSTD)
    pg15.execute(DIFFERENT_CONTENT, dbname=empty_db.name)
    before = corpus_state(empty_db)
    assert "tables" in diff_states(source, before)

    with psycopg.connect(empty_db.conninfo, autocommit=True) as idle:  # a session the swap must end
        outcome = restore(
            corpus_ctx,
            resolve_backup(corpus_ctx, result.id),
            RestoreOptions(target_url=empty_db.url, atomic=True, safety_backup=True),
        )
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")

    assert_same_state(source, corpus_state(empty_db))
    assert outcome.terminated_sessions >= 1
    assert outcome.safety_backup_id is not None
    leftovers = pg15.query("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{empty_db.name}\\_pgkeep\\_%"])
    assert leftovers == []


# A live copy of the corpus, changed after the backup in every way the restore must undo.
MODIFICATIONS = """
ALTER TABLE corpus.gadgets ENABLE TRIGGER gadgets_refuse;  -- before the deferred trigger has events
DELETE FROM corpus.all_types WHERE id = 2;
DELETE FROM public.orders WHERE region = 'eu';
UPDATE corpus.gadgets SET name = 'renamed' WHERE id = 3;
DROP TABLE corpus.room_bookings;
DROP TABLE public.departments CASCADE;
DROP EXTENSION hstore CASCADE;
ALTER TYPE corpus.mood ADD VALUE 'new label';
CREATE SCHEMA intruder;
CREATE TABLE intruder.t (id integer PRIMARY KEY);
INSERT INTO intruder.t VALUES (1);
CREATE TABLE public.new_table (x text);
INSERT INTO public.new_table VALUES ('new');
CREATE TYPE public.new_type AS (a integer);
CREATE DOMAIN public.new_domain AS integer CHECK (VALUE > 0);
CREATE FUNCTION public.new_function() RETURNS integer LANGUAGE sql AS 'SELECT 1';
CREATE CAST (character varying AS bigint) WITH INOUT;
CREATE TABLE corpus.measurements_2026 PARTITION OF corpus.measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT setval('corpus.seq_not_called', 500);
SELECT lo_unlink(424243);
SELECT lo_from_bytea(777777, 'new object');
REFRESH MATERIALIZED VIEW corpus.never_refreshed;
UPDATE corpus.gadgets SET price = 11 WHERE id = 2;
REFRESH MATERIALIZED VIEW corpus.gadget_snapshot;
COMMENT ON SCHEMA corpus IS 'changed';
COMMENT ON SCHEMA public IS 'changed';
REVOKE USAGE ON SCHEMA public FROM PUBLIC;
CREATE FUNCTION public.refuse_ddl() RETURNS event_trigger LANGUAGE plpgsql
    AS $$BEGIN RAISE EXCEPTION 'DDL refused by an event trigger'; END$$;
CREATE EVENT TRIGGER refuse_ddl ON ddl_command_start EXECUTE FUNCTION public.refuse_ddl();
"""


# Dropping schema public takes the extensions in it, every table and function in it, and
# the columns, views and constraints elsewhere that used them. A dump never creates
# schema public (a new database has it), so the restore must.
PUBLIC_DROPPED = "DROP SCHEMA public CASCADE;"
ALL_PARTS = {part.name for part in fields(CorpusState)}


@pytest.mark.parametrize(
    ("modification", "changed_parts", "fmt", "jobs"),
    [
        pytest.param(MODIFICATIONS, ALL_PARTS, DumpFormat.CUSTOM, 1, id="modified-custom"),
        pytest.param(MODIFICATIONS, ALL_PARTS, DumpFormat.PLAIN, 1, id="modified-plain"),
        pytest.param(MODIFICATIONS, ALL_PARTS, DumpFormat.DIRECTORY, 2, id="modified-directory-parallel-restore"),
        pytest.param(PUBLIC_DROPPED, ALL_PARTS - {"large_objects"}, DumpFormat.CUSTOM, 1, id="public-dropped-custom"),
        pytest.param(
            PUBLIC_DROPPED,
            ALL_PARTS - {"large_objects"},
            DumpFormat.CUSTOM,
            2,
            id="public-dropped-custom-parallel-restore",
        ),
    ],
)
def test_restore_over_a_modified_live_copy_gives_back_the_corpus(
    pg15: DevCluster,
    corpus_ctx: Context,
    corpus_db: DbHandle,
    modification: str,
    changed_parts: set[str],
    fmt: DumpFormat,
    jobs: int,
) -> None:
    source = corpus_state(corpus_db)
    result = create_backup(corpus_ctx, fmt=fmt, compression=Compression.ZSTD, jobs=jobs)
    pg15.execute(modification, dbname=corpus_db.name)
    assert diff_states(source, corpus_state(corpus_db)).keys() == changed_parts

    outcome = restore(
        corpus_ctx, resolve_backup(corpus_ctx, result.id), RestoreOptions(target_url=corpus_db.url, jobs=jobs)
    )

    assert_same_state(source, corpus_state(corpus_db))
    assert outcome.safety_backup_id is not None
