"""pgkeep backup, list, show, verify, delete, cleanup."""

from __future__ import annotations

from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from pgkeep.catalog.models import BackupStatus, BackupType
from pgkeep.cli.describe import describe_backup
from pgkeep.cli.main import app, err_console, out_console, print_json, state
from pgkeep.cli.progress import ReadProgress, bar_wanted
from pgkeep.cli.tables import print_rows, when
from pgkeep.config import Compression, DumpFormat
from pgkeep.errors import EXIT_CODES_HELP, ExitCode
from pgkeep.services import manage
from pgkeep.services.backup import create_backup
from pgkeep.services.physical import create_physical_backup
from pgkeep.services.serialize import human_bytes
from pgkeep.storage import LocalStorage, local_path_from_url


class TypeOpt(str, Enum):
    manual = "manual"
    full = "full"
    incremental = "incremental"
    scheduled = "scheduled"
    pre_migration = "pre_migration"


class KindOpt(StrEnum):
    logical = "logical"
    physical = "physical"


class TypeFilter(str, Enum):
    FULL = "FULL"
    INCREMENTAL = "INCREMENTAL"
    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"
    PRE_MIGRATION = "PRE_MIGRATION"


class StatusFilter(str, Enum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (the API's shapes).")]


def _display_location(storage_url: str | None) -> str:
    if storage_url and storage_url.startswith("file://"):
        return str(local_path_from_url(storage_url))
    return storage_url or "-"


@app.command(epilog=EXIT_CODES_HELP)
def backup(
    ctx: typer.Context,
    backup_type: Annotated[
        TypeOpt | None,
        typer.Option("--type", "-t", help="Backup type (default manual; physical: full, or incremental on 17+)."),
    ] = None,
    kind: Annotated[
        KindOpt,
        typer.Option(
            "--kind", help="logical (pg_dump of DATABASE_URL) or physical (pg_basebackup of its cluster, for PITR)."
        ),
    ] = KindOpt.logical,
    fmt: Annotated[DumpFormat | None, typer.Option("--format", "-F", help="Dump format (default custom).")] = None,
    compression: Annotated[
        Compression | None, typer.Option("--compression", "-c", help="Compression (default zstd).")
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, max=64, help="Parallel dump jobs (directory format).")
    ] = 1,
    to_dir: Annotated[
        Path | None, typer.Option("--dir", help="Store in this local directory instead of PGKEEP_STORAGE_URL.")
    ] = None,
    with_globals: Annotated[
        bool | None,
        typer.Option("--globals/--no-globals", help="Also save roles and tablespaces (pg_dumpall --globals-only)."),
    ] = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Take a backup of DATABASE_URL: logical (default), or physical (its whole cluster, for PITR)."""
    physical = kind is KindOpt.physical
    if physical and (fmt is not None or jobs != 1 or with_globals):
        raise typer.BadParameter("--format, --jobs and --globals apply to logical backups only")
    if not physical and backup_type is TypeOpt.incremental:
        raise typer.BadParameter("incremental backups are physical: add --kind physical")
    chosen = backup_type or (TypeOpt.full if physical else TypeOpt.manual)
    context = state(ctx).context()
    storage = LocalStorage(to_dir) if to_dir is not None else None
    show_progress = bar_wanted(quiet=quiet, as_json=as_json)
    with Progress(
        SpinnerColumn(),
        TextColumn("backing up"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show_progress,
        transient=True,
    ) as bar:
        task = bar.add_task("backup", total=None)
        if physical:
            result = create_physical_backup(
                context,
                backup_type=BackupType(chosen.value.upper()),
                compression=compression,
                storage=storage,
                progress=lambda n: bar.update(task, completed=n),
            )
        else:
            result = create_backup(
                context,
                backup_type=BackupType(chosen.value.upper()),
                fmt=fmt,
                compression=compression,
                jobs=jobs,
                storage=storage,
                include_globals=with_globals,
                progress=lambda n: bar.update(task, completed=n),
            )
    if as_json:
        print_json(result.as_json())
        return
    out_console.print("✅ Backup completed!")
    out_console.print(f"   File: {_display_location(result.storage_url)}", markup=False)
    out_console.print(f"   Size: {result.size} bytes")
    out_console.print(f"   Checksum: {result.checksum}")
    out_console.print(f"   Id: {result.id}")


@app.command("list", epilog=EXIT_CODES_HELP)
def list_cmd(
    ctx: typer.Context,
    backup_type: Annotated[TypeFilter | None, typer.Option("--type", case_sensitive=False)] = None,
    status: Annotated[StatusFilter | None, typer.Option("--status", case_sensitive=False)] = None,
    kind: Annotated[KindOpt | None, typer.Option("--kind", case_sensitive=False, help="logical or physical")] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List backups, newest first."""
    data = manage.list_backups(
        state(ctx).context(),
        page=page,
        limit=limit,
        backup_type=BackupType(backup_type.value) if backup_type else None,
        status=BackupStatus(status.value) if status else None,
        kind=kind.value if kind else None,
    )
    if as_json:
        print_json(data)
        return
    rows = [
        [b["id"], b["type"], b["status"], when(b["startedAt"]), human_bytes(b["size"]), b["filename"]]
        for b in data["backups"]
    ]
    print_rows(
        out_console,
        ["id", "type", "status", "started (UTC)", "size", "filename"],
        rows,
        wrap=["started (UTC)"],
        optional=["filename"],
    )
    p = data["pagination"]
    out_console.print(f"page {p['page']} of {max(p['pages'], 1)}, {p['total']} backups")


@app.command(epilog=EXIT_CODES_HELP)
def show(ctx: typer.Context, backup_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False) -> None:
    """Show one backup."""
    data = manage.get_backup(state(ctx).context(), backup_id)
    if as_json:
        print_json(data)
        return
    lines = describe_backup(data)
    width = max(len(label) for label, _ in lines)
    for label, text in lines:
        out_console.print(f"{label + ':':<{width + 1}}  {text}", markup=False)


class LevelOpt(str, Enum):
    checksum = "checksum"
    archive = "archive"
    restore = "restore"


@app.command(epilog=EXIT_CODES_HELP)
def verify(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(metavar="ID")],
    level: Annotated[
        LevelOpt,
        typer.Option(
            "--level",
            help="checksum: stored bytes; archive: also readable; "
            "restore: also a restore drill into a scratch database.",
        ),
    ] = LevelOpt.archive,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Verify a backup. Exit 0 only when valid."""
    context = state(ctx).context()
    show_progress = bar_wanted(quiet=quiet, as_json=as_json)
    size = manage.get_backup(context, backup_id).get("size") if show_progress else None
    with ReadProgress(enabled=show_progress, total=int(size) if size else None, armed=True) as bar:
        result = manage.verify_backup(context, backup_id, level.value, on_read=bar.update)
    if as_json:
        print_json(result.as_json())
    else:
        mark = "✓" if result.valid else "✗"
        out_console.print(f"{mark} {result.message}", markup=False)
    if not result.valid:
        raise typer.Exit(int(ExitCode.INVALID))


@app.command(epilog=EXIT_CODES_HELP)
def delete(
    ctx: typer.Context, backup_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False
) -> None:
    """Delete a backup's files and mark it DELETED."""
    message = manage.delete_backup(state(ctx).context(), backup_id)
    if as_json:
        print_json({"message": message})
    else:
        out_console.print(message)


@app.command(epilog=EXIT_CODES_HELP)
def cleanup(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be deleted.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply the retention policy: delete expired backups no rule keeps (--dry-run shows the plan and why).

    Never deletes the newest COMPLETED backup (logical and physical each), a kept one, or one still in
    progress; keeps the newest backup of each of the last PGKEEP_RETENTION_DAILY
    days, _WEEKLY weeks, _MONTHLY months and _YEARLY years.
    """
    result = manage.cleanup_expired(state(ctx).context(), dry_run=dry_run)
    data = result.as_json()
    if as_json:
        print_json(data)
    else:
        if dry_run:
            rows = [[d["id"], d["action"], "; ".join(d["reasons"])] for d in result.plan]
            print_rows(out_console, ["id", "action", "why"], rows, wrap=["why"])
        out_console.print(data["message"])
        for backup_id in result.deleted:
            out_console.print(f"  {'would delete' if dry_run else 'deleted'} {backup_id}")
        for backup_id, why in result.failed.items():
            err_console.print(f"  could not delete {backup_id}: {why}", markup=False)
        for warning in result.warnings:
            err_console.print(f"  warning: {warning}", markup=False)
    if result.failed:
        raise typer.Exit(int(ExitCode.FAILED))


@app.command(epilog=EXIT_CODES_HELP)
def keep(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(metavar="ID")],
    off: Annotated[bool, typer.Option("--off", help="Release the backup to the retention policy again.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Mark a backup to keep: retention never deletes it (--off releases it)."""
    data = manage.set_keep(state(ctx).context(), backup_id, not off)
    if as_json:
        print_json(data)
    else:
        out_console.print(f"backup {backup_id} {'is kept' if data['keep'] else 'follows the retention policy'}")
