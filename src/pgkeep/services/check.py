"""``pgkeep check``: is this installation ready to back up and restore? Find out before the night's backup.

Each check is independent and says what it found, and how to fix a failure:
the catalog (reachable, schema current, not inside the database backed
up), the storage (a probe object
written, read back and deleted; free space next to the newest backup's
size), encryption (a key here reads what new backups are encrypted to),
the database server (reachable), the client tools for its version,
the backup role's access (tables, sequences and large objects it cannot
read, row-level security pg_dump would refuse), and WAL archiving. With ``physical``, what
physical backups and point-in-time recovery need is required rather than
reported; with ``archive_test``, a WAL switch proves archive_command end to
end: the segment must appear in the archive this pgkeep reads.

Checks only read, except the probe object (deleted) and, with
``archive_test``, one WAL segment switched and archived.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import psycopg
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from pgkeep.catalog.db import SCHEMA_HEAD, current_revision
from pgkeep.catalog.models import BackupStatus, DatabaseBackup
from pgkeep.errors import PgkeepError
from pgkeep.pgtools import dump_access
from pgkeep.pgtools import server as pgserver
from pgkeep.pgtools.archiver import read_archiver
from pgkeep.pgtools.binaries import find_tool
from pgkeep.pgtools.physical import check_can_back_up, cluster_info, probe_replication
from pgkeep.pipeline.crypto import fingerprint, load_identities
from pgkeep.services import catalog_place
from pgkeep.services.context import Context
from pgkeep.services.serialize import MAX_NAMED, human_bytes, named
from pgkeep.storage import local_path_from_url
from pgkeep.storage.base import Storage, put_bytes
from pgkeep.wal.archive import copies

Status = Literal["ok", "warn", "fail", "skip"]

PROBE_BYTES = 4096
PROBE_PREFIX = "pgkeep-check-"
# A probe older than this was left by a check that was killed between writing and deleting it
# (a running check's probe lives for a second or two).
STALE_PROBE_AGE = timedelta(hours=1)
# Free space below this many times the newest backup's size is worth a warning.
FREE_SPACE_FACTOR = 2


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "hint": self.hint}


@dataclass(frozen=True)
class CheckOptions:
    physical: bool = False  # physical backups and PITR must work: archiving problems fail
    archive_test: bool = False  # switch a WAL segment and wait for it in the archive
    archive_timeout_s: float = 60.0


def _failed(name: str, exc: PgkeepError) -> Check:
    return Check(name, "fail", exc.message, exc.hint)


def run_checks(ctx: Context, options: CheckOptions) -> list[Check]:
    """Every check, in order; a check that needs the server is skipped when it cannot be reached."""
    checks = [check_catalog(ctx), check_storage(ctx), check_encryption(ctx)]
    try:
        conn = pgserver.connect(ctx.target, operation="check")
    except PgkeepError as exc:
        checks.append(_failed("server", exc))
        later = ["client tools", "access", "archiving"]
        later += (["replication"] if options.physical else []) + (["archive test"] if options.archive_test else [])
        checks += [Check(name, "skip", "the server cannot be reached") for name in later]
        return checks
    with conn:
        if checks[0].status != "fail" and catalog_place.holds_catalog(ctx, conn):
            refusal = catalog_place.catalog_inside(ctx.target, "backup")
            checks[0] = Check("catalog", "fail", refusal.message, refusal.hint)
        checks.append(_server(ctx, conn))
        checks.append(check_tools(ctx, conn, options))
        checks.append(check_access(conn))
        checks.append(check_archiving(conn, options))
        if options.physical:
            checks.append(check_replication(ctx))
        if options.archive_test:
            checks.append(check_archive_roundtrip(ctx, conn, options.archive_timeout_s))
    return checks


def check_catalog(ctx: Context) -> Check:
    url = make_url(ctx.settings.catalog_url)
    where = url.render_as_string(hide_password=True)
    try:
        revision = current_revision(ctx.catalog.engine)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        reason = " ".join(str(cause).split())[:300]
        return Check("catalog", "fail", f"cannot reach the catalog {where}: {reason}", "check PGKEEP_CATALOG_URL")
    if revision == SCHEMA_HEAD:
        return Check("catalog", "ok", f"{where}, schema at {SCHEMA_HEAD}")
    if url.get_backend_name() == "sqlite":
        return Check("catalog", "ok", f"{where}, schema {revision or 'not created'}: the next command migrates it")
    return Check(
        "catalog",
        "fail",
        f"{where}: schema at {revision or 'none'}, this pgkeep needs {SCHEMA_HEAD}",
        "run `pgkeep db upgrade` once (a newer catalog needs a newer pgkeep)",
    )


def check_storage(ctx: Context) -> Check:
    """Write, read back and delete a probe object; on local disk, compare free space with the last backup."""
    storage, url = ctx.storage, ctx.settings.storage_url
    name = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    payload = os.urandom(PROBE_BYTES)
    try:
        put_bytes(storage, name, payload)
        try:
            with storage.open_reader(name) as reader:
                back = reader.read()
        finally:
            storage.delete(name)
        swept = _sweep_stale_probes(storage)
    except PgkeepError as exc:
        return Check("storage", "fail", f"{url}: {exc.message}", exc.hint or "check PGKEEP_STORAGE_URL and access")
    if back != payload:
        return Check("storage", "fail", f"{url}: a probe object read back differs from what was written")
    detail = f"{url}: wrote, read back and deleted a probe object"
    if swept:
        detail += f" (and {swept} left by an interrupted check)"
    if urlsplit(url).scheme != "file":
        return Check("storage", "ok", detail)
    free = shutil.disk_usage(local_path_from_url(url)).free
    newest = _newest_backup_size(ctx)
    detail += f"; {human_bytes(free)} free"
    if newest and free < FREE_SPACE_FACTOR * newest:
        return Check(
            "storage",
            "warn",
            f"{detail}, less than {FREE_SPACE_FACTOR}x the newest backup ({human_bytes(newest)})",
            "free space, or shorten retention (pgkeep cleanup)",
        )
    return Check("storage", "ok", detail + (f" (newest backup {human_bytes(newest)})" if newest else ""))


def _sweep_stale_probes(storage: Storage) -> int:
    """Delete probe objects of checks killed before their cleanup; how many there were."""
    cutoff = datetime.now(UTC) - STALE_PROBE_AGE
    stale = [o.name for o in storage.list(PROBE_PREFIX) if o.modified < cutoff]
    for name in stale:
        storage.delete(name)
    return len(stale)


def check_encryption(ctx: Context) -> Check:
    """Whether new backups are encrypted, and whether this host holds a key that reads them.

    A backup encrypted to keys nobody holds is lost; one this host cannot read
    cannot be verified, drilled or restored here (the weekly drill included).
    """
    settings = ctx.settings
    try:
        recipients = [str(r) for r in ctx.age_recipients]
        keys = load_identities(settings.age_identity_file, "") if settings.age_identity_file else None
    except PgkeepError as exc:
        return _failed("encryption", exc)
    if not recipients:
        return Check("encryption", "ok", "new backups are not encrypted (PGKEEP_AGE_RECIPIENTS is unset)")
    wanted = [fingerprint(r) for r in recipients]
    encrypted = f"new backups are encrypted (age) to {len(recipients)} key(s): {', '.join(wanted)}"
    if keys is None:
        return Check(
            "encryption",
            "warn",
            f"{encrypted}; PGKEEP_AGE_IDENTITY_FILE is unset, so this host cannot verify their contents, "
            "run restore drills or restore them",
            "set PGKEEP_AGE_IDENTITY_FILE where restores and drills run, and keep a copy of the key "
            "away from the backups",
        )
    held = [f for f in keys.fingerprints if f in wanted]
    if not held:
        return Check(
            "encryption",
            "fail",
            f"{encrypted}; none of them is in {keys.source} (it holds {', '.join(keys.fingerprints)}): "
            "nothing here can read the new backups",
            "list the identity file's public key (`age-keygen -y FILE`) in PGKEEP_AGE_RECIPIENTS, or point "
            "PGKEEP_AGE_IDENTITY_FILE at the key that matches",
        )
    return Check("encryption", "ok", f"{encrypted}; {keys.source} holds {len(held)} of them: this host reads them")


def _newest_backup_size(ctx: Context) -> int | None:
    try:
        with ctx.catalog.session() as s:
            return s.scalar(
                select(DatabaseBackup.size)
                .where(DatabaseBackup.status == BackupStatus.COMPLETED)
                .order_by(DatabaseBackup.completed_at.desc())
                .limit(1)
            )
    except SQLAlchemyError:
        return None  # the catalog check says why


def _server(ctx: Context, conn: psycopg.Connection) -> Check:
    row = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    role = "role ?" if row is None else f"role {row[0]}" + (" (superuser)" if row[1] else "")
    detail = f"PostgreSQL {pgserver.server_version_text(conn)} at {ctx.target.describe()}, {role}"
    if not pgserver.in_recovery(conn):
        return Check("server", "ok", detail)
    detail += "; a standby: backups can come from it, restores need the primary"
    delays = conn.execute(
        "SELECT current_setting('max_standby_streaming_delay'), current_setting('max_standby_archive_delay')"
    ).fetchone()
    if delays is None or delays == ("-1", "-1"):
        return Check("server", "ok", detail)
    return Check(
        "server",
        "warn",
        f"{detail}; replay cancels a query that holds it up longer than max_standby_streaming_delay "
        f"({delays[0]}) or max_standby_archive_delay ({delays[1]}), so a longer dump can fail: the primary's "
        "vacuum removing rows its snapshot reads, or an exclusive lock (DDL, vacuum truncating a table)",
        "on a standby that serves backups, set both to -1 (replay waits for the dump; the standby lags "
        "meanwhile) and hot_standby_feedback = on",
    )


def check_tools(ctx: Context, conn: psycopg.Connection, options: CheckOptions) -> Check:
    major = pgserver.server_major(conn)
    names = ["pg_dump", "pg_dumpall", "pg_restore", "psql"]
    if options.physical:
        names += ["pg_basebackup", "pg_verifybackup"]
    found = []
    for name in names:
        try:
            tool = find_tool(name, major, ctx.settings.pg_bin_dir)
        except PgkeepError as exc:
            return _failed("client tools", exc)
        found.append(f"{name} {tool.version}")
    where = ctx.settings.pg_bin_dir or "found by version"
    return Check("client tools", "ok", f"{', '.join(found)} ({where})")


def check_access(conn: psycopg.Connection) -> Check:
    """What pg_dump would be refused: relations the role cannot read, row-level security it does not bypass,
    large objects it may not read."""
    unreadable = dump_access.unreadable_relations(conn)
    if unreadable:
        return Check(
            "access",
            "fail",
            f"the role cannot read {len(unreadable)} table(s) or sequence(s) a backup dumps: {named(unreadable)}",
            "GRANT USAGE on their schemas and SELECT on them (or GRANT pg_read_all_data, PostgreSQL 14+)",
        )
    blocked = dump_access.rls_blocked_tables(conn)
    if blocked:
        return Check(
            "access",
            "fail",
            f"row-level security applies to the role on {len(blocked)} table(s): {named(blocked)}; "
            "pg_dump refuses to dump part of a table's rows",
            "ALTER ROLE ... BYPASSRLS for the backup role, or back up as the tables' owner",
        )
    count, oids = dump_access.unreadable_large_objects(conn, MAX_NAMED)
    if count:
        return Check(
            "access",
            "fail",
            f"the role cannot read {count} large object(s): {named([str(oid) for oid in oids], count)}",
            "GRANT SELECT ON LARGE OBJECT <oid> TO the backup role for each (pg_read_all_data does not cover "
            "large objects), or back up as their owner",
        )
    return Check("access", "ok", "the role can read every table, sequence and large object a backup dumps")


def check_archiving(conn: psycopg.Connection, options: CheckOptions) -> Check:
    archiver = read_archiver(conn)
    if options.physical:
        try:
            check_can_back_up(cluster_info(conn), incremental=False)
        except PgkeepError as exc:
            return _failed("archiving", exc)
    if archiver.problems and (options.physical or archiver.archive_mode != "off"):
        return Check(
            "archiving", "fail", "; ".join(archiver.problems), "`pgkeep archive status --server` shows the details"
        )
    if archiver.archive_mode == "off":
        return Check("archiving", "ok", "archive_mode is off: logical backups only (physical backups and PITR need it)")
    last = (
        f"last archived {archiver.last_archived_wal} at {archiver.last_archived_time.isoformat()}"
        if archiver.last_archived_time is not None
        else "nothing archived since the statistics were reset"
    )
    backlog = "" if archiver.ready is None else f", {archiver.ready} file(s) waiting in pg_wal"
    return Check("archiving", "ok", f"archive_mode {archiver.archive_mode}, {last}{backlog}")


def check_replication(ctx: Context) -> Check:
    """What pg_basebackup needs that an ordinary connection does not show: a replication connection."""
    try:
        where = probe_replication(ctx.target)
    except PgkeepError as exc:
        return _failed("replication", exc)
    return Check("replication", "ok", f"a replication connection (as pg_basebackup opens) works: {where}")


def check_archive_roundtrip(ctx: Context, conn: psycopg.Connection, timeout_s: float) -> Check:
    """Close a WAL segment and wait until it is in the archive this pgkeep reads."""
    name = "archive test"
    try:
        # A transaction id makes the switch close a segment with something in it (a
        # switch on an empty segment does nothing).
        conn.execute("SELECT txid_current()")
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return Check(
            name,
            "fail",
            "the role may not switch WAL segments (pg_switch_wal)",
            "run the check as a superuser, or GRANT EXECUTE ON FUNCTION pg_switch_wal() TO the role",
        )
    except psycopg.errors.ObjectNotInPrerequisiteState as exc:  # a standby, or wal_level minimal
        return Check(name, "fail", " ".join(str(exc).split()))
    assert row is not None
    segment = str(row[0])
    started = time.monotonic()
    while True:
        try:
            if copies(ctx.storage, segment):
                waited = time.monotonic() - started
                return Check(name, "ok", f"switched to a new segment: {segment} was archived within {waited:.1f} s")
        except PgkeepError as exc:
            return _failed(name, exc)
        if time.monotonic() - started > timeout_s:
            break
        time.sleep(0.5)
    failing = read_archiver(conn).problems
    return Check(
        name,
        "fail",
        f"{segment} was not in {ctx.settings.storage_url} after {timeout_s:.0f} s"
        + (f" ({'; '.join(failing)})" if failing else ""),
        "archive_command must push to this storage (its --config names the same PGKEEP_STORAGE_URL); "
        "the server log has archive_command's errors",
    )
