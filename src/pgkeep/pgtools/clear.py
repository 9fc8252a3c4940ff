"""Empty a database in place, so a restore over it starts clean.

``pg_restore --clean --if-exists`` is not enough: it drops a partitioned
table's inherited constraints one partition at a time and fails with
"cannot drop inherited constraint". Instead pgkeep drops whole objects with
CASCADE. The statements are generated from the target's catalogs and run in
the *same transaction* as the restore, so a failed restore leaves the
original contents in place.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

_SYSTEM_SCHEMA = (
    "n.nspname IN ('pg_catalog', 'information_schema') "
    "OR n.nspname LIKE 'pg\\_toast%%' OR n.nspname LIKE 'pg\\_temp\\_%%'"
)

# Objects in schema public, by pg_identify_object type; extension members are
# dropped with their extension, indexes/constraints/rowtypes with their tables.
_PUBLIC_OBJECTS_SQL = """
SELECT o.type, o.identity, t.typtype
FROM pg_depend d
CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, 0) o
LEFT JOIN pg_type t ON d.classid = 'pg_type'::regclass AND t.oid = d.objid
WHERE d.refclassid = 'pg_namespace'::regclass
  AND d.refobjid = 'public'::regnamespace
  AND d.deptype = 'n'
  AND NOT EXISTS (SELECT 1 FROM pg_depend e
                  WHERE e.classid = d.classid AND e.objid = d.objid AND e.deptype IN ('e', 'i'))
  AND o.type NOT IN ('index', 'index column', 'table constraint', 'toast table')
  AND NOT (d.classid = 'pg_type'::regclass AND t.typrelid <> 0
           AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) <> 'c')
ORDER BY CASE o.type WHEN 'table' THEN 0 WHEN 'view' THEN 1 WHEN 'materialized view' THEN 1
                     WHEN 'foreign table' THEN 2 ELSE 3 END, o.identity
"""

_DROPPABLE = {
    "table": "TABLE",
    "view": "VIEW",
    "materialized view": "MATERIALIZED VIEW",
    "sequence": "SEQUENCE",
    "foreign table": "FOREIGN TABLE",
    "function": "FUNCTION",
    "procedure": "PROCEDURE",
    "aggregate": "AGGREGATE",
    "type": "TYPE",
    "collation": "COLLATION",
    "conversion": "CONVERSION",
    "operator": "OPERATOR",
    "operator class": "OPERATOR CLASS",
    "operator family": "OPERATOR FAMILY",
    "statistics object": "STATISTICS",
    "text search configuration": "TEXT SEARCH CONFIGURATION",
    "text search dictionary": "TEXT SEARCH DICTIONARY",
    "text search parser": "TEXT SEARCH PARSER",
    "text search template": "TEXT SEARCH TEMPLATE",
}


def clear_database_sql(conn: psycopg.Connection) -> str:
    """SQL that removes every user object from the connected database."""
    out: list[str] = ["SET client_min_messages = warning;"]

    def q(text: str) -> list[tuple]:  # type: ignore[type-arg]
        return conn.execute(text).fetchall()

    for (name,) in q("SELECT evtname FROM pg_event_trigger ORDER BY 1"):
        out.append(sql.SQL("DROP EVENT TRIGGER IF EXISTS {} CASCADE;").format(sql.Identifier(name)).as_string(conn))
    for (name,) in q("SELECT pubname FROM pg_publication ORDER BY 1"):
        out.append(sql.SQL("DROP PUBLICATION IF EXISTS {} CASCADE;").format(sql.Identifier(name)).as_string(conn))
    for (name,) in q("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1"):
        out.append(sql.SQL("DROP EXTENSION IF EXISTS {} CASCADE;").format(sql.Identifier(name)).as_string(conn))
    for (name,) in q(
        f"SELECT n.nspname FROM pg_namespace n WHERE NOT ({_SYSTEM_SCHEMA}) "
        "AND n.nspname <> 'public' ORDER BY 1"
    ):
        out.append(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE;").format(sql.Identifier(name)).as_string(conn))
    if q("SELECT 1 FROM pg_namespace WHERE nspname = 'public'"):
        # Keep schema public itself (its owner and grants are the database's
        # defaults, which a dump does not recreate); drop what is inside.
        for obj_type, identity, typtype in q(_PUBLIC_OBJECTS_SQL):
            keyword = "DOMAIN" if obj_type == "type" and typtype == "d" else _DROPPABLE.get(obj_type)
            if keyword is None:
                continue
            out.append(f"DROP {keyword} IF EXISTS {_identity_args(obj_type, identity)} CASCADE;")
    out.append("SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;")
    out.append("RESET client_min_messages;")
    return "\n".join(out) + "\n"


def _identity_args(obj_type: str, identity: str) -> str:
    """pg_identify_object's identity is DROP-ready, except that operators need a space."""
    if obj_type == "operator":
        # public.+(integer,integer) -> public.+ (integer,integer)
        paren = identity.rfind("(")
        return identity[:paren] + " " + identity[paren:]
    return identity
