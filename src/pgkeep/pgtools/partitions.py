"""Partitioned tables in an archive: which partitions hang under which table, and how each is attached.

A partitioned table holds no rows itself: they are in its partitions, which
pg_dump writes as tables of their own plus a ``TABLE ATTACH`` entry
(``ALTER TABLE ONLY parent ATTACH PARTITION child FOR VALUES ...``).
``pg_restore --table parent`` restores the empty parent alone, so a
selective restore of a partitioned table must add its partitions (at every
level) and their attachments.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pgkeep.errors import RestoreFailedError
from pgkeep.pgtools.binaries import Tool
from pgkeep.pgtools.commands import pg_restore_script_argv

_NAME = r'(?:"(?:[^"]|"")*"|[^\s".]+)'
_QUALIFIED = rf"{_NAME}\.{_NAME}"
_ATTACH = re.compile(rf"^ALTER TABLE ONLY ({_QUALIFIED}) ATTACH PARTITION ({_QUALIFIED}) ")
_PART = re.compile(_NAME)


def attachments(pg_restore: Tool, archive: Path, toc: list[str], workdir: Path) -> dict[str, tuple[str, str]]:
    """child -> (parent, the statement attaching it), qualified names quoted as pg_dump writes them;
    ``toc`` is the archive's ``pg_restore --list``, whose TABLE ATTACH entries are turned into SQL."""
    entries = [line for line in toc if " TABLE ATTACH " in line and not line.startswith(";")]
    if not entries:
        return {}
    use_list = workdir / "attachments.list"
    use_list.write_text("\n".join(entries) + "\n")
    argv = pg_restore_script_argv(pg_restore, archive)
    argv[1:1] = [f"--use-list={use_list}"]
    found = {}
    for line in _run(argv).splitlines():
        m = _ATTACH.match(line)
        if m:
            found[m.group(2)] = (m.group(1), line)
    return found


def descendants(roots: list[str], attached: dict[str, tuple[str, str]]) -> list[str]:
    """Every partition under ``roots``, at every level, parents before their children."""
    children: dict[str, list[str]] = {}
    for child, (parent, _) in attached.items():
        children.setdefault(parent, []).append(child)
    out: list[str] = []
    queue = list(roots)
    while queue:
        for child in sorted(children.get(queue.pop(0), [])):
            if child not in out:
                out.append(child)
                queue.append(child)
    return out


def split_qualified(name: str) -> tuple[str, str]:
    """``"My S".t`` -> ("My S", "t"): the schema and table as the catalog spells them."""
    schema, table = (_unquote(part) for part in _PART.findall(name)[:2])
    return schema, table


def quoted_table(name: str) -> str:
    """``"My S"."T x"`` -> ``"T x"``: the table part of a qualified name, still quoted."""
    return str(_PART.findall(name)[1])


def _unquote(part: str) -> str:
    return part[1:-1].replace('""', '"') if part.startswith('"') else part


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RestoreFailedError(f"pg_restore could not read the archive's partitions: {done.stderr.strip()[-500:]}")
    return done.stdout
