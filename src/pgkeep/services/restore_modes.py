"""Restore modes beyond "replace the target in one transaction".

- atomic: restore into a new database and swap names at the end, so a
  restore that fails or is killed halfway leaves the original untouched.
- selective: chosen tables (optionally into another schema, next to the
  live data) or whole schemas, from a custom or directory backup.
- globals: roles and tablespaces saved with the backup, applied first on a
  new server.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pgkeep.config import DumpFormat
from pgkeep.errors import (
    InsufficientPrivilegeError,
    InvalidRequestError,
    RestoreFailedError,
    RestoreInProgressError,
    VerificationError,
)
from pgkeep.observability.logs import get_logger
from pgkeep.pgtools import partitions
from pgkeep.pgtools import server as pgserver
from pgkeep.pgtools.archive_offsets import OffsetRecorder
from pgkeep.pgtools.binaries import find_tool
from pgkeep.pgtools.commands import pg_restore_script_argv, psql_argv
from pgkeep.pgtools.conninfo import Target, client_env, passed_fds
from pgkeep.pgtools.process import Child
from pgkeep.pgtools.toast import read_server_toast, session_method, set_statement
from pgkeep.pipeline.sqlfilter import adapt_for_server
from pgkeep.services.artifacts import (
    Artifact,
    check_digest,
    explain_damage,
    extract_tar,
    pg_restore_for,
    staging_failed,
)
from pgkeep.services.context import Context

if TYPE_CHECKING:
    from pgkeep.services.restore import RestoreOptions

log = get_logger("pgkeep.restore")
NEW_MARK = "_pgkeep_new_"
OLD_MARK = "_pgkeep_old_"
SWAP_WAIT_S = 10.0


def toast_choice(ctx: Context, conn: psycopg.Connection, options: RestoreOptions) -> str | None:
    """The TOAST compression a restore's sessions set (``pgtools/toast.py``), or None to
    keep the server's default; ``conn`` is a session on the target, for its defaults."""
    choice = options.toast_compression or ctx.settings.restore_toast_compression
    server = read_server_toast(conn)
    method = session_method(choice, server)
    if method is not None:
        log.info("restore compression chosen", toast_compression=method, server_default=server.setting, phase="restore")
    return method


def require_createdb(conn: psycopg.Connection, server: Target, what: str, otherwise: str = "") -> None:
    """Refuse ``what`` (it creates a database) for a role without CREATEDB; ``otherwise``: another fix."""
    row = conn.execute(
        "SELECT current_user, rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if row is None or not row[1]:
        user = str(row[0]) if row else "the role"
        raise InsufficientPrivilegeError(
            f"{what} needs to create a database, and role {user} on {server.describe()} lacks the CREATEDB privilege",
            hint=f"ALTER ROLE {sql.Identifier(user).as_string(None)} CREATEDB"
            + (f", {otherwise}" if otherwise else ""),
        )


# --- atomic -----------------------------------------------------------------------------------------


def restore_atomic(ctx: Context, artifact: Artifact, target: Target, options: RestoreOptions) -> int:
    """Restore into a new database, then swap it in. Returns how many sessions were terminated."""
    from pgkeep.services.restore import restore_into

    maintenance = target.with_dbname("postgres")
    db = target.dbname
    new_name = f"{db[:40]}{NEW_MARK}{secrets.token_hex(3)}"
    # Held for the whole restore: one atomic restore per database, and any
    # leftover new database found while holding it belongs to a dead restore.
    with pgserver.connect(maintenance, operation="restore") as lock_conn:
        row = lock_conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"pgkeep.restore:{db}",)).fetchone()
        if not (row and row[0]):
            raise RestoreInProgressError(f"a restore of {db} is already in progress")
        with pgserver.connect(maintenance, operation="restore") as conn:
            require_createdb(conn, target, "an atomic restore")
            info = conn.execute(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype, pg_get_userbyid(datdba) "
                "FROM pg_database WHERE datname = %s",
                (db,),
            ).fetchone()
            if info is None:
                raise RestoreFailedError(
                    f"database {db} does not exist; an atomic restore replaces an existing database"
                )
            _drop_leftovers(conn, db)
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                    sql.Identifier(new_name), sql.Literal(info[0]), sql.Literal(info[1]), sql.Literal(info[2])
                )
            )
            with contextlib.suppress(psycopg.Error):
                conn.execute(
                    sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(new_name), sql.Identifier(info[3]))
                )
            _copy_database_properties(conn, db, new_name)
        try:
            restore_into(ctx, artifact, target.with_dbname(new_name), options)
            return _swap(maintenance, db, new_name)
        except BaseException:
            with contextlib.suppress(Exception), pgserver.connect(maintenance, operation="restore") as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(new_name)))
            raise


