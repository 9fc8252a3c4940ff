"""Backup then restore gives back the same database, for every format and compression."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from helpers import DbHandle, dir_entries, get_row, open_pipes, schema_snapshot, stored_files
from pgkeep.catalog.models import BackupStatus
from pgkeep.config import Compression, DumpFormat
from pgkeep.fingerprint import diff_fingerprints, fingerprint
from pgkeep.services.backup import artifact_extension, create_backup
from pgkeep.services.context import Context
from pgkeep.services.restore import RestoreOptions, resolve_backup, restore

COMBINATIONS = [(fmt, comp) for fmt in DumpFormat for comp in Compression]

PARTITIONED = """
CREATE TABLE events (
    id      bigint NOT NULL,
    region  text   NOT NULL,
    payload text,
    PRIMARY KEY (id, region)
) PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
INSERT INTO events
SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, 'event ' || g
FROM generate_series(1, 300) g;
"""

# Data and schema changes made after the backup; the restore must undo all of them.
CHANGES = """
UPDATE users SET display_name = 'changed' WHERE id <= 10;
DELETE FROM summaries WHERE id % 3 = 0;
INSERT INTO organizations (name, slug, created_at) VALUES ('new org', 'new-org', now());
DELETE FROM events WHERE region = 'eu' AND id < 100;
INSERT INTO events VALUES (1001, 'us', 'late');
CREATE TABLE events_apac PARTITION OF events FOR VALUES IN ('apac');
INSERT INTO events VALUES (2000, 'apac', 'new partition');
ALTER TABLE users ADD COLUMN nickname text DEFAULT 'x';
ALTER TABLE meetings DROP COLUMN platform;
DROP TABLE transcripts CASCADE;
CREATE TABLE scratch (id int PRIMARY KEY);
INSERT INTO scratch SELECT generate_series(1, 5);
CREATE SCHEMA extra;
CREATE VIEW extra.v AS SELECT 1 AS one;
CREATE FUNCTION public.added() RETURNS int LANGUAGE sql AS 'SELECT 1';
SELECT nextval(pg_get_serial_sequence('users', 'id'));
"""


def backup_and_check(ctx: Context, fmt: DumpFormat, compression: Compression) -> str:
    jobs = 2 if fmt is DumpFormat.DIRECTORY else 1
    result = create_backup(ctx, fmt=fmt, compression=compression, jobs=jobs)
    row = get_row(ctx, result.id)
    assert row.status is BackupStatus.COMPLETED, row.error_message
    assert row.filename == result.filename
    assert result.filename.endswith(artifact_extension(fmt, compression))
    assert re.fullmatch(
        r"src_[0-9a-f]{12}-backup-manual-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z"
        + re.escape(artifact_extension(fmt, compression)),
        result.filename,
    )
    stored = Path(ctx.settings.storage_url.removeprefix("file://")) / result.filename
    assert result.storage_url == stored.as_uri()
    assert result.size == stored.stat().st_size == row.size > 0
    assert (row.format, row.compression) == (fmt.value, compression.value)
    return result.id


@pytest.mark.parametrize(("fmt", "compression"), COMBINATIONS, ids=lambda v: v.value)
def test_round_trip_into_a_new_database(
    ctx: Context, source_db: DbHandle, empty_db: DbHandle, fmt: DumpFormat, compression: Compression
) -> None:
    backup_id = backup_and_check(ctx, fmt, compression)
    outcome = restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=empty_db.url))
    assert not outcome.dry_run
    assert outcome.checksum == get_row(ctx, backup_id).checksum
    assert diff_fingerprints(fingerprint(source_db.conninfo), fingerprint(empty_db.conninfo)) == []
    assert schema_snapshot(empty_db.conninfo) == schema_snapshot(source_db.conninfo)


@pytest.mark.parametrize("fmt", list(DumpFormat), ids=lambda v: v.value)
def test_restore_over_the_live_database_undoes_data_and_schema_changes(
    ctx: Context, source_db: DbHandle, backups_dir: Path, fmt: DumpFormat
) -> None:
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute(PARTITIONED)
    backed_up = fingerprint(source_db.conninfo)
    backed_up_schema = schema_snapshot(source_db.conninfo)
    assert backed_up["public.events_eu"][0] == 150
    backup_id = backup_and_check(ctx, fmt, Compression.ZSTD)

    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute(CHANGES)
    assert fingerprint(source_db.conninfo) != backed_up
    assert schema_snapshot(source_db.conninfo) != backed_up_schema

    changed = fingerprint(source_db.conninfo)
    outcome = restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions())  # DATABASE_URL itself

    assert diff_fingerprints(backed_up, fingerprint(source_db.conninfo)) == []
    assert schema_snapshot(source_db.conninfo) == backed_up_schema
    # Restoring over live data first saved it: the safety backup is a normal catalog entry.
    assert outcome.safety_backup_id is not None
    safety = get_row(ctx, outcome.safety_backup_id)
    assert "safety backup" in safety.metadata_["reason"]
    assert safety.metadata_["tableCounts"] == {name: rows for name, (rows, _) in changed.items()}
    assert dir_entries(backups_dir) == stored_files(get_row(ctx, backup_id).filename, safety.filename)


def test_restore_twice_over_the_same_database(ctx: Context, source_db: DbHandle) -> None:
    # The second restore must clear what the first one loaded (no duplicate objects).
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute(PARTITIONED)
    before = fingerprint(source_db.conninfo)
    backup_id = backup_and_check(ctx, DumpFormat.CUSTOM, Compression.ZSTD)
    pipes = open_pipes()
    for _ in range(2):
        restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions())
    assert fingerprint(source_db.conninfo) == before
    assert open_pipes() == pipes


def test_parallel_restore_into_a_new_database(ctx: Context, source_db: DbHandle, empty_db: DbHandle) -> None:
    backup_id = backup_and_check(ctx, DumpFormat.DIRECTORY, Compression.ZSTD)
    restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=empty_db.url, jobs=2))
    assert diff_fingerprints(fingerprint(source_db.conninfo), fingerprint(empty_db.conninfo)) == []


# Object kinds a restore over the live database must clear first, or it fails on
# "already exists": some live outside any schema, some are parts of other objects.
MANY_KINDS = """
CREATE EXTENSION citext;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE SEQUENCE standalone_seq;
CREATE TABLE kinds (id serial PRIMARY KEY, m mood, p posint, pr pair, e citext, fr floatrange,
                    ident int GENERATED ALWAYS AS IDENTITY);
