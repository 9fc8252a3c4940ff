"""Whether the backup role can dump everything: the relations pg_dump would fail on, found before it runs.

pg_dump locks and reads every table and sequence it dumps: one without
SELECT (or in a schema without USAGE) fails the whole backup with
"permission denied". A table under row-level security fails it too, unless
the role bypasses RLS (superuser, BYPASSRLS, or the owner of a table that
does not FORCE it): pg_dump turns row_security off and refuses to dump a
subset of the rows. A large object it cannot read fails it as well ("permission
denied for large object"): large objects have their own privileges, which
neither SELECT on tables nor pg_read_all_data gives.
"""

from __future__ import annotations

import psycopg

# Tables (plain and partitioned) and sequences pg_dump reads; extension members are dumped
# by the extension's own script, system schemas not at all. Sent without parameters: "%" is literal.
_DUMPED = """
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND c.relpersistence <> 't'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
"""

UNREADABLE_SQL = f"""
SELECT format('%I.%I', n.nspname, c.relname)
{_DUMPED}
  AND NOT (has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'))
ORDER BY 1
"""

RLS_SQL = f"""
SELECT format('%I.%I', n.nspname, c.relname)
{_DUMPED}
  AND c.relrowsecurity
  AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
  AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
ORDER BY 1
"""


def unreadable_relations(conn: psycopg.Connection) -> list[str]:
    """Tables and sequences the connected role cannot read (qualified, quoted names)."""
    return [str(row[0]) for row in conn.execute(UNREADABLE_SQL).fetchall()]


def rls_blocked_tables(conn: psycopg.Connection) -> list[str]:
    """Tables whose row-level security applies to the connected role (pg_dump refuses them)."""
    return [str(row[0]) for row in conn.execute(RLS_SQL).fetchall()]


# Large objects the role may not read: neither superuser, nor lo_compat_privileges, nor SELECT
# for PUBLIC or a role it has the privileges of (the owner's rights are in the default ACL).
LARGE_OBJECTS_SQL = """
SELECT m.oid::bigint, count(*) OVER ()
FROM pg_largeobject_metadata m
WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
  AND NOT current_setting('lo_compat_privileges')::boolean
  AND NOT EXISTS (SELECT 1 FROM aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) a
                  WHERE a.privilege_type = 'SELECT' AND (a.grantee = 0 OR pg_has_role(a.grantee, 'USAGE')))
ORDER BY 1
LIMIT %s
"""


def unreadable_large_objects(conn: psycopg.Connection, sample: int = 5) -> tuple[int, list[int]]:
    """How many large objects the connected role cannot read, and the first ``sample`` of their OIDs."""
    rows = conn.execute(LARGE_OBJECTS_SQL, (sample,)).fetchall()
    return (int(rows[0][1]) if rows else 0), [int(row[0]) for row in rows]
