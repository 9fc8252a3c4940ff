"""Find PostgreSQL client binaries whose major version fits the server.

Order: ``PGKEEP_PG_BIN_DIR`` (used as given, never replaced), then
``/usr/lib/postgresql/<N>/bin`` for the server's major and newer (the same
major first: a newer pg_dump writes archives an older pg_restore cannot read),
then ``PATH``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pgkeep.errors import ClientVersionError

DEBIAN_ROOT = Path("/usr/lib/postgresql")
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Tool:
    name: str
    path: Path
    version: str  # "15.18"
    major: int


@lru_cache(maxsize=64)
def tool_version(path: Path) -> tuple[str, int] | None:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=20, check=False).stdout
    except OSError:
        return None
    m = _VERSION_RE.search(out)
    if not m:
        return None
    version = m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
    return version, int(m.group(1))


def _candidates(name: str, min_major: int, configured: Path | None) -> list[Path]:
    if configured is not None:
        return [configured / name]
    found: list[tuple[int, Path]] = []
    if DEBIAN_ROOT.is_dir():
        for d in DEBIAN_ROOT.iterdir():
            if d.name.isdigit() and int(d.name) >= min_major and (d / "bin" / name).exists():
                found.append((int(d.name), d / "bin" / name))
    paths = [p for _, p in sorted(found)]  # the server's own major first, then newer
    on_path = shutil.which(name)
    if on_path:
        paths.append(Path(on_path))
    return paths


def find_tool(
    name: str,
    min_major: int,
    configured_dir: Path | None = None,
    *,
    newest: bool = False,
    reason: str | None = None,
) -> Tool:
    """Return ``name`` (pg_dump, pg_restore, psql, ...) of major >= ``min_major``.

    The oldest fitting version is preferred (its output suits older servers);
    ``newest`` prefers the newest (to read archives of unknown version).
    Raises :class:`ClientVersionError` naming both versions and the fix.
    """
    seen: list[str] = []
    candidates = _candidates(name, min_major, configured_dir)
    if newest:
        candidates = sorted(candidates, key=lambda p: -(tool_version(p) or ("", 0))[1])
    for path in candidates:
        info = tool_version(path) if path.exists() else None
        if info is None:
            seen.append(f"{path} (not usable)")
            continue
        version, major = info
        if major >= min_major:
            return Tool(name=name, path=path, version=version, major=major)
        seen.append(f"{path} is version {version}")
    where = "; ".join(seen) if seen else f"no {name} found"
    if configured_dir is not None:
        hint = (
            f"PGKEEP_PG_BIN_DIR={configured_dir} must hold {name} {min_major} or newer; "
            f"point it at a newer client or unset it"
        )
    else:
        hint = (
            f"install the PostgreSQL {min_major} client (e.g. apt-get install "
            f"postgresql-client-{min_major}) or set PGKEEP_PG_BIN_DIR to its bin directory"
        )
    raise ClientVersionError(
        f"{reason or f'the server is PostgreSQL {min_major}'} but no {name} of version "
        f"{min_major} or newer was found ({where})",
        hint=hint,
    )
