"""The names PostgreSQL gives the files it archives (standard library only: see wal.spool)."""

from __future__ import annotations

import re

SEGMENT = r"[0-9A-F]{24}"
WAL_FILE = re.compile(rf"^(?:{SEGMENT}(?:\.partial|\.[0-9A-F]{{8}}\.backup)?|[0-9A-F]{{8}}\.history)$")
SEGMENT_FILE = re.compile(rf"^{SEGMENT}$")
