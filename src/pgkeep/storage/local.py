"""Local-disk storage: a directory of private files.

Write ordering: bytes go to a hidden temporary name, are fsynced, then
hard-linked to the final name (which fails instead of overwriting) and the
directory is fsynced. A crash leaves at most a ``.partial`` file, never a
half-written object under a real name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pgkeep.errors import ObjectNotFoundError, StorageError
from pgkeep.fsutil import create_private_file, fsync_dir, private_dir
from pgkeep.storage.base import ObjectInfo, check_name

PARTIAL_MARK = ".partial-"


class LocalWriter:
    def __init__(self, root: Path, name: str) -> None:
        self._final = root / name
        self._tmp = root / f".{name}{PARTIAL_MARK}{secrets.token_hex(4)}"
        self._root = root
        try:
            self._fd: int | None = create_private_file(self._tmp)
        except OSError as exc:
            raise StorageError(f"cannot create a file in {root}: {exc.strerror}", permanent=True) from None

    def _closed(self, what: str) -> StorageError:
        return StorageError(f"{what} on {self._final.name} after commit or abort", permanent=True)

    def write(self, data: bytes | memoryview) -> None:
        if self._fd is None:
            raise self._closed("write")
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self.abort()
            raise StorageError(
                f"writing {self._final.name} failed: {exc.strerror}",
                permanent=exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS),
            ) from None

    def commit(self) -> None:
        if self._fd is None:
            raise self._closed("commit")
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            os.link(self._tmp, self._final)  # fails if the name exists: no silent overwrite
            os.unlink(self._tmp)
            fsync_dir(self._root)
        except FileExistsError:
            self.abort()
            raise StorageError(f"{self._final.name} exists already", permanent=True) from None
        except OSError as exc:
            self.abort()
            raise StorageError(f"saving {self._final.name} failed: {exc.strerror}") from None

    def abort(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            self._tmp.unlink()


class LocalStorage:
    """Objects are files in ``root`` (created 0700 on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    def _dir(self) -> Path:
        try:
            return private_dir(self.root)
        except OSError as exc:
            raise StorageError(
                f"cannot use {self.root} as the storage directory: {exc.strerror or exc}",
                permanent=True,
                hint="PGKEEP_STORAGE_URL must name a directory pgkeep can create or write to",
            ) from None

    def url_for(self, name: str) -> str:
        return (self.root / name).as_uri()

    def path_for(self, name: str) -> Path:
        check_name(name)
        return self.root / name

    def open_writer(self, name: str) -> LocalWriter:
        check_name(name)
        return LocalWriter(self._dir(), name)

    def open_reader(self, name: str) -> BinaryIO:
        try:
            return open(self.path_for(name), "rb")
        except FileNotFoundError:
            raise ObjectNotFoundError(f"backup file {name} not found in {self.root}") from None
        except OSError as exc:
            raise StorageError(f"cannot open {name}: {exc.strerror}") from None

    def stat(self, name: str) -> ObjectInfo:
        try:
            st = self.path_for(name).stat()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"backup file {name} not found in {self.root}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {name} in {self.root}: {exc.strerror}") from None
        return ObjectInfo(name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not self.root.is_dir():
            return []
        out = []
        try:
            for entry in os.scandir(self.root):
                hidden = entry.name.startswith(".")  # partial files and other bookkeeping
                if hidden or not entry.is_file() or not entry.name.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):  # deleted while listing
                    st = entry.stat()
                    out.append(ObjectInfo(entry.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        except OSError as exc:
            raise StorageError(f"cannot list {self.root}: {exc.strerror}") from None
        return sorted(out, key=lambda o: o.name)

    def delete(self, name: str) -> None:
        try:
            self.path_for(name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete {name} in {self.root}: {exc.strerror}") from None

    def remove_incomplete(self, name: str) -> int:
        """Remove temporary files a crashed writer left for ``name``. Returns how many."""
        if not self.root.is_dir():
            return 0
        n = 0
        mark = f".{name}{PARTIAL_MARK}"
        for entry in os.scandir(self.root):
            if entry.name.startswith(mark):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    n += 1
        return n
