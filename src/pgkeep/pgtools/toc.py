"""What an archive's table of contents (``pg_restore --list``) says it needs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg

# "215; 1259 16390 TABLE public users postgres": id; tableoid oid DESC [namespace tag owner]
_ENTRY = re.compile(r"^\d+;\s+\d+\s+\d+\s+(?P<rest>.+)$")
_TWO_WORD_DESCS = (
    "TABLE DATA",
    "SEQUENCE SET",
    "SEQUENCE OWNED BY",
    "MATERIALIZED VIEW",
    "FK CONSTRAINT",
    "DEFAULT ACL",
    "EVENT TRIGGER",
    "FOREIGN TABLE",
    "LARGE OBJECT",
    "PROCEDURAL LANGUAGE",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "OPERATOR CLASS",
    "OPERATOR FAMILY",
    "SERVER",
    "USER MAPPING",
    "FOREIGN DATA WRAPPER",
    "ACCESS METHOD",
    "BLOB METADATA",
    "TABLE ATTACH",
    "INDEX ATTACH",
)


@dataclass(frozen=True)
class TocSummary:
    owners: frozenset[str] = field(default_factory=frozenset)
    extensions: frozenset[str] = field(default_factory=frozenset)
    # Per entry, the owner as it may be: the last 1, 2, ... words, longest first.
    # pg_restore --list does not quote names, so an owner with a space ("app
    # user") is told apart from the tag only by which of these roles exists.
    owner_candidates: frozenset[tuple[str, ...]] = field(default_factory=frozenset)


def summarize(lines: list[str]) -> TocSummary:
    owners: set[str] = set()
    extensions: set[str] = set()
    candidates: set[tuple[str, ...]] = set()
    for line in lines:
        m = _ENTRY.match(line.strip())
        if not m:
            continue
        rest = m.group("rest")
        # pg_restore prints an empty owner (casts, transforms, access methods have
        # none) as nothing after the last space: the last word is then the tag's.
        no_owner = line.rstrip("\r\n").endswith(" ")
        desc = _desc(rest)
        tokens = rest[len(desc) :].split()
        if desc == "EXTENSION" and len(tokens) >= 2:
            extensions.add(tokens[1])
            continue
        if desc in ("ACL", "COMMENT", "TABLE DATA", "SEQUENCE SET", "BLOB", "BLOBS", "LARGE OBJECT") or len(tokens) < 3:
            continue
        if no_owner:
            continue
        owner = tokens[-1]
        if owner != "-":
            owners.add(owner)
            candidates.add(tuple(" ".join(tokens[i:]) for i in range(2, len(tokens))))
    return TocSummary(frozenset(owners), frozenset(extensions), frozenset(candidates))


def _resolve_owners(conn: psycopg.Connection, summary: TocSummary) -> frozenset[str]:
    """Each entry's owner: its longest candidate that is a role here, else its last word."""
    if not summary.owner_candidates:
        return summary.owners
    names = sorted({name for entry in summary.owner_candidates for name in entry})
    existing = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (names,))}
    return frozenset(next((c for c in entry if c in existing), entry[-1]) for entry in summary.owner_candidates)


def privilege_problems(conn: psycopg.Connection, summary: TocSummary, *, no_owner: bool) -> list[str]:
    """Why the connected role could not restore this archive, before anything is changed."""
    row = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    assert row is not None
    user, superuser = str(row[0]), bool(row[1])
    problems: list[str] = []
    owners = _resolve_owners(conn, summary)
    if not no_owner and owners:
        existing = {
            r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (sorted(owners),))
        }
        missing = sorted(owners - existing)
        if missing:
            problems.append(
                f"objects in the backup are owned by roles that do not exist on the target: {', '.join(missing)} "
                "(restore the backup's globals first, create the roles, or restore with --no-owner)"
            )
        if not superuser:
            foreign = sorted(
                r[0]
                for r in conn.execute(
                    "SELECT rolname FROM pg_roles "
                    "WHERE rolname = ANY(%s) AND NOT pg_has_role(current_user, oid, 'USAGE')",
                    (sorted(existing),),
                )
            )
            if foreign:
                problems.append(
                    f"role {user} cannot give objects to {', '.join(foreign)}: it is neither a superuser nor a "
                    "member of those roles (restore with --no-owner, or as a superuser)"
                )
    if not superuser and summary.extensions:
        untrusted = sorted(
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT name FROM pg_available_extension_versions "
                "WHERE name = ANY(%s) AND superuser AND NOT trusted",
                (sorted(summary.extensions),),
            )
        )
        if untrusted:
            problems.append(f"extensions {', '.join(untrusted)} need a superuser to be created; role {user} is not one")
    return problems


def missing_extensions(conn: psycopg.Connection, summary: TocSummary) -> list[str]:
    """The archive's extensions that the connected server does not have installed (CREATE EXTENSION would fail)."""
    if not summary.extensions:
        return []
    names = sorted(summary.extensions)
    available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", (names,))}
    return [name for name in names if name not in available]


def _desc(rest: str) -> str:
    """The entry's kind ("TABLE", "TABLE DATA", ...) at the start of "DESC namespace tag owner"."""
    return next((d for d in _TWO_WORD_DESCS if rest.startswith(d + " ")), rest.split(" ", 1)[0])


def _entries(lines: list[str]) -> list[tuple[str, str]]:
    """(desc, "namespace tag owner") of each entry line."""
    out = []
    for line in lines:
        m = _ENTRY.match(line.strip())
        if m:
            desc = _desc(m.group("rest"))
            out.append((desc, m.group("rest")[len(desc) + 1 :]))
    return out


def missing_from_archive(lines: list[str], tables: list[tuple[str, str]], schemas: list[str]) -> list[str]:
    """The requested tables (schema, name) and schemas the archive does not have, as "schema.table"
    and "schema name", each with the archive's spelling when only the case differs."""
    entries = _entries(lines)
    table_names = [rest for desc, rest in entries if desc == "TABLE"]
    # Names are not quoted in the listing ("SCHEMA - my schema owner"): compare prefixes, not words.
    in_schemas = [rest[2:] if desc == "SCHEMA" else rest for desc, rest in entries]
    missing = []
    for schema, table in tables:
        want = f"{schema} {table} "
        if not any(rest.startswith(want) for rest in table_names):
            near = [rest for rest in table_names if rest.lower().startswith(want.lower())]
            hint = f" (the backup has {near[0][: len(want) - 1].replace(' ', '.', 1)})" if near else ""
            missing.append(f"{schema}.{table}{hint}")
    for schema in schemas:
        if not any(rest.startswith(f"{schema} ") for rest in in_schemas):
            near = [rest for rest in in_schemas if rest.lower().startswith(f"{schema.lower()} ")]
            missing.append(f"schema {schema}" + (f" (the backup has {near[0][: len(schema)]})" if near else ""))
    return missing
