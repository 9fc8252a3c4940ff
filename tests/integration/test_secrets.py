"""The password never shows on a child's command line, in its environment, or in messages."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from helpers import (
    DbHandle,
    blocked_pg_dump_backend,
    child_pids,
    table_locked,
    wait_for,
)
from pgkeep.config import DumpFormat
from pgkeep.devcluster import DevCluster
from pgkeep.errors import PgkeepError
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.restore import RestoreOptions, resolve_backup, restore


def proc_fields(pid: int, name: str) -> list[str]:
    return Path(f"/proc/{pid}/{name}").read_bytes().decode("utf-8", "replace").split("\0")


def connecting_children(comm: str) -> list[int]:
    """Children of this process named ``comm`` that were started with a --dbname."""
    found = []
    for pid in child_pids(os.getpid(), comm):
        try:
            if any(arg.startswith("--dbname=") for arg in proc_fields(pid, "cmdline")):
                found.append(pid)
        except FileNotFoundError:
            pass  # it just exited
    return found


def secret_forms(password: str) -> list[str]:
    return [password, quote(password, safe=""), quote(password), password.replace("\\", "\\\\")]


def assert_no_secret(pid: int, password: str) -> dict[str, str]:
    """Check argv and environment of ``pid``; return its environment."""
    argv = proc_fields(pid, "cmdline")
    environ = proc_fields(pid, "environ")
    assert any(arg.startswith("--dbname=") for arg in argv), argv  # it does connect
    for form in secret_forms(password):
        assert all(form not in arg for arg in argv), argv
        assert all(form not in var for var in environ)
    env = dict(var.split("=", 1) for var in environ if "=" in var)
    assert "PGPASSWORD" not in env
    return env


def test_pg_dump_gets_the_password_only_through_a_private_passfile(
    ctx: Context, pg15: DevCluster, source_db: DbHandle
) -> None:
    with table_locked(source_db.conninfo) as lock:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                create_backup(ctx, fmt=DumpFormat.CUSTOM)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        wait_for(
            lambda: blocked_pg_dump_backend(source_db.conninfo, source_db.name),
            "pg_dump to wait for the lock",
        )
        (pid,) = wait_for(lambda: connecting_children("pg_dump"), "the pg_dump child")
        env = assert_no_secret(pid, pg15.superuser_password)
        # pg_dump reads an inherited descriptor of a file that no longer has a name:
        # nothing stays on disk, even if pgkeep is killed.
        passfile = env["PGPASSFILE"]
        assert passfile.startswith("/dev/fd/")
        in_child = Path(f"/proc/{pid}/fd/{passfile.removeprefix('/dev/fd/')}")
        assert stat.S_IMODE(in_child.stat().st_mode) == 0o600
        assert in_child.stat().st_nlink == 0
        assert os.readlink(in_child).endswith("(deleted)")
        lock.rollback()
    thread.join(60)
    assert not thread.is_alive() and errors == []


@pytest.mark.parametrize("fmt", [DumpFormat.CUSTOM, DumpFormat.PLAIN], ids=lambda v: v.value)
def test_restore_children_never_see_the_password_on_their_command_line(
    ctx: Context, pg15: DevCluster, source_db: DbHandle, empty_db: DbHandle, fmt: DumpFormat
) -> None:
    backup_id = create_backup(ctx, fmt=fmt).id
    with psycopg.connect(empty_db.conninfo) as conn:
        conn.execute("CREATE TABLE lock_me (id int)")
    # psql's first statement drops lock_me: it waits while we hold a lock on it (a lock
    # the safety backup's pg_dump of the target does not wait for).
    with table_locked(empty_db.conninfo, "lock_me", "ACCESS SHARE") as lock:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                restore(ctx, resolve_backup(ctx, backup_id), RestoreOptions(target_url=empty_db.url))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        # Not the short-lived `psql --version` that finding the binary runs.
        (psql,) = wait_for(lambda: connecting_children("psql"), "the loading psql child")
        assert_no_secret(psql, pg15.superuser_password)
        for pid in child_pids(os.getpid(), "pg_restore"):  # reads the archive, no connection
            assert all(pg15.superuser_password not in a for a in proc_fields(pid, "cmdline"))
        lock.rollback()
    thread.join(60)
    assert not thread.is_alive() and errors == []


def test_failed_restore_message_has_no_password(
    ctx: Context, pg15: DevCluster, source_db: DbHandle, empty_db: DbHandle
) -> None:
    backup_id = create_backup(ctx).id
    wrong = pg15.superuser_password + "!"
    with pytest.raises(PgkeepError) as info:
        restore(
            ctx,
            resolve_backup(ctx, backup_id),
            RestoreOptions(target_url=pg15.url(empty_db.name, password=wrong)),
        )
    text = str(info.value)
    assert "password authentication failed" in text
    for form in secret_forms(wrong) + secret_forms(pg15.superuser_password):
        assert form not in text
