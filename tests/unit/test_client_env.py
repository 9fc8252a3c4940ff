"""Secrets reach client binaries through a private passfile, never argv or a message."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from pgkeep.config import DumpFormat
from pgkeep.pgtools import server as pgserver
from pgkeep.pgtools.binaries import Tool
from pgkeep.pgtools.commands import pg_dump_argv, psql_argv
from pgkeep.pgtools.conninfo import Target, _passfile_escape, client_env, passed_fds
from pgkeep.pgtools.process import Child

AWKWARD = "p@ss:w/o%r'd\" $x \\y"


def test_passfile_escaping() -> None:
    assert _passfile_escape("plain") == "plain"
    assert _passfile_escape("a:b") == "a\\:b"
    assert _passfile_escape("a\\b") == "a\\\\b"
    assert _passfile_escape("\\:") == "\\\\\\:"
    assert _passfile_escape(AWKWARD) == "p@ss\\:w/o%r'd\" $x \\\\y"


def passfile_dirs() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("pgkeep-pass-")}


def test_passfile_is_private_and_has_no_name() -> None:
    target = Target(params={"host": "db", "dbname": "app"}, password=AWKWARD)
    base = {"PATH": "/usr/bin", "PGPASSWORD": "leaked-from-caller"}
    before = passfile_dirs()
    with client_env(target, base) as env:
        passfile = env["PGPASSFILE"]
        assert passfile.startswith("/dev/fd/")
        (fd,) = passed_fds(env)
        assert Path(passfile).read_text() == "*:*:*:*:p@ss\\:w/o%r'd\" $x \\\\y\n"
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
        assert os.fstat(fd).st_nlink == 0  # no name anywhere: nothing to leave behind
        assert passfile_dirs() == before
        assert "PGPASSWORD" not in env
        assert all(AWKWARD not in value for value in env.values())
    with pytest.raises(OSError):
        os.fstat(fd)  # closed again


def test_passfile_is_private_whatever_the_umask() -> None:
    target = Target(params={}, password="secret")
    old = os.umask(0)
    try:
        with client_env(target, {}) as env:
            (fd,) = passed_fds(env)
            assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
    finally:
        os.umask(old)


def test_only_children_given_the_descriptor_can_read_the_passfile() -> None:
    with client_env(Target(params={}, password="secret"), {"PATH": os.environ["PATH"]}) as env:
        child = Child(["cat", env["PGPASSFILE"]], env=env, stdout=subprocess.PIPE)
        assert child.proc.stdout is not None
        assert child.proc.stdout.read() == b"*:*:*:*:secret\n"
        assert child.wait() == 0
        # Any other process of ours (no pass_fds) does not inherit it.
        other = subprocess.run(["cat", env["PGPASSFILE"]], env=env, capture_output=True, check=False)
        assert other.returncode != 0
        assert b"secret" not in other.stdout


def test_no_password_means_no_passfile() -> None:
    with client_env(Target(params={"host": "db"}), {"PGPASSWORD": "x"}) as env:
        assert "PGPASSFILE" not in env
        assert "PGPASSWORD" not in env


def test_password_with_a_newline_falls_back_to_the_environment() -> None:
    # A passfile line cannot hold a newline; the environment is only readable by the same user.
    with client_env(Target(params={}, password="two\nlines"), {}) as env:
        assert env["PGPASSWORD"] == "two\nlines"
        assert "PGPASSFILE" not in env


def test_argument_lists_carry_no_password() -> None:
    target = Target.from_url(
        "postgresql://app:p%40ss%3Aw%2Fo%25r%27d%22%20%24x%20%5Cy@db.example:5432/app?sslmode=require"
    )
    assert target.password == AWKWARD
    tool = Tool("pg_dump", Path("/usr/bin/pg_dump"), "15.18", 15)
    for fmt in DumpFormat:
        argv = pg_dump_argv(tool, target, fmt, snapshot="00000003-1", out_dir=Path("/tmp/x"))
        joined = "\0".join(argv)
        assert "p@ss" not in joined and "%40" not in joined
        assert "--no-password" in argv
        assert any(a.startswith("--dbname=") and "sslmode=require" in a for a in argv)
    assert "p@ss" not in "\0".join(psql_argv(tool, target))


def test_pg_dump_waits_for_locks_only_as_long_as_configured() -> None:
    target = Target.from_url("postgresql://app@db.example/app")
    tool = Tool("pg_dump", Path("/usr/bin/pg_dump"), "15.18", 15)
    assert "--lock-wait-timeout=600000" in pg_dump_argv(tool, target, DumpFormat.CUSTOM, lock_wait_timeout_s=600)
    assert "--lock-wait-timeout=1" in pg_dump_argv(tool, target, DumpFormat.CUSTOM, lock_wait_timeout_s=0.0001)
    assert not any(a.startswith("--lock-wait") for a in pg_dump_argv(tool, target, DumpFormat.CUSTOM))


@pytest.mark.parametrize("cause", ["statement timeout", "lock timeout"])
def test_a_lock_wait_timeout_names_its_table(cause: str) -> None:
    failure = (
        f"pg_dump exited with status 1: pg_dump: error: query failed: ERROR:  canceling statement due to {cause}\n"
        'pg_dump: detail: Query was: LOCK TABLE "Weird Schema"."Mixed Case; Table" IN ACCESS SHARE MODE'
    )
    assert pgserver.lock_timeout_table(failure) == '"Weird Schema"."Mixed Case; Table"'
    assert pgserver.lock_timeout_table("pg_dump exited with status 1: canceling statement due to user request") is None
