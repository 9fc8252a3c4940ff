"""pgkeep admin create-token, list-tokens, revoke-token: API tokens for the admin API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import typer

from pgkeep.catalog.admin_models import Role
from pgkeep.catalog.models import utcnow
from pgkeep.cli.main import app, err_console, out_console, print_json, state
from pgkeep.cli.tables import print_rows, when
from pgkeep.errors import EXIT_CODES_HELP
from pgkeep.services import admin
from pgkeep.services.serialize import iso

admin_app = typer.Typer(
    help="API tokens of the admin REST API (`pgkeep serve`).\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
)
app.add_typer(admin_app, name="admin")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@admin_app.command("create-token", epilog=EXIT_CODES_HELP)
def create_token(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Who or what the token is for.")],
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            case_sensitive=False,
            help="viewer: list and show; operator: also back up and verify; "
            "admin: also restore, delete, cleanup and read the audit log.",
        ),
    ],
    expires_days: Annotated[
        int | None,
        typer.Option(
            "--expires-days",
            min=1,
            max=3650,
            help="The token stops working this many days from now (default: until revoked).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token and print it. It is shown this once: only its hash is kept."""
    lifetime = timedelta(days=expires_days) if expires_days is not None else None
    new = admin.create_token(state(ctx).context(), name, role, expires_in=lifetime)
    if as_json:
        print_json(new.as_json())
        return
    expiry = f", expires {iso(new.expires_at)}" if new.expires_at else ""
    out_console.print(f"Token {new.id} ({new.role.value}{expiry}) for {new.name}:", markup=False)
    out_console.print(new.token, markup=False, soft_wrap=True)
    err_console.print("Store it now: it cannot be shown again. Send it as `Authorization: Bearer ...`.")


@admin_app.command("list-tokens", epilog=EXIT_CODES_HELP)
def list_tokens(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List API tokens (never their secrets), revoked ones included."""
    tokens = admin.list_tokens(state(ctx).context())
    if as_json:
        print_json([t.as_json() for t in tokens])
        return
    now = utcnow()
    rows = []
    for t in tokens:
        data = t.as_json()
        times = [when(data["createdAt"]), when(data["lastUsedAt"])]
        rows.append([t.id, t.name, t.role.value, _token_state(t, now), data["prefix"], *times])
    headers = ["id", "name", "role", "state", "prefix", "created", "last used"]
    print_rows(out_console, headers, rows, wrap=["name"], optional=["prefix", "created", "last used"])


def _token_state(token: admin.TokenInfo, now: datetime) -> str:
    """active, expires ..., expired ..., or revoked ... (UTC, to the minute)."""
    minute = "%Y-%m-%d %H:%M"
    if token.revoked_at is not None:
        return f"revoked {token.revoked_at.strftime(minute)}"
    if token.expires_at is None:
        return "active"
    return f"{'expired' if token.expired(now) else 'expires'} {token.expires_at.strftime(minute)}"


@admin_app.command("revoke-token", epilog=EXIT_CODES_HELP)
def revoke_token(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token: it stops working at once. Revoking twice is not an error."""
    message = admin.revoke_token(state(ctx).context(), token_id)
    if as_json:
        print_json({"message": message})
    else:
        out_console.print(message, markup=False)
