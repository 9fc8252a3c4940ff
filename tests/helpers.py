"""Small shared test helpers (importable as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import pty
import stat
import struct
import subprocess
import tempfile
import termios
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
from psycopg import sql

from pgkeep.catalog.db import Catalog
from pgkeep.catalog.models import DatabaseBackup
from pgkeep.catalog.repository import all_backups, get_backup
from pgkeep.config import Settings, load_settings
from pgkeep.devcluster import DevCluster
from pgkeep.devs3 import DevS3
from pgkeep.services.context import Context
from pgkeep.services.manifest import manifest_name

T = TypeVar("T")

# Objects the template database adds next to the sample schema; all need quoting.
WEIRD_SCHEMA = "Weird Schema"
WEIRD_TABLE = "Mixed Case; Table"
WEIRD_SEQUENCE = "ticket numbers"
WEIRD_ROWS = 3


@dataclass(frozen=True)
class DbHandle:
    """A test database in the session's dev cluster.

    ``url`` is a postgresql:// URL over TCP with the superuser's (awkward)
    password; ``conninfo`` goes through the unix socket with trust auth.
    """

    name: str
    url: str
    conninfo: str


def socket_url(cluster: DevCluster, dbname: str) -> str:
    """A postgresql:// URL for ``dbname`` over the cluster's unix socket (trust auth), unlike DbHandle.url."""
    return f"postgresql://{cluster.superuser}@/{dbname}?host={quote(str(cluster.socket_dir))}&port={cluster.port}"


def scalar(conninfo: str, query: str | sql.Composable) -> Any:
    """The first column of the first row of ``query``."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


# --- pgkeep services and processes, shared by the integration and acceptance tests ---

PG15_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
WAIT_S = 30.0  # generous bound for anything awaited; tests never assert on timing


@functools.cache
def _migrated_sqlite_catalog() -> bytes:
    """The bytes of an empty SQLite catalog at the head revision, migrated once per run."""
    with tempfile.TemporaryDirectory() as tmp:
        Catalog(f"sqlite:///{tmp}/catalog.db").dispose()
        return (Path(tmp) / "catalog.db").read_bytes()


def make_settings(tmp_path: Path, database_url: str | None, **overrides: Any) -> Settings:
    """Settings isolated in ``tmp_path``: SQLite catalog, local storage in ``backups``.

    The catalog starts as a copy of one migrated once (migrating costs more than most
    tests); tests/migration checks that a new SQLite catalog migrates itself.
    """
    catalog = tmp_path / "catalog.db"
    if "catalog_url" not in overrides and not catalog.exists():
        tmp_path.mkdir(parents=True, exist_ok=True)
        catalog.write_bytes(_migrated_sqlite_catalog())
    values: dict[str, Any] = {
        "database_url": database_url,
        "catalog_url": f"sqlite:///{tmp_path}/catalog.db",
        "storage_url": f"file://{tmp_path}/backups",
        "state_dir": tmp_path / "state",
    }
    values.update(overrides)
    return load_settings(**values)


def make_context(tmp_path: Path, database_url: str | None, **overrides: Any) -> Context:
    return Context.build(make_settings(tmp_path, database_url, **overrides))


S3_BUCKET = "pgkeep-test"  # created by the session's ``devs3`` fixture (tests/conftest.py)
MIB = 1 << 20


def s3_overrides(server: DevS3, prefix: str | None = None, **extra: Any) -> dict[str, Any]:
    """Settings that put backups on ``server`` under a fresh prefix of :data:`S3_BUCKET`
    (small parts and few, quick retries, so faults show within seconds)."""
    values: dict[str, Any] = {
        "storage_url": f"s3://{S3_BUCKET}/{prefix or 'p-' + uuid.uuid4().hex[:10]}",
        "s3_endpoint_url": server.endpoint_url,
        "s3_region": server.region,
        "s3_force_path_style": True,
        "s3_access_key_id": server.access_key,
        "s3_secret_access_key": server.secret_key,
        "s3_part_size": 5 * MIB,
        "s3_max_concurrency": 2,
        "s3_max_attempts": 2,
        "s3_connect_timeout": 1,
        "s3_read_timeout": 10,
    }
    values.update(extra)
    return values


def s3_env(overrides: dict[str, Any]) -> dict[str, str]:
    """The same settings as environment variables, for the ``pgkeep`` command."""
    names = {"storage_url": "PGKEEP_STORAGE_URL"}
    return {names.get(k, f"PGKEEP_{k.upper()}"): str(v) for k, v in overrides.items()}


def dir_entries(directory: Path) -> list[str]:
    """Every name in ``directory`` (hidden ``.partial-`` files included); [] if it is missing."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def stored_files(*filenames: str) -> list[str]:
    """What storage holds for these COMPLETED backups: each artifact and its manifest."""
    return sorted(name for filename in filenames for name in (filename, manifest_name(filename)))


def backup_rows(ctx: Context) -> list[DatabaseBackup]:
    with ctx.catalog.session() as session:
        return list(all_backups(session))


def get_row(ctx: Context, backup_id: str) -> DatabaseBackup:
    with ctx.catalog.session() as session:
        return get_backup(session, backup_id)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wait_for(predicate: Callable[[], T | None], what: str, timeout: float = WAIT_S) -> T:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def table_locked(conninfo: str, table: str = "users", mode: str = "ACCESS EXCLUSIVE") -> Iterator[psycopg.Connection]:
    """Hold a lock on ``table`` until the block exits.

    ACCESS EXCLUSIVE blocks a pg_dump started meanwhile: the backup stays mid-run,
    deterministically. ACCESS SHARE lets pg_dump through but blocks a restore's DROP.
    """
    with psycopg.connect(conninfo) as conn:
        lock = sql.SQL("LOCK TABLE {} IN {} MODE").format(sql.Identifier(table), sql.SQL(mode))
        conn.execute(lock)
        yield conn
        conn.rollback()


