"""pgkeep demo."""

from __future__ import annotations

from typing import Annotated

import typer

from pgkeep.cli.main import app, out_console
from pgkeep.errors import EXIT_CODES_HELP


@app.command(epilog=EXIT_CODES_HELP)
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Leave the demo's directory in place.")] = False,
) -> None:
    """A first run: throwaway PostgreSQL, sample data, backup, verify, restore, compare."""
    from pgkeep.demo import run_demo

    if not run_demo(out_console, keep=keep):
        raise typer.Exit(1)
