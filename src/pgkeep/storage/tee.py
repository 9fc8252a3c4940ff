"""A local copy beside the main storage (PGKEEP_LOCAL_COPY_DIR).

:class:`TeeStorage` writes every object to two storages at once, from the one
stream (no second pass, no temporary copy): the main one (S3, say) and a
local directory. Reads come from the main storage only; deletes and crash
cleanup reach both, so the copy directory mirrors what the catalog holds.

All or nothing: the copy is committed only after the main commit succeeded,
and if the copy cannot be committed the main object is deleted again, so a
backup either exists in both places or fails. A failure to write the copy
(local disk full) fails the backup: the operator asked for two copies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import BinaryIO

from pgkeep.errors import StorageError
from pgkeep.storage.base import ObjectInfo, ObjectWriter, Storage

log = logging.getLogger("pgkeep.storage")


def _copy_error(exc: StorageError, url: str) -> StorageError:
    return StorageError(
        f"keeping the local copy {url} failed: {exc.message}",
        permanent=exc.permanent,
        hint=exc.hint or "check PGKEEP_LOCAL_COPY_DIR (free space, permissions), or unset it",
    )


class TeeWriter:
    """Writes one stream to two writers; commits the copy only after the main one."""

    def __init__(self, main: ObjectWriter, copy: ObjectWriter, copy_url: str, delete_main: Callable[[], None]) -> None:
        self._main = main
        self._copy = copy
        self._copy_url = copy_url
        self._delete_main = delete_main

    def write(self, data: bytes | memoryview) -> None:
        try:
            self._main.write(data)
        except BaseException:
            self.abort()
            raise
        try:
            self._copy.write(data)
        except StorageError as exc:
            self.abort()
            raise _copy_error(exc, self._copy_url) from None
        except BaseException:
            self.abort()
            raise

    def commit(self) -> None:
        try:
            self._main.commit()
        except BaseException:
            self._copy.abort()
            raise
        try:
            self._copy.commit()
        except BaseException as exc:
            # The main object is visible already: take it back, or the backup would exist
            # in one place while the catalog says FAILED.
            try:
                self._delete_main()
            except Exception as cleanup:
                log.warning("could not remove the main object after its local copy failed: %s", cleanup)
            if isinstance(exc, StorageError):
                raise _copy_error(exc, self._copy_url) from None
            raise

    def abort(self) -> None:
        self._main.abort()
        self._copy.abort()


class TeeStorage:
    """``main`` plus a mirror ``copy``: writes and deletes go to both, reads to ``main``."""

    def __init__(self, main: Storage, copy: Storage) -> None:
        self.main = main
        self.copy = copy

    def url_for(self, name: str) -> str:
        return self.main.url_for(name)

    def open_writer(self, name: str) -> ObjectWriter:
        main = self.main.open_writer(name)
        try:
            copy = self.copy.open_writer(name)
        except StorageError as exc:
            main.abort()
            raise _copy_error(exc, self.copy.url_for(name)) from None
        except BaseException:
            main.abort()
            raise
        return TeeWriter(main, copy, self.copy.url_for(name), lambda: self.main.delete(name))

    def open_reader(self, name: str) -> BinaryIO:
        return self.main.open_reader(name)

    def stat(self, name: str) -> ObjectInfo:
        return self.main.stat(name)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.main.list(prefix)

    def delete(self, name: str) -> None:
        self.main.delete(name)
        self.copy.delete(name)

    def remove_incomplete(self, name: str) -> int:
        return self.main.remove_incomplete(name) + self.copy.remove_incomplete(name)
