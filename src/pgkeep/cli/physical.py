"""The physical side of ``pgkeep restore``: point-in-time recovery into a new data directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from pgkeep.cli.backups import KindOpt
from pgkeep.cli.main import out_console, print_json
from pgkeep.cli.progress import ReadProgress
from pgkeep.services.context import Context
from pgkeep.services.pitr import PitrOptions, restore_physical

KindOption = Annotated[
    KindOpt,
    typer.Option(
        "--kind", help="logical: a pg_dump backup into a database; physical: point-in-time, into a new data directory."
    ),
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Physical: the new data directory (absent or empty).")
]
ToTimeOpt = Annotated[
    str | None, typer.Option("--to-time", help="Physical: recover to this time (ISO 8601; without a zone: UTC).")
]
ToLsnOpt = Annotated[str | None, typer.Option("--to-lsn", help="Physical: recover to this WAL location (LSN).")]
ToXidOpt = Annotated[
    str | None,
    typer.Option(
        "--to-xid",
        help="Physical: recover to the commit of this transaction id (64-bit with epoch, or 32-bit). "
        "Default base backup: the newest that ended before the transaction started, else the oldest.",
    ),
]
ToNameOpt = Annotated[
    str | None,
    typer.Option(
        "--to-name",
        help="Physical: recover to this restore point (pg_create_restore_point). Its position is unknown "
        "to the catalog, so the default base backup is the OLDEST (replays more WAL; --backup picks another).",
    ),
]
LatestOpt = Annotated[bool, typer.Option("--latest", help="Physical: recover all archived WAL (the default target).")]
BackupOpt = Annotated[
    str | None,
    typer.Option(
        "--backup",
        help="Physical: the base backup (default: the newest that ended before the target; "
        "see --to-xid and --to-name).",
    ),
]
StartOpt = Annotated[
    bool, typer.Option("--start", help="Physical: start the server, wait for recovery, report where it stopped.")
]
PortOpt = Annotated[
    int | None, typer.Option("--port", min=1, max=65535, help="Physical: the restored server's port (default: free).")
]
OsUserOpt = Annotated[
    str | None,
    typer.Option("--os-user", help="Physical, as root: the OS user to own and run the restored cluster (postgres)."),
]
KeepArchivingOpt = Annotated[
    bool,
    typer.Option(
        "--keep-archiving",
        help="Physical: keep the source's archive_mode (default: off, so the restore never writes into its archive).",
    ),
]
NoPrefetchOpt = Annotated[
    bool,
    typer.Option(
        "--no-prefetch",
        help="Physical: restore_command fetches each segment when asked, instead of a background fetcher "
        "working ahead of recovery.",
    ),
]
WalConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--wal-config",
        help="Physical: settings file for restore_command, readable by the server's OS user "
        "(default: written into the data directory, removed after recovery).",
    ),
]


def restore_physical_cmd(context: Context, options: PitrOptions, bar: ReadProgress, *, as_json: bool) -> None:
    """Run the restore and print its outcome (errors go through the CLI's error mapping).

    ``bar`` shows the unpacking of the backup (its chain) on stderr; it
    stands full while recovery replays the WAL after the last byte.
    """
    with bar:
        bar.arm()
        result = restore_physical(context, dataclasses.replace(options, on_read=bar.update, on_total=bar.set_total))
    if as_json:
        print_json(result.as_json())
        return
    out_console.print(f"✅ {result.message}", markup=False)
    if result.started:
        out_console.print(f"   Reached WAL: {result.reached_lsn} (timeline {result.timeline})", markup=False)
        if result.reached_time:
            out_console.print(f"   Last transaction: {result.reached_time.isoformat()}", markup=False)
        out_console.print(f"   Target reached: {'yes' if result.target_reached else 'NO'}", markup=False)
        out_console.print(f"   Server log: {result.log_file}", markup=False)