def _drop_leftovers(conn: psycopg.Connection, db: str) -> None:
    """Databases left by an atomic restore that was SIGKILLed (the caller holds the restore lock)."""
    for (name,) in conn.execute(
        "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (f"{db[:40]}{NEW_MARK}",)
    ).fetchall():
        # FORCE: the dead restore's backend may still be finishing a statement.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# Settings whose stored value is a list of already-quoted elements (search_path = "$user", public).
_LIST_SETTINGS = {"search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries"}


def _copy_database_properties(conn: psycopg.Connection, source: str, dest: str) -> None:
    """What a dump does not carry but the database itself has: grants, settings
    (``ALTER DATABASE ... SET``, also per role), comment and connection limit."""
    _copy_database_grants(conn, source, dest)
    row = conn.execute(
        "SELECT oid, datconnlimit, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (source,),
    ).fetchone()
    if row is None:
        return
    oid, connlimit, comment = row
    target = sql.Identifier(dest)
    statements = []
    if connlimit != -1:
        statements.append(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(target, sql.Literal(connlimit)))
    if comment is not None:
        statements.append(sql.SQL("COMMENT ON DATABASE {} IS {}").format(target, sql.Literal(comment)))
    for role, settings in conn.execute(
        "SELECT CASE WHEN setrole = 0 THEN NULL ELSE pg_get_userbyid(setrole) END, setconfig "
        "FROM pg_db_role_setting WHERE setdatabase = %s",
        (oid,),
    ).fetchall():
        for setting in settings or []:
            name, _, value = setting.partition("=")
            # List settings are stored with each element quoted already: write them as stored.
            rendered = sql.SQL(value) if name.lower() in _LIST_SETTINGS else sql.Literal(value)
            prefix = (
                sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(role), target)
                if role
                else sql.SQL("ALTER DATABASE {}").format(target)
            )
            statements.append(sql.SQL("{} SET {} = {}").format(prefix, sql.Identifier(name), rendered))
    for statement in statements:
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            log.warning("atomic restore: could not copy a database property: %s", str(exc).strip())


def _copy_database_grants(conn: psycopg.Connection, source: str, dest: str) -> None:
    """CONNECT/CREATE/TEMPORARY grants on the database itself are not in a dump: carry them over."""
    rows = conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, "
        "a.privilege_type FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s",
        (source,),
    ).fetchall()
    for grantee, privilege in rows:
        with contextlib.suppress(psycopg.Error):
            conn.execute(
                sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
                    sql.SQL(privilege), sql.Identifier(dest), sql.SQL(grantee)
                )
            )


def _swap(maintenance: Target, db: str, new_name: str) -> int:
    """Terminate the target's sessions and rename both databases in one transaction."""
    old_name = f"{db[:40]}{OLD_MARK}{secrets.token_hex(3)}"
    with pgserver.connect(maintenance, operation="restore") as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(db)))
        try:
            terminated = 0
            deadline = time.monotonic() + SWAP_WAIT_S
            while True:
                row = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (db,),
                ).fetchone()
                n = int(row[0]) if row else 0
                terminated += n
                if n == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            with conn.transaction():
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(db), sql.Identifier(old_name))
                )
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(new_name), sql.Identifier(db))
                )
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(db)))
            raise
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(old_name)))
    return terminated


# --- selective --------------------------------------------------------------------------------------


def parse_table(name: str) -> tuple[str, str]:
    schema, dot, table = name.partition(".")
    return (schema, table) if dot else ("public", name)


def refuse_selection_conflicts(conn: psycopg.Connection, options: RestoreOptions) -> None:
    """Refuse a selective restore onto what exists: a schema restored whole, a table where it would go."""
    for schema in options.schemas:
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
            raise InvalidRequestError(
                f"schema {schema} exists in the target; a schema is restored only where it is missing "
                "(restore single tables with --table and --into-schema next to live data)"
            )
    for schema, table in (parse_table(t) for t in options.tables):
        where = options.into_schema or schema
        if conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (where, table),
        ).fetchone():
            raise InvalidRequestError(
                f"table {where}.{table} exists in the target; restore it next to the live data with "
                "--into-schema SCHEMA, or drop it first"
            )


