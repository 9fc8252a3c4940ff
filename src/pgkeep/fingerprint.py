"""Content fingerprints of a database, to check that a restore gave back the same data.

For every user table: its row count and a SHA-256 of its rows' text, in a fixed
order. Two databases with equal fingerprints hold the same rows in every table
(as far as their text output goes), whatever their physical layout or the
server version they run on.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

Fingerprint = dict[str, tuple[int, str]]

# Leaf tables only (relkind 'r'): a partitioned parent holds no rows of its own, its
# leaves are listed themselves. Temporary tables of other sessions are not content.
_TABLES_SQL = r"""
SELECT n.nspname,
       c.relname,
       coalesce(
           (SELECT array_agg(
                       jsonb_build_array(a.attname, a.attcollation <> 0) ORDER BY k.ord)
            FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = c.oid AND i.indisprimary),
           '{}') AS pk_columns
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'
  AND n.nspname NOT LIKE 'pg\_temp\_%'
ORDER BY n.nspname, c.relname
"""

# A row's text depends on these settings; pin them so that fingerprints taken on
# different clusters (e.g. the source and a restore target) are comparable.
_SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, MDY'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
)


def _order_by(pk_columns: list[Any]) -> sql.Composable:
    """ORDER BY key: the primary key, else the whole row text.

    Collatable columns sort with COLLATE "C" so the order (and thus the hash)
    does not depend on the database's locale.
    """
    if not pk_columns:
        return sql.SQL('t::text COLLATE "C"')
    parts = [
        sql.SQL('{} COLLATE "C"').format(sql.Identifier(name)) if collatable else sql.Identifier(name)
        for name, collatable in pk_columns
    ]
    return sql.SQL(", ").join(parts)


def fingerprint(conninfo: str) -> Fingerprint:
    """Fingerprint every user table of the database at ``conninfo``.

    Returns ``{"schema.table": (row_count, sha256_hex)}`` with names as plain,
    unquoted text. Runs in one REPEATABLE READ read-only transaction so that all
    tables are seen at the same instant.
    """
    result: Fingerprint = {}
    with psycopg.connect(conninfo) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        for setting in _SESSION_SETTINGS:
            conn.execute(setting)
        tables = conn.execute(_TABLES_SQL).fetchall()
        for schema, table, pk_columns in tables:
            query = sql.SQL(
                "SELECT count(*), encode(sha256(convert_to("
                "coalesce(string_agg(t::text, E'\\n' ORDER BY {order}), ''), 'UTF8')), 'hex')"
                " FROM {schema}.{table} AS t"
            ).format(
                order=_order_by(pk_columns),
                schema=sql.Identifier(schema),
                table=sql.Identifier(table),
            )
            row = conn.execute(query).fetchone()
            assert row is not None  # an aggregate always returns one row
            result[f"{schema}.{table}"] = (int(row[0]), str(row[1]))
    return result


def diff_fingerprints(a: Fingerprint, b: Fingerprint, *, a_label: str = "first", b_label: str = "second") -> list[str]:
    """Describe how two fingerprints differ, one line per table; empty when equal."""
    differences: list[str] = []
    for key in sorted(a.keys() | b.keys()):
        if key not in b:
            differences.append(f"{key}: only in {a_label} ({a[key][0]} rows)")
        elif key not in a:
            differences.append(f"{key}: only in {b_label} ({b[key][0]} rows)")
        elif a[key][0] != b[key][0]:
            differences.append(f"{key}: row count {a[key][0]} in {a_label}, {b[key][0]} in {b_label}")
        elif a[key][1] != b[key][1]:
            differences.append(f"{key}: content differs (both have {a[key][0]} rows)")
    return differences