INSERT INTO kinds (m, p, pr, e, fr) VALUES ('ok', 3, ROW(1, 'x'), 'A', '[1,2)');
CREATE MATERIALIZED VIEW kinds_mv AS SELECT count(*) FROM kinds;
CREATE VIEW kinds_v AS SELECT * FROM kinds;
CREATE FUNCTION kinds_trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER kinds_trg BEFORE INSERT ON kinds FOR EACH ROW EXECUTE FUNCTION kinds_trg();
CREATE AGGREGATE mysum(int) (sfunc = int4pl, stype = int);
CREATE OPERATOR ### (leftarg = int, rightarg = int, function = int4pl);
CREATE TEXT SEARCH CONFIGURATION myts (COPY = simple);
CREATE TABLE ranged (a int, b int, PRIMARY KEY (a, b)) PARTITION BY RANGE (a);
CREATE TABLE ranged_1 PARTITION OF ranged FOR VALUES FROM (0) TO (10) PARTITION BY LIST (b);
CREATE TABLE ranged_1_1 PARTITION OF ranged_1 FOR VALUES IN (1);
INSERT INTO ranged VALUES (1, 1);
CREATE TABLE inh_parent (a int);
CREATE TABLE inh_child () INHERITS (inh_parent);
SELECT lo_from_bytea(0, 'large object');
CREATE PUBLICATION kinds_pub FOR TABLE kinds;
CREATE FOREIGN DATA WRAPPER dummy_fdw;
CREATE SERVER dummy_srv FOREIGN DATA WRAPPER dummy_fdw;
CREATE USER MAPPING FOR postgres SERVER dummy_srv;
CREATE FOREIGN TABLE kinds_ft (a int) SERVER dummy_srv;
"""


def test_restore_over_the_live_database_with_many_object_kinds(ctx: Context, source_db: DbHandle) -> None:
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute(MANY_KINDS)
    before = fingerprint(source_db.conninfo)
    before_schema = schema_snapshot(source_db.conninfo)
    backup_id = backup_and_check(ctx, DumpFormat.CUSTOM, Compression.ZSTD)
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("INSERT INTO ranged VALUES (2, 1); DROP SERVER dummy_srv CASCADE")
    restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions())
    assert fingerprint(source_db.conninfo) == before
    assert schema_snapshot(source_db.conninfo) == before_schema
    # And once more over the restored copy, where every object above exists again.
    restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions())
    assert fingerprint(source_db.conninfo) == before
    with psycopg.connect(source_db.conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (1,)
        assert conn.execute("SELECT srvname FROM pg_foreign_server").fetchall() == [("dummy_srv",)]
