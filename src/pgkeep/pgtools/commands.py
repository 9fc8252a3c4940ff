"""Argument lists for the client binaries. Never a shell string.

The connection string on the command line carries no password (see
:mod:`pgkeep.pgtools.conninfo`); ``--no-password`` makes a missing or wrong
password fail at once instead of prompting.
"""

from __future__ import annotations

from pathlib import Path

from pgkeep.config import DumpFormat
from pgkeep.pgtools.binaries import Tool
from pgkeep.pgtools.conninfo import Target

_FORMAT_FLAG = {DumpFormat.CUSTOM: "c", DumpFormat.PLAIN: "p", DumpFormat.DIRECTORY: "d"}


def timeout_ms(seconds: float) -> int | None:
    """A timeout for PostgreSQL (``lock_timeout``, ``--lock-wait-timeout``) in milliseconds, at least
    1; None for 0 (no timeout). Every version reads a bare number as milliseconds."""
    return max(1, round(seconds * 1000)) if seconds > 0 else None


def pg_dump_argv(
    tool: Tool,
    target: Target,
    fmt: DumpFormat,
    *,
    snapshot: str | None = None,
    jobs: int = 1,
    out_dir: Path | None = None,
    lock_wait_timeout_s: float = 0,
) -> list[str]:
    argv = [str(tool.path), f"--dbname={target.conninfo()}", "--no-password", f"--format={_FORMAT_FLAG[fmt]}"]
    lock_wait_ms = timeout_ms(lock_wait_timeout_s)
    if lock_wait_ms is not None:
        argv.append(f"--lock-wait-timeout={lock_wait_ms}")
    if fmt is not DumpFormat.PLAIN:
        # pgkeep compresses the stream itself (zstd for every client version).
        argv.append("--compress=0")
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    if fmt is DumpFormat.DIRECTORY:
        assert out_dir is not None
        argv += [f"--jobs={max(1, jobs)}", f"--file={out_dir}"]
    return argv


def pg_restore_list_argv(tool: Tool, archive: Path | None = None) -> list[str]:
    argv = [str(tool.path), "--list"]
    if archive is not None:
        argv.append(str(archive))
    return argv


def pg_restore_script_argv(
    tool: Tool, archive: Path | None, *, no_owner: bool = False, no_acl: bool = False
) -> list[str]:
    """pg_restore writing SQL to stdout (fed to psql in one transaction)."""
    argv = [str(tool.path), "--file=-"]
    if no_owner:
        argv.append("--no-owner")
    if no_acl:
        argv.append("--no-acl")
    if archive is not None:
        argv.append(str(archive))
    return argv


def pg_restore_parallel_argv(
    tool: Tool,
    target: Target,
    archive: Path,
    *,
    jobs: int,
    no_owner: bool = False,
    no_acl: bool = False,
) -> list[str]:
    argv = [
        str(tool.path),
        f"--dbname={target.conninfo()}",
        "--no-password",
        "--exit-on-error",
        f"--jobs={max(1, jobs)}",
    ]
    if no_owner:
        argv.append("--no-owner")
    if no_acl:
        argv.append("--no-acl")
    argv.append(str(archive))
    return argv


def psql_argv(tool: Tool, target: Target, *, single_transaction: bool = True) -> list[str]:
    argv = [
        str(tool.path),
        f"--dbname={target.conninfo()}",
        "--no-password",
        "--no-psqlrc",
        "--quiet",
        "--set=ON_ERROR_STOP=1",  # without it psql exits 0 after SQL errors
        "--file=-",
    ]
    if single_transaction:
        argv.insert(-1, "--single-transaction")
    return argv
