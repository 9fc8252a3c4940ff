"""pgkeep catalog rebuild."""

from __future__ import annotations

from typing import Annotated

import typer

from pgkeep.cli.main import app, err_console, out_console, print_json, state
from pgkeep.cli.tables import print_rows
from pgkeep.errors import EXIT_CODES_HELP, ExitCode
from pgkeep.services.rebuild import rebuild_catalog

catalog_app = typer.Typer(
    help="The catalog as an index of storage: recreate it from the backups' manifests.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command(epilog=EXIT_CODES_HELP)
def rebuild(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recreate catalog rows from the manifests in PGKEEP_STORAGE_URL (e.g. after losing the catalog).

    Each artifact is read in full and must match its manifest's size and
    SHA-256 (no private key needed) before its row is imported as COMPLETED.
    Backups already in the catalog are skipped, so it can run again. Artifacts
    without a manifest, and artifacts that are missing or fail the check, are
    reported and not imported: the exit code is then 5.
    """
    report = rebuild_catalog(state(ctx).context())
    data = report.as_json()
    if as_json:
        print_json(data)
    else:
        if report.imported:
            rows = [[entry["id"], entry["filename"]] for entry in report.imported]
            print_rows(out_console, ["id", "filename"], rows)
        out_console.print(data["message"])
        for problem in report.problems:
            err_console.print(f"  not imported: {problem['filename']}: {problem['problem']}", markup=False)
    if report.problems:
        raise typer.Exit(int(ExitCode.INVALID))