def blocked_pg_dump_backend(conninfo: str, dbname: str) -> int | None:
    """Server pid of a pg_dump session of ``dbname`` that waits for a lock, if any."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = 'pg_dump' AND wait_event_type = 'Lock'",
            (dbname,),
        ).fetchone()
    return int(row[0]) if row else None


def _proc_stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, ppid) of a process, None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    state, ppid = raw[raw.rindex(")") + 2 :].split()[:2]
    return comm, state, int(ppid)


def child_pids(parent: int, comm: str) -> list[int]:
    """Live children of ``parent`` whose command name is ``comm``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _proc_stat(int(entry.name))
            if info and info[0] == comm and info[2] == parent and info[1] != "Z":
                found.append(int(entry.name))
    return found


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped counts as gone)."""
    info = _proc_stat(pid)
    return info is None or info[1] in ("Z", "X")


def write_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def fake_old_pg_dump_dir(root: Path, version: str = "14.1") -> Path:
    """A bin dir whose pg_dump claims to be PostgreSQL ``version`` (and does nothing else)."""
    write_script(root / "pg_dump", f'echo "pg_dump (PostgreSQL) {version}"\n')
    return root


def truncating_pg_dump_dir(root: Path, nbytes: int = 65536) -> Path:
    """A bin dir whose pg_dump is the real one, cut off after ``nbytes`` and then SIGKILLed.

    It simulates pg_dump dying mid-stream: the output so far looks like a good start.
    """
    real = PG15_BIN_DIR / "pg_dump"
    write_script(
        root / "pg_dump",
        f'if [ "$1" = "--version" ]; then exec {real} --version; fi\n{real} "$@" | head -c {nbytes}\nkill -KILL $$\n',
    )
    return root


_SCHEMA_SQL = """
WITH user_ns AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'
)
SELECT 'column', format('%I.%I.%I %s %s %s', table_schema, table_name, column_name, data_type,
                        is_nullable, coalesce(column_default, ''))
FROM information_schema.columns
WHERE table_schema IN (SELECT nspname FROM user_ns)
UNION ALL
SELECT 'constraint', format('%s %I %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
FROM pg_constraint WHERE connamespace IN (SELECT oid FROM user_ns)
UNION ALL
SELECT 'index', pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace IN (SELECT oid FROM user_ns)
UNION ALL
SELECT 'partition', format('%s %s', c.oid::regclass, pg_get_expr(c.relpartbound, c.oid))
FROM pg_class c WHERE c.relispartition AND c.relnamespace IN (SELECT oid FROM user_ns)
UNION ALL
SELECT 'sequence', format('%I.%I %s', schemaname, sequencename, last_value) FROM pg_sequences
WHERE schemaname IN (SELECT nspname FROM user_ns)
UNION ALL
SELECT 'routine', p.oid::regprocedure::text
FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM user_ns)
UNION ALL
SELECT 'relation', format('%s %s', c.oid::regclass, c.relkind)
FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM user_ns)
ORDER BY 1, 2
"""


def schema_snapshot(conninfo: str) -> list[tuple[str, str]]:
    """The user-visible schema (relations, columns, constraints, indexes, partitions,
    sequence positions, routines) as sorted text, to compare two databases."""
    with psycopg.connect(conninfo) as conn:
        return [(r[0], r[1]) for r in conn.execute(_SCHEMA_SQL).fetchall()]


def open_pipes() -> int:
    """This process's open pipe descriptors (a restore must close every one it made)."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):  # the descriptor of the listing itself, closed meanwhile
            count += fd.readlink().name.startswith("pipe:")
    return count


def pgkeep_free_environ() -> dict[str, str]:
    """This process's environment without pgkeep's and libpq's settings: a command sees only its own."""
    return {k: v for k, v in os.environ.items() if not (k.startswith(("PGKEEP_", "PG")) or k == "DATABASE_URL")}


def run_on_a_terminal(command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (stdout a pipe): (exit code, stdout, the terminal's bytes)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal
    )
    os.close(terminal)
    shown = bytearray()
    try:
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: every process holding the terminal has exited
                break
            if not data:
                break
            shown += data
    finally:
        os.close(controller)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=120), out, shown.decode(errors="replace")


def count_local_opens(monkeypatch: Any) -> list[str]:
    """The names LocalStorage.open_reader opens from now on (for 'reads it once' tests)."""
    from pgkeep.storage.local import LocalStorage

    opened: list[str] = []
    real_open = LocalStorage.open_reader

    def counting_open(self: LocalStorage, name: str) -> Any:
        opened.append(name)
        return real_open(self, name)

    monkeypatch.setattr(LocalStorage, "open_reader", counting_open)
    return opened


# Long and compressible: stored compressed (inline or out of line) by any method.
LONG_TEXT = "repeat('the quarterly planning meeting covered hiring and budgets. ', 400)"


def add_long_values(conninfo: str) -> None:
    """A table with one column left to the default method and one pinned to pglz."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text, pinned text COMPRESSION pglz)")
        conn.execute(
            sql.SQL("INSERT INTO notes SELECT g, {} || g, {} || g FROM generate_series(1, 20) g").format(
                sql.SQL(LONG_TEXT), sql.SQL(LONG_TEXT)
            )
        )


def toast_methods(conninfo: str) -> tuple[str, str]:
    """The compression methods of the stored values (every row's must agree)."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT DISTINCT pg_column_compression(body), pg_column_compression(pinned) FROM notes"
        ).fetchall()
    assert len(rows) == 1, rows
    return rows[0]
