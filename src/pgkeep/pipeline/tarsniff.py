"""Watch a tar stream go by and keep a copy of a few small members.

A physical backup is pg_basebackup's tar stream, stored as it comes. Its
``backup_label`` (start position and time) and ``backup_manifest`` (WAL
range, every file's checksum) describe the backup, and pgkeep needs them
without reading the stored artifact back. :class:`TarSniffer` parses the
ustar headers of the bytes written through it (no copy of member data it
does not keep) and collects the named members.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

BLOCK = 512


def _octal(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        value = field[0] & 0x7F
        for byte in field[1:]:
            value = (value << 8) | byte
        return value
    text = field.split(b"\0", 1)[0].strip(b" \0")
    return int(text, 8) if text else 0


class TarSniffer:
    """``write`` bytes of a tar stream in order; ``members[name]`` holds the wanted ones.

    ``out`` receives every byte unchanged (the next stage of the pipeline).
    Raises ValueError on a header that is not tar, so a stream that is not
    what pg_basebackup promises is noticed.
    """

    def __init__(self, wanted: Iterable[str], out: Callable[[bytes | memoryview], object], max_size: int = 1 << 30):
        self._wanted = set(wanted)
        self._out = out
        self._max = max_size
        self.members: dict[str, bytes] = {}
        self._header = bytearray()
        self._skip = 0  # bytes of the current member (and padding) still to pass
        self._keep: bytearray | None = None
        self._keep_name = ""
        self._keep_left = 0
        self._pax_path: str | None = None
        self._pax: bytearray | None = None
        self.ended = False

    def write(self, data: bytes | memoryview) -> int:
        self._out(data)
        view = memoryview(data)
        while view and not self.ended:
            if self._skip:
                n = min(self._skip, len(view))
                if self._keep is not None and self._keep_left:
                    k = min(n, self._keep_left)
                    self._keep += view[:k]
                    self._keep_left -= k
                    if not self._keep_left:
                        self._finish_member()
                self._skip -= n
                view = view[n:]
                continue
            n = min(BLOCK - len(self._header), len(view))
            self._header += view[:n]
            view = view[n:]
            if len(self._header) == BLOCK:
                self._parse_header(bytes(self._header))
                self._header.clear()
        return len(data)

    def _parse_header(self, header: bytes) -> None:
        if header == b"\0" * BLOCK:
            # End of archive (two zero blocks); padding may follow and is passed through.
            self.ended = True
            return
        try:
            stored_sum = _octal(header[148:156])
        except ValueError:
            stored_sum = -1
        if stored_sum != sum(header[:148]) + 8 * 32 + sum(header[156:]):
            raise ValueError("the backup stream is not a tar archive (bad header checksum)")
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace") if header[257:262] == b"ustar" else ""
        if prefix:
            name = f"{prefix}/{name}"
        if self._pax_path is not None:
            name, self._pax_path = self._pax_path, None
        size = _octal(header[124:136])
        kind = header[156:157]
        self._skip = (size + BLOCK - 1) // BLOCK * BLOCK
        if kind == b"x" and size <= 1 << 20:
            self._start_keep("\0pax", size)
        elif kind in (b"0", b"\0") and name in self._wanted:
            if size > self._max:
                raise ValueError(f"{name} in the backup stream is too large ({size} bytes)")
            self._start_keep(name, size)
        if self._keep is not None and not self._keep_left:
            self._finish_member()

    def _start_keep(self, name: str, size: int) -> None:
        self._keep = bytearray()
        self._keep_name = name
        self._keep_left = size

    def _finish_member(self) -> None:
        assert self._keep is not None
        data = bytes(self._keep)
        self._keep = None
        if self._keep_name == "\0pax":
            for record in data.decode("utf-8", "replace").splitlines():
                _, _, kv = record.partition(" ")
                key, _, value = kv.partition("=")
                if key == "path":
                    self._pax_path = value
        else:
            self.members[self._keep_name] = data
