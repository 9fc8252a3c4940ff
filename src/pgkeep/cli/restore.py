"""pgkeep restore."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import typer

from pgkeep.cli import physical as phys
from pgkeep.cli.backups import KindOpt
from pgkeep.cli.main import app, out_console, print_json, state
from pgkeep.cli.progress import ReadProgress, bar_wanted
from pgkeep.config import ToastCompression
from pgkeep.errors import EXIT_CODES_HELP, NotConfirmedError
from pgkeep.services.pitr import PitrOptions, RecoveryTarget
from pgkeep.services.restore import RestoreOptions, RestorePlan, resolve_backup, resolve_file, restore


@app.command("restore", epilog=EXIT_CODES_HELP)
def restore_cmd(
    ctx: typer.Context,
    backup_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="Catalogued backup to restore.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Restore this backup file (catalogued or not).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Verify only; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    target_url: Annotated[
        str | None, typer.Option("--target-url", help="Restore into this database instead of DATABASE_URL.")
    ] = None,
    create_db: Annotated[
        bool, typer.Option("--create-db", help="Create the target database if it does not exist.")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option("--jobs", "-j", min=1, max=64, help="Parallel restore (custom/directory; not all-or-nothing)."),
    ] = 1,
    no_owner: Annotated[bool, typer.Option("--no-owner", help="Do not restore object ownership.")] = False,
    no_acl: Annotated[bool, typer.Option("--no-acl", help="Do not restore privileges.")] = False,
    atomic: Annotated[
        bool,
        typer.Option(
            "--atomic", help="Restore into a new database and swap names at the end (terminates the target's sessions)."
        ),
    ] = False,
    safety_backup: Annotated[
        bool, typer.Option("--safety-backup/--no-safety-backup", help="Back up the target's current contents first.")
    ] = True,
    tables: Annotated[
        list[str] | None, typer.Option("--table", help="Restore only this table (schema.table); repeatable.")
    ] = None,
    schemas: Annotated[
        list[str] | None,
        typer.Option("--schema", help="Restore only this schema (must be missing from the target); repeatable."),
    ] = None,
    into_schema: Annotated[
        str | None, typer.Option("--into-schema", help="Put the --table tables in this schema, next to the live data.")
    ] = None,
    with_globals: Annotated[
        bool, typer.Option("--globals", help="Create the backup's saved roles and tablespaces first.")
    ] = False,
    toast_compression: Annotated[
        ToastCompression | None,
        typer.Option(
            "--toast-compression",
            help="How restored values are compressed: auto (lz4 when the server has it and its "
            "default_toast_compression is not configured), server (its default), lz4 or pglz. "
            "Default: PGKEEP_RESTORE_TOAST_COMPRESSION, else auto.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    kind: phys.KindOption = KindOpt.logical,
    data_dir: phys.DataDirOpt = None,
    to_time: phys.ToTimeOpt = None,
    to_lsn: phys.ToLsnOpt = None,
    to_xid: phys.ToXidOpt = None,
    to_name: phys.ToNameOpt = None,
    latest: phys.LatestOpt = False,
    base_backup: phys.BackupOpt = None,
    start: phys.StartOpt = False,
    port: phys.PortOpt = None,
    os_user: phys.OsUserOpt = None,
    keep_archiving: phys.KeepArchivingOpt = False,
    wal_config: phys.WalConfigOpt = None,
    no_prefetch: phys.NoPrefetchOpt = False,
) -> None:
    """Verify a backup, then replace the target database's contents with it.

    The checksum and archive are checked before anything is touched. Without
    --yes, the word `yes` must be typed on a terminal. Single-job restores are
    all-or-nothing: on any error the target is left as it was.

    --kind physical: point-in-time recovery from a physical backup and the WAL
    archive into a NEW data directory (never over an existing cluster).
    """
    if kind is KindOpt.physical:
        if backup_id is not None or file is not None:
            raise typer.BadParameter("a physical restore takes --backup ID, not an ID argument or --file")
        if data_dir is None:
            raise typer.BadParameter("a physical restore needs --data-dir DIR (a new, empty directory)")
        if toast_compression is not None:
            raise typer.BadParameter("--toast-compression is for logical restores (a physical one copies files)")
        target = RecoveryTarget.parse(to_time=to_time, to_lsn=to_lsn, to_xid=to_xid, to_name=to_name, latest=latest)
        options = PitrOptions(
            data_dir=data_dir,
            target=target,
            backup_id=base_backup,
            start=start,
            port=port,
            os_user=os_user,
            keep_archiving=keep_archiving,
            config_file=wal_config,
            prefetch=not no_prefetch,
        )
        bar = ReadProgress(enabled=bar_wanted(quiet=quiet, as_json=as_json), total=None)
        phys.restore_physical_cmd(state(ctx).context(), options, bar, as_json=as_json)
        return
    physical_only = (data_dir, base_backup, port, to_time, to_lsn, to_xid, to_name, os_user, wal_config)
    if any(v is not None for v in physical_only) or start or latest or keep_archiving or no_prefetch:
        raise typer.BadParameter("--data-dir, --to-*, --latest, --backup, --start, --port need --kind physical")
    if (backup_id is None) == (file is None):
        raise typer.BadParameter("give either a backup ID or --file PATH (not both)")
    context = state(ctx).context()
    artifact = resolve_backup(context, backup_id) if backup_id else resolve_file(context, file)  # type: ignore[arg-type]
    say = (lambda *_: None) if as_json else (lambda text: out_console.print(text, markup=False))
    say(f"🔄 Preparing to restore from: {file or artifact.name}")

    def show(plan: RestorePlan) -> None:
        say(f"   Checksum: {plan.checksum}")
        say("   ✓ Backup file is valid")
        if plan.toast_compression:
            say(
                f"   Long values will be compressed with {plan.toast_compression} "
                "(--toast-compression server keeps the server's default)"
            )
        if plan.other_sessions and not (tables or schemas):
            n = plan.other_sessions
            what = (
                "the atomic swap ends them"
                if atomic
                else "a table one of them uses holds the restore up, for PGKEEP_LOCK_WAIT_TIMEOUT at most"
            )
            say(f"   ⚠️  {n} other session{'s are' if n > 1 else ' is'} connected to the target: {what}")

    def confirm(plan: RestorePlan) -> bool:
        show(plan)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise NotConfirmedError(
                "refusing to restore without confirmation: no terminal to ask on",
                hint="pass --yes to confirm non-interactively",
            )
        if tables or schemas:
            out_console.print(
                f"⚠️  This will restore {', '.join([*(tables or []), *(schemas or [])])} into {plan.target}",
                markup=False,
            )
        else:
            out_console.print(f"⚠️  WARNING: This will REPLACE ALL DATA in {plan.target}", markup=False)
        if atomic:
            out_console.print("⚠️  The atomic swap terminates every other session connected to it.", markup=False)
        answer = input("Type 'yes' to confirm: ")
        if answer.strip() != "yes":
            out_console.print("Cancelled.")
            return False
        return True

    def confirm_then_show(plan: RestorePlan) -> bool:
        confirmed = confirm(plan)
        if confirmed:
            bar.arm()
        return confirmed

    with ReadProgress(enabled=bar_wanted(quiet=quiet, as_json=as_json), total=artifact.size) as bar:
        if dry_run:
            bar.arm()
        outcome = restore(
            context,
            dataclasses.replace(artifact, on_read=bar.update),
            RestoreOptions(
                target_url=target_url,
                dry_run=dry_run,
                jobs=jobs,
                no_owner=no_owner,
                no_acl=no_acl,
                create_database=create_db,
                safety_backup=safety_backup,
                atomic=atomic,
                tables=tuple(tables or ()),
                schemas=tuple(schemas or ()),
                into_schema=into_schema,
                restore_globals=with_globals,
                toast_compression=toast_compression,
            ),
            confirm=confirm_then_show,
        )
    if as_json:
        print_json(
            {
                "message": outcome.message,
                "checksum": outcome.checksum,
                "dryRun": outcome.dry_run,
                "terminatedSessions": outcome.terminated_sessions,
                "target": outcome.plan.target if outcome.plan else None,
                **outcome.details(),
            }
        )
    elif outcome.dry_run:
        assert outcome.plan is not None  # a dry run stops after planning
        show(outcome.plan)
        say(f"   Would restore into {outcome.plan.target}")
        say("🔍 Dry run - backup verified, no changes made")
    else:
        say(f"✅ {outcome.message}")
