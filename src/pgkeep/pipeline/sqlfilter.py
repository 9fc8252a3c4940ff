"""Make a newer client's SQL acceptable to an older server.

A PostgreSQL 17+ pg_dump/pg_restore starts its script with
``SET transaction_timeout = 0;``, a parameter older servers reject, which
stops a restore run with ON_ERROR_STOP. Those settings appear only in the
script's preamble, so only the preamble is filtered; the rest of the stream
passes through untouched (no per-chunk work on the hot path).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

# Parameter -> first server major that knows it.
_NEWER_PARAMETERS = {b"transaction_timeout": 17}
PREAMBLE_LIMIT = 1 << 16


def _preamble_line(line: bytes) -> bool:
    s = line.strip()
    return not s or s.startswith((b"--", b"SET ", b"SELECT pg_catalog.set_config", b"\\"))


def adapt_for_server(chunks: Iterable[bytes], server_major: int) -> Iterator[bytes]:
    unknown = [p for p, since in _NEWER_PARAMETERS.items() if server_major < since]
    it = iter(chunks)
    if not unknown:
        yield from it
        return
    buf = b""
    for chunk in it:
        buf += chunk
        if len(buf) >= PREAMBLE_LIMIT:
            break
    lines = buf.splitlines(keepends=True)
    out = []
    in_preamble = True
    for i, line in enumerate(lines):
        if in_preamble and not _preamble_line(line) and i < len(lines) - 1:
            in_preamble = False
        if in_preamble and any(line.startswith(b"SET " + p + b" ") for p in unknown):
            continue
        out.append(line)
    yield b"".join(out)
    yield from it
