"""pgkeep serve: the admin REST API under uvicorn."""

from __future__ import annotations

import gc
import ipaddress
from typing import Annotated

import typer

from pgkeep.cli.main import app, err_console, state
from pgkeep.errors import EXIT_CODES_HELP, ConfigError
from pgkeep.observability.logs import configure as configure_logging
from pgkeep.services import admin


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command(epilog=EXIT_CODES_HELP)
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", envvar="PGKEEP_API_HOST", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="PGKEEP_API_PORT", min=0, max=65535, help="TCP port.")] = 8000,
    no_scheduler: Annotated[
        bool, typer.Option("--no-scheduler", help="Do not run scheduled backups in this process.")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Serve the admin API (/api/admin/backups, /api/admin/audit-logs, /docs) until stopped.

    Authenticate with tokens from `pgkeep admin create-token`. Plain HTTP: on
    anything but loopback, put a TLS-terminating proxy in front.
    """
    try:
        import uvicorn

        from pgkeep.api import create_app
    except ImportError as exc:
        raise ConfigError(
            f"pgkeep serve needs the API extra ({exc.name} is missing)",
            hint="pip install 'pgkeep[api]'",
        ) from None

    context = state(ctx).context()
    if not any(t.revoked_at is None for t in admin.list_tokens(context)):
        err_console.print(
            "note: no API token exists yet; create one with `pgkeep admin create-token --name NAME --role admin`"
        )
    if not _is_loopback(host):
        err_console.print(
            f"warning: serving plain HTTP on {host}; tokens cross the network in clear unless a TLS proxy is in front",
            markup=False,
        )
    configure_logging()
    application = create_app(context, scheduler=not no_scheduler)
    # Everything imported and built so far lives as long as the server: moved out of the
    # collector's reach, a full collection no longer walks it (they paused a request
    # for 64-78 ms, see docs/benchmark.md).
    gc.collect()
    gc.freeze()
    uvicorn.run(application, host=host, port=port, log_level=log_level.lower())
