"""How a restore compresses the values it stores (TOAST compression).

A dump does not record how stored values were compressed, only a column's
explicit ``ALTER COLUMN ... SET COMPRESSION``: every other value is
compressed again on restore with the session's ``default_toast_compression``,
pglz unless someone configured it. On text-heavy data that compression is
most of a restore's server time: the benchmark's realistic data set (1 GB
of transcripts) loaded in 25 s with pglz and 9 s with lz4, for a database
9% larger. So a restore's sessions use lz4 when the server was built with
it and its default is the built-in one (``auto``); a default configured in
postgresql.conf, for the database or the role, or in the connection's
options is respected, and ``server`` leaves the default alone.

A restore that runs in one session says so in SQL, first thing in its
script (:func:`set_statement`): connection poolers reject unknown startup
options. pg_restore ``--jobs`` opens its own sessions, so there the choice
goes into the connection's options (``Target.with_session_settings``).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from pgkeep.config import ToastCompression
from pgkeep.errors import InvalidRequestError

SETTING = "default_toast_compression"
METHODS = ("pglz", "lz4")


@dataclass(frozen=True)
class ServerToast:
    """The target session's ``default_toast_compression``, as pg_settings reports it."""

    setting: str | None  # None: the server predates the setting (PostgreSQL 13 and older)
    configured: bool  # chosen by someone (file, database, role, connection), not the built-in default
    methods: tuple[str, ...]  # what this server was built to compress with


def read_server_toast(conn: psycopg.Connection) -> ServerToast:
    row = conn.execute("SELECT setting, source, enumvals FROM pg_settings WHERE name = %s", (SETTING,)).fetchone()
    if row is None:
        return ServerToast(setting=None, configured=False, methods=("pglz",))
    setting, source, methods = row
    return ServerToast(setting=str(setting), configured=source != "default", methods=tuple(methods or ()))


def session_method(choice: ToastCompression, server: ServerToast) -> str | None:
    """The method a restore's sessions should set, or None to keep the server's default.

    Raises :class:`InvalidRequestError` when an explicit choice cannot work on
    this server, before anything is changed.
    """
    if choice is ToastCompression.SERVER:
        return None
    if choice is ToastCompression.AUTO:
        if server.configured or "lz4" not in server.methods or server.setting == "lz4":
            return None
        return "lz4"
    if server.setting is None:
        if choice is ToastCompression.PGLZ:
            return None  # the only method such a server has
        raise InvalidRequestError(
            "the target server has no TOAST compression choice (PostgreSQL 14 or newer has lz4)",
            operation="restore",
            hint="restore with --toast-compression auto or server",
        )
    if choice.value not in server.methods:
        raise InvalidRequestError(
            f"the target server cannot compress with {choice.value}: it was built without it "
            f"(it has {', '.join(server.methods)})",
            operation="restore",
            hint="restore with --toast-compression auto or server",
        )
    return None if server.setting == choice.value else choice.value


def set_statement(method: str) -> str:
    """The SQL that makes the rest of a session compress with ``method``."""
    if method not in METHODS:
        raise ValueError(f"unknown TOAST compression method {method!r}")
    return f"SET {SETTING} = {method};\n"
