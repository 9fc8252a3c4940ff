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
                  WHERE e.classid = d.classid AND e.objid = d.objid AND e.deptype IN ('e', 'i')
                    -- a partitioned table depends internally on its own key columns:
                    -- that does not make it part of another object
                    AND NOT (e.refclassid = e.classid AND e.refobjid = e.objid))
  AND o.type NOT IN ('index', 'index column', 'table constraint', 'toast table')
  AND NOT (d.classid = 'pg_type'::regclass AND t.typrelid <> 0
           AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) <> 'c')
ORDER BY CASE o.type WHEN 'table' THEN 0 WHEN 'view' THEN 1 WHEN 'materialized view' THEN 1
                     WHEN 'foreign table' THEN 2 ELSE 3 END, o.identity
"""

# Foreign-data wrappers not owned by an extension (those go with their extension).
_USER_FDWS_SQL = """
SELECT w.fdwname FROM pg_foreign_data_wrapper w
WHERE NOT EXISTS (SELECT 1 FROM pg_depend e
                  WHERE e.classid = 'pg_foreign_data_wrapper'::regclass AND e.objid = w.oid
                    AND e.deptype = 'e')
ORDER BY 1
"""

# Casts created by a user (OIDs from FirstNormalObjectId on): not by an extension,
# nor with a range type (range -> multirange casts go with their type).
_USER_CASTS_SQL = """
SELECT format('DROP CAST IF EXISTS (%I.%I AS %I.%I) CASCADE;', sn.nspname, st.typname, tn.nspname, tt.typname)
FROM pg_cast c
JOIN pg_type st ON st.oid = c.castsource JOIN pg_namespace sn ON sn.oid = st.typnamespace
JOIN pg_type tt ON tt.oid = c.casttarget JOIN pg_namespace tn ON tn.oid = tt.typnamespace
WHERE c.oid >= 16384
  AND NOT EXISTS (SELECT 1 FROM pg_depend e
                  WHERE e.classid = 'pg_cast'::regclass AND e.objid = c.oid AND e.deptype IN ('e', 'i'))
ORDER BY 1
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

    def q(text: str) -> list[tuple]:
        return conn.execute(text).fetchall()

    for (name,) in q("SELECT evtname FROM pg_event_trigger ORDER BY 1"):
        out.append(sql.SQL("DROP EVENT TRIGGER IF EXISTS {} CASCADE;").format(sql.Identifier(name)).as_string(conn))
    for (name,) in q("SELECT pubname FROM pg_publication ORDER BY 1"):
        out.append(sql.SQL("DROP PUBLICATION IF EXISTS {} CASCADE;").format(sql.Identifier(name)).as_string(conn))
    for (name,) in q("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1"):
        out.append(sql.SQL("DROP EXTENSION IF EXISTS {} CASCADE;").format(sql.Identifier(name)).as_string(conn))
    # Casts are in no schema: one between built-in types survives every DROP
    # below, and the dump's CREATE CAST would then fail with "already exists".
    for (stmt,) in q(_USER_CASTS_SQL):
        out.append(stmt)
    # Wrappers are in no schema; CASCADE takes their servers, user mappings and foreign tables.
    for (name,) in q(_USER_FDWS_SQL):
        drop = sql.SQL("DROP FOREIGN DATA WRAPPER IF EXISTS {} CASCADE;")
        out.append(drop.format(sql.Identifier(name)).as_string(conn))
    for (name,) in q(
        f"SELECT n.nspname FROM pg_namespace n WHERE NOT ({_SYSTEM_SCHEMA}) AND n.nspname <> 'public' ORDER BY 1"
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
    out.extend(_reset_public_schema(conn))
    out.append("SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;")
    out.append("RESET client_min_messages;")
    return "\n".join(out) + "\n"


def _reset_public_schema(conn: psycopg.Connection) -> list[str]:
    """Statements that give schema public the owner, grants and comment of a new database.

    A dump never creates schema public and records only how the source's
    differs from a new database's (pg_dump compares with those defaults), so
    a target whose public schema was dropped fails the restore, and one whose
    grants, owner or comment were changed would keep the changes.
    """
    new_db_owner = "rolname = 'pg_database_owner'" if conn.info.server_version >= 150000 else "oid = 10"
    public_privs = "U" if conn.info.server_version >= 150000 else "UC"  # 15 revoked CREATE from PUBLIC
    row = conn.execute(
        "WITH o AS (SELECT oid, quote_ident(rolname) AS name FROM pg_roles WHERE " + new_db_owner + ") "
        "SELECT o.name, n.oid IS NOT NULL, coalesce(n.nspowner = o.oid, false), "
        "       coalesce(n.nspacl = ARRAY[(o.name || '=UC/' || o.name)::aclitem, "
        "                                 ('=' || %s || '/' || o.name)::aclitem], false), "
        "       coalesce(obj_description(n.oid, 'pg_namespace') = 'standard public schema', false), "
        "       ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
        "                                  ELSE quote_ident(pg_get_userbyid(a.grantee)) END "
        "             FROM aclexplode(n.nspacl) a ORDER BY 1) "
        "FROM o LEFT JOIN pg_namespace n ON n.nspname = 'public'",
        (public_privs,),
    ).fetchone()
    if row is None:
        return []
    owner, exists, same_owner, same_acl, same_comment, grantees = row
    out = [] if exists else ["CREATE SCHEMA public;"]
    if not same_acl and grantees:
        # Revoke while the old owner is the grantor, then grant as a new database does.
        out.append(f"REVOKE ALL ON SCHEMA public FROM {', '.join(grantees)} CASCADE;")
    if not same_owner:
        out.append(f"ALTER SCHEMA public OWNER TO {owner};")
    if not same_acl:
        out.append(f"GRANT ALL ON SCHEMA public TO {owner};")
        out.append(f"GRANT {'USAGE' if public_privs == 'U' else 'ALL'} ON SCHEMA public TO PUBLIC;")
    if not same_comment:
        out.append("COMMENT ON SCHEMA public IS 'standard public schema';")
    return out


def _identity_args(obj_type: str, identity: str) -> str:
    """pg_identify_object's identity is DROP-ready, except that operators need a space."""
    if obj_type == "operator":
        # public.+(integer,integer) -> public.+ (integer,integer)
        paren = identity.rfind("(")
        return identity[:paren] + " " + identity[paren:]
    return identity


# What the connected role could not drop when emptying the database: relations and
# schemas (public aside) it neither owns nor has its owner's privileges over.
_UNDROPPABLE_SQL = (
    """
SELECT what FROM (
  SELECT format('%I.%I', n.nspname, c.relname) AS what
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND NOT c.relispartition
    AND NOT ("""
    + _SYSTEM_SCHEMA
    + """)
    AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                    AND e.objid = c.oid AND e.deptype IN ('e', 'i', 'a'))
    AND NOT pg_has_role(c.relowner, 'MEMBER')
  UNION ALL
  SELECT format('schema %I', n.nspname)
  FROM pg_namespace n
  WHERE n.nspname <> 'public' AND NOT ("""
    + _SYSTEM_SCHEMA
    + """)
    AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_namespace'::regclass
                    AND e.objid = n.oid AND e.deptype = 'e')
    AND NOT pg_has_role(n.nspowner, 'MEMBER')
) x
WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
ORDER BY 1
"""
)


def undroppable(conn: psycopg.Connection) -> list[str]:
    """Objects emptying the database would have to drop that the connected role may not."""
    return [str(row[0]) for row in conn.execute(_UNDROPPABLE_SQL).fetchall()]
