"""What pgkeep asks of the target server: version, locks, snapshots, counts."""

from __future__ import annotations

import contextlib
import re
import threading

import psycopg
from psycopg import sql

from pgkeep.errors import PgkeepError
from pgkeep.pgtools.conninfo import Target

# One key for "a pgkeep backup of this database is running". Advisory locks are
# scoped to the current database, so this is per target database, across
# processes and machines, and the server frees it when the session dies.
BACKUP_LOCK_KEY = 0x70676B65  # "pgke"

USER_TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND c.relpersistence <> 't'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def connect(target: Target, *, autocommit: bool = True, operation: str = "connect") -> psycopg.Connection:
    """Connect or raise a PgkeepError that says why, without the password."""
    try:
        return psycopg.connect(target.connect_conninfo(), autocommit=autocommit, application_name="pgkeep")
    except psycopg.Error as exc:
        raise PgkeepError(
            f"cannot connect to {target.describe()}: {target.error_text(exc)}",
            operation=operation,
            hint="check DATABASE_URL (host, port, user, password, database) and that the server runs",
        ) from None


def server_major(conn: psycopg.Connection) -> int:
    return conn.info.server_version // 10000


def server_version_text(conn: psycopg.Connection) -> str:
    v = conn.info.server_version
    return f"{v // 10000}.{v % 10000}"


def in_recovery(conn: psycopg.Connection) -> bool:
    """Whether the server is a standby (or still recovering): read-only."""
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def other_sessions(conn: psycopg.Connection) -> int:
    """Client sessions connected to this connection's database, this one aside."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    ).fetchone()
    return int(row[0]) if row else 0


def try_backup_lock(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (BACKUP_LOCK_KEY,)).fetchone()
    return bool(row and row[0])


def export_snapshot(conn: psycopg.Connection) -> str:
    """Open a REPEATABLE READ transaction and export its snapshot.

    The transaction must stay open until pg_dump has imported the snapshot;
    counts taken in it describe exactly the data pg_dump writes.
    """
    conn.autocommit = False
    conn.execute("SET idle_in_transaction_session_timeout = 0")
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    assert row is not None
    return str(row[0])


def user_tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute(USER_TABLES_SQL).fetchall()]


def table_counts(target: Target, snapshot: str | None) -> dict[str, int]:
    """Exact row counts of every user table, inside ``snapshot`` when given."""
    return TableCounter(target, snapshot).run()


class TableCounter:
    """:func:`table_counts` that another thread can stop (:meth:`cancel`).

    A backup counts beside pg_dump; when the backup fails or is interrupted,
    the count must not hold its clean-up until every table is scanned (or,
    behind a lock, forever): cancel sends PostgreSQL a cancel request.
    """

    def __init__(self, target: Target, snapshot: str | None) -> None:
        self._target = target
        self._snapshot = snapshot
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._cancelled = False

    def run(self) -> dict[str, int]:
        with psycopg.connect(self._target.connect_conninfo(), application_name="pgkeep-counts") as conn:
            with self._lock:
                self._check()
                self._conn = conn
            try:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                if self._snapshot:
                    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self._snapshot)))
                counts: dict[str, int] = {}
                for schema, table in user_tables(conn):
                    self._check()
                    q = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
                    row = conn.execute(q).fetchone()
                    counts[f"{schema}.{table}"] = int(row[0]) if row else 0
                conn.rollback()
                return counts
            finally:
                with self._lock:
                    self._conn = None

    def cancel(self) -> None:
        """Stop counting: the running query is cancelled, no further table is counted."""
        with self._lock:
            self._cancelled = True
            if self._conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._conn.cancel_safe(timeout=5)

    def _check(self) -> None:
        if self._cancelled:
            raise PgkeepError("counting rows was cancelled")


def database_size(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def backup_lock_holder(conn: psycopg.Connection) -> int | None:
    """PID of the backend holding the backup lock on the connected database, if any."""
    row = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = 0 AND objid = %s AND objsubid = 1",
        (BACKUP_LOCK_KEY,),
    ).fetchone()
    return int(row[0]) if row else None


_USER_SCHEMA = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'"
HAS_USER_OBJECTS_SQL = f"""
SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_SCHEMA})
    OR EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER_SCHEMA})
    OR EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {_USER_SCHEMA})
    OR EXISTS (SELECT 1 FROM pg_namespace n WHERE {_USER_SCHEMA} AND n.nspname <> 'public')
    OR EXISTS (SELECT 1 FROM pg_extension WHERE extname <> 'plpgsql')
    OR EXISTS (SELECT 1 FROM pg_largeobject_metadata)
"""


def has_user_objects(conn: psycopg.Connection) -> bool:
    """Whether the database holds anything a restore over it would destroy (tables, functions,
    types, schemas, extensions, large objects)."""
    row = conn.execute(HAS_USER_OBJECTS_SQL).fetchone()
    return bool(row and row[0])


# pg_dump's words when --lock-wait-timeout expires (it sets statement_timeout for its LOCK
# statements), and the table it names.
_LOCK_TIMEOUT = re.compile(
    r"canceling statement due to (?:statement|lock) timeout.*?LOCK TABLE (.+?) IN ACCESS SHARE MODE", re.S
)

# Sessions holding tables of the current database (other than this one), oldest transaction
# first: the pid, who, in which state since when, what they last ran, and which tables.
LOCK_HOLDERS_SQL = """
SELECT a.pid, a.usename, a.state,
       extract(epoch FROM now() - coalesce(a.xact_start, a.backend_start))::int,
       upper(substring(ltrim(coalesce(a.query, '')) FROM '^[A-Za-z]+')),
       nullif(a.application_name, ''), host(a.client_addr),
       min(format('%%I.%%I', n.nspname, c.relname)), count(*)
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.locktype = 'relation' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid <> pg_backend_pid()
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND (NOT %(exclusive)s OR l.mode = 'AccessExclusiveLock')
GROUP BY a.pid, a.usename, a.state, a.xact_start, a.backend_start, a.query, a.application_name, a.client_addr
ORDER BY min(coalesce(a.xact_start, a.backend_start))
LIMIT 5
"""


def lock_timeout_table(failure: str) -> str | None:
    """The table pg_dump gave up waiting for, if its failure is a lock timeout."""
    match = _LOCK_TIMEOUT.search(failure)
    return match.group(1) if match else None


def lock_holders(target: Target, *, exclusive: bool = False) -> list[str]:
    """Other sessions holding tables of the target's database (``exclusive``: only ACCESS EXCLUSIVE
    holders, the only ones a pg_dump waits for), described; best effort: [] on error.

    A statement is named by its first word only (UPDATE, ALTER): its text can hold any literal,
    a password included, and these lines reach logs, webhooks and API answers."""
    try:
        with connect(target, operation="locks") as conn:
            rows = conn.execute(LOCK_HOLDERS_SQL, {"exclusive": exclusive}).fetchall()
    except (PgkeepError, psycopg.Error):
        return []
    described = []
    for pid, user, state, age, command, application, client, table, tables in rows:
        more = f" and {tables - 1} more" if tables > 1 else ""
        who = f"user {user}" + (f", {application}" if application else "") + (f" from {client}" if client else "")
        last = f", last statement {command}" if command else ""
        described.append(f"pid {pid} holds {table}{more} ({who}, {state or 'state unknown'} for {age} s{last})")
    return described
