"""pgkeep check: is this installation ready to back up and restore?"""

from __future__ import annotations

from typing import Annotated

import typer

from pgkeep.cli.main import app, out_console, print_json, state
from pgkeep.errors import ExitCode
from pgkeep.services.check import Check, CheckOptions, run_checks

CHECK_HELP = (
    "Exit codes: 0 every check passed (warnings allowed); 1 a check failed; "
    "6 the configuration itself is invalid (nothing could be checked)."
)
_LABELS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@app.command("check", epilog=CHECK_HELP)
def check(
    ctx: typer.Context,
    physical: Annotated[
        bool,
        typer.Option(
            "--physical",
            help="Require what physical backups and point-in-time recovery need (wal_level, archiving "
            "without failures, pg_basebackup and pg_verifybackup, and a replication connection as "
            "pg_basebackup opens it: REPLICATION role, pg_hba.conf line, max_wal_senders).",
        ),
    ] = False,
    archive_test: Annotated[
        bool,
        typer.Option(
            "--archive-test",
            help="Switch to a new WAL segment (pg_switch_wal: superuser or EXECUTE on it) and wait until "
            "it is in the archive this pgkeep reads: archive_command proven end to end.",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="With --archive-test: how long to wait for the segment (s).")
    ] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check the catalog, the storage (a probe written, read back and deleted), the server, the client
    tools for its version, the backup role's access and WAL archiving. Changes nothing else."""
    options = CheckOptions(physical=physical, archive_test=archive_test, archive_timeout_s=timeout)
    checks = run_checks(state(ctx).context(check_schema=False), options)
    ok = not any(c.status == "fail" for c in checks)
    if as_json:
        print_json({"ok": ok, "checks": [c.as_json() for c in checks]})
    else:
        for c in checks:
            _print(c)
        counts = {status: sum(c.status == status for c in checks) for status in _LABELS}
        verdict = "ready" if ok else "NOT ready: fix what failed"
        warnings = f"{counts['warn']} warning{'' if counts['warn'] == 1 else 's'}"
        out_console.print(
            f"{verdict} ({counts['ok']} ok, {warnings}, {counts['fail']} failed"
            + (f", {counts['skip']} skipped)" if counts["skip"] else ")"),
            markup=False,
        )
    if not ok:
        raise typer.Exit(int(ExitCode.FAILED))


def _print(c: Check) -> None:
    # One report, all on stdout (the exit code tells failure): `pgkeep check > file` keeps it whole.
    out_console.print(f"{_LABELS[c.status]}  {c.name:<13} {c.detail}", markup=False)
    if c.hint:
        out_console.print(f"{'':<6}{'':<14}hint: {c.hint}", markup=False)
