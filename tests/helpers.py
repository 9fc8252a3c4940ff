"""Small shared test helpers (importable as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

# Objects the template database adds next to the sample schema; all need quoting.
WEIRD_SCHEMA = "Weird Schema"
WEIRD_TABLE = "Mixed Case; Table"
WEIRD_SEQUENCE = "ticket numbers"
WEIRD_ROWS = 3


@dataclass(frozen=True)
class DbHandle:
    """A test database in the session's dev cluster.

    ``url`` is a postgresql:// URL over TCP with the superuser's (awkward)
    password; ``conninfo`` goes through the unix socket with trust auth.
    """

    name: str
    url: str
    conninfo: str


def scalar(conninfo: str, query: str | sql.Composable) -> Any:
    """The first column of the first row of ``query``."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]