def restore_selective(
    ctx: Context, artifact: Artifact, target: Target, options: RestoreOptions, server_major: int, toc: list[str]
) -> str:
    """Restore only ``options.tables`` / ``options.schemas``, in one transaction. Returns a summary.
    ``toc`` is the archive's table of contents (read while it was verified).

    A partitioned table comes with its partitions, at every level, attached
    again as they were (it holds no rows of its own).
    """
    if artifact.fmt is DumpFormat.PLAIN:
        raise InvalidRequestError("selective restore needs a custom or directory backup, not a plain SQL dump")
    tables = [parse_table(t) for t in options.tables]
    into = options.into_schema
    with pgserver.connect(target, operation="restore") as conn:
        toast = toast_choice(ctx, conn, options)
        quote = _quoter(conn)
        refuse_selection_conflicts(conn, options)
        requested = [f"{quote(schema)}.{quote(table)}" for schema, table in tables]
        new_schema = quote(into) if into else None
        # pg_restore --schema restores what is in a schema but not the schema itself.
        prelude = (set_statement(toast) if toast else "") + "".join(
            f"CREATE SCHEMA IF NOT EXISTS {quote(n)};\n" for n in [*options.schemas, *([into] if into else [])]
        )
    bin_dir = ctx.settings.pg_bin_dir
    pg_restore = pg_restore_for(artifact, bin_dir)
    psql = find_tool("psql", server_major, bin_dir)
    staging = Path(tempfile.mkdtemp(prefix="restore-", dir=ctx.temp_root()))
    try:
        archive = stage_archive(artifact, staging)
        attached = partitions.attachments(pg_restore, archive, toc, staging) if tables else {}
        parts = partitions.descendants(requested, attached)
        renames = (
            {name.encode(): f"{new_schema}.{partitions.quoted_table(name)}".encode() for name in [*requested, *parts]}
            if new_schema
            else {}
        )
        attach_script = "".join(attached[part][1] + "\n" for part in parts).encode()
        groups: list[list[str]] = [["--schema=" + s] for s in options.schemas]
        by_schema: dict[str, list[str]] = {}
        for schema, table in [*tables, *(partitions.split_qualified(part) for part in parts)]:
            by_schema.setdefault(schema, []).append(table)
        groups += [[f"--schema={s}", *[f"--table={t}" for t in ts]] for s, ts in by_schema.items()]

        with client_env(target) as env:
            loader = Child(
                psql_argv(psql, target), env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, scrub=target.scrub
            )
            assert loader.proc.stdin is not None
            try:
                loader.proc.stdin.write(prelude.encode())
                for group in groups:
                    argv = pg_restore_script_argv(pg_restore, archive, no_owner=options.no_owner, no_acl=options.no_acl)
                    argv[1:1] = group
                    producer = Child(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
                    assert producer.proc.stdout is not None
                    script = adapt_for_server(iter(partial(producer.proc.stdout.read, 1 << 20), b""), server_major)
                    for chunk in rename_tables(script, renames):
                        loader.proc.stdin.write(chunk)
                    failure = producer.failure(producer.wait())
                    if failure:
                        raise RestoreFailedError(f"selective restore failed: {failure}")
                for chunk in rename_tables(iter([attach_script]), renames):
                    loader.proc.stdin.write(chunk)
                loader.proc.stdin.close()
            except BrokenPipeError:
                pass
            except BaseException:
                loader.kill()
                raise
            failure = loader.failure(loader.wait())
            if failure:
                raise RestoreFailedError(f"selective restore failed, nothing was changed: {failure}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    restored = [f"{into or s}.{t}" for s, t in tables] + [f"schema {s}" for s in options.schemas]
    with_parts = f" (with {len(parts)} partition{'s' if len(parts) != 1 else ''})" if parts else ""
    return "restored " + ", ".join(restored) + with_parts


def _quoter(conn: psycopg.Connection) -> Callable[[str], str]:
    """Quote identifiers exactly as pg_dump does (the server's quote_ident)."""
    cache: dict[str, str] = {}

    def quote(name: str) -> str:
        if name not in cache:
            row = conn.execute("SELECT quote_ident(%s)", (name,)).fetchone()
            cache[name] = str(row[0]) if row else name
        return cache[name]

    return quote


def rename_tables(script: Iterator[bytes], renames: dict[bytes, bytes]) -> Iterator[bytes]:
    """Rewrite qualified table names in the script's statements, never in COPY data.

    Only the exact qualified names of the chosen tables change, whole (``public.t``
    never inside ``public.tkind``), so types and functions they use still resolve
    to the live schema.
    """
    if not renames:
        yield from script
        return
    # Not inside a longer name: no identifier byte (UTF-8 included), quote or dot on either side.
    name_byte = rb'A-Za-z0-9_$\x80-\xff"'
    names = b"|".join(re.escape(old) for old in sorted(renames, key=len, reverse=True))
    pattern = re.compile(rb"(?<![" + name_byte + rb".])(?:" + names + rb")(?![" + name_byte + rb"])")

    def rename(match: re.Match[bytes]) -> bytes:
        return renames[match.group(0)]

    pending = b""
    in_copy = False
    for chunk in script:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = []
        for line in lines:
            if in_copy:
                in_copy = line != b"\\."
            else:
                line = pattern.sub(rename, line)
                in_copy = line.startswith(b"COPY ") and line.endswith(b"FROM stdin;")
            out.append(line)
        yield b"\n".join(out) + b"\n" if out else b""
    if pending:
        yield pending


def stage_archive(artifact: Artifact, staging: Path) -> Path:
    """Decompress the archive to a private file (or directory) that pg_restore can seek in and
    read several times; the stored bytes are checked against the checksum on the way."""
    reader = artifact.reader()
    try:
        stored = artifact.decoded(reader.chunks())
        if artifact.fmt is DumpFormat.DIRECTORY:
            dest = extract_tar(stored, staging / "dump")
        else:
            dest = staging / "archive.dump"
            offsets = OffsetRecorder()
            with open(dest, "wb") as fh:
                for chunk in stored:
                    fh.write(chunk)
                    offsets.observe(chunk)
                fh.flush()
                if not offsets.patch(fh.fileno()):
                    log.info("staged archive keeps its unset data offsets", reason=offsets.reason)
        reader.drain()
    except VerificationError as exc:
        explain_damage(artifact, reader, exc)
        raise
    except OSError as exc:
        raise staging_failed(exc, staging / "archive") from None
    finally:
        reader.close()
    check_digest(artifact, reader)
    return dest


# --- globals ----------------------------------------------------------------------------------------


def apply_globals(ctx: Context, artifact: Artifact, target: Target, server_major: int) -> str:
    """Create the backup's roles and tablespaces on the target server; existing ones are kept."""
    if not artifact.globals_info or artifact.globals_opener is None:
        raise InvalidRequestError(
            "this backup has no saved roles and tablespaces (take backups with --globals or PGKEEP_BACKUP_GLOBALS=1)"
        )
    reader = artifact.globals_opener()
    try:
        raw = reader.read()
    finally:
        reader.close()
    if hashlib.sha256(raw).hexdigest() != artifact.globals_info.get("checksum"):
        raise VerificationError(f"checksum mismatch for {artifact.globals_info.get('filename')}")
    script = artifact.decoded_globals(raw)
    with pgserver.connect(target, operation="restore") as conn:
        row = conn.execute("SELECT quote_ident(current_user)").fetchone()
        me = str(row[0]) if row else ""
    # Never change the restoring role itself (its password is what pgkeep logs in with).
    lines = [ln for ln in script.split(b"\n") if not ln.startswith(f"ALTER ROLE {me} ".encode())]
    psql = find_tool("psql", server_major, ctx.settings.pg_bin_dir)
    argv = psql_argv(psql, target, single_transaction=False)
    argv = [a for a in argv if a != "--set=ON_ERROR_STOP=1"]
    with client_env(target) as env:
        result = subprocess.run(
            argv, input=b"\n".join(lines), env=env, pass_fds=passed_fds(env), capture_output=True, check=False
        )
    errors = [
        target.scrub(e)
        for e in result.stderr.decode("utf-8", "replace").splitlines()
        if "ERROR:" in e and "already exists" not in e
    ]
    if result.returncode != 0 or errors:
        raise RestoreFailedError("restoring roles and tablespaces failed: " + "; ".join(errors[:5] or ["psql failed"]))
    return "roles and tablespaces restored"
