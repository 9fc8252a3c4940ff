"""Cross-cutting storage concerns, composed once around every backend.

:func:`wrap` is the single place that decides what surrounds a backend
(restic's ``wrapBackend``); ``open_storage`` and ``locate`` call it, nothing
else builds wrappers. Backends stay plain: they store bytes and map their
own errors to :class:`~pgkeep.errors.StorageError`.

Retries are a policy, not a wrapper class. Transient failures (timeouts,
5xx, throttling, a dropped connection) are retried by the client library
per request: botocore's ``standard`` or ``adaptive`` mode, with exponential
backoff, jitter and a retry quota, built from :class:`RetryPolicy`. A second
retry loop around whole storage calls would multiply the attempts (N x M),
re-send calls that are not idempotent (completing a multipart upload) and
retry permanent errors; so there is none. (A download cut short mid-body,
which botocore cannot retry, is continued rather than retried: the S3
reader resumes it with a ranged GET of the same version.) A ``permanent`` StorageError
(bad credentials, no such bucket, name taken, disk full) is never retried
by anyone: the operator has to act. The local backend has no transient
failures worth retrying.

Logging goes through stdlib ``logging`` under ``pgkeep.storage``. Messages
name objects by their storage URL and never contain credentials (they are
not part of a URL and the backends never put them in an error).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Literal

from pgkeep.errors import ObjectNotFoundError, StorageError
from pgkeep.storage.base import ObjectInfo, ObjectWriter, Storage

log = logging.getLogger("pgkeep.storage")


@dataclass(frozen=True)
class RetryPolicy:
    """How a network backend retries transient failures of one request.

    ``max_attempts`` counts the first attempt. Timeouts are per attempt.
    """

    mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


def wrap(backend: Storage) -> Storage:
    """Surround a backend with the cross-cutting layers. The one composition point."""
    return LoggingStorage(backend)


def _mib_per_s(nbytes: int, seconds: float) -> float:
    return nbytes / (1 << 20) / seconds if seconds > 0 else 0.0


class LoggingWriter:
    """Counts bytes and logs the outcome of one object's upload."""

    def __init__(self, inner: ObjectWriter, url: str) -> None:
        self._inner = inner
        self._url = url
        self._bytes = 0
        self._t0 = time.monotonic()
        self._done = False

    def write(self, data: bytes | memoryview) -> None:
        try:
            self._inner.write(data)
        except StorageError as exc:
            log.warning("writing %s failed after %d bytes: %s", self._url, self._bytes, exc)
            raise
        self._bytes += len(data)

    def commit(self) -> None:
        try:
            self._inner.commit()
        except StorageError as exc:
            log.warning("storing %s failed after %d bytes: %s", self._url, self._bytes, exc)
            raise
        self._done = True
        seconds = time.monotonic() - self._t0
        log.info(
            "stored %s: %d bytes in %.1f s (%.1f MiB/s)",
            self._url,
            self._bytes,
            seconds,
            _mib_per_s(self._bytes, seconds),
        )

    def abort(self) -> None:
        self._inner.abort()
        if not self._done:
            self._done = True
            log.info("discarded %s after %d bytes", self._url, self._bytes)


class LoggingStorage:
    """Logs every call of the wrapped backend: DEBUG on success, WARNING on failure."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    @contextmanager
    def _logged(self, op: str, target: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        except ObjectNotFoundError:
            # An expected answer for stat/open of a missing name, not a malfunction.
            log.debug("%s %s: not found", op, target)
            raise
        except StorageError as exc:
            log.warning(
                "%s %s failed (%s): %s",
                op,
                target,
                "permanent" if exc.permanent else "transient",
                exc,
            )
            raise
        log.debug("%s %s: %.3f s", op, target, time.monotonic() - t0)

    def url_for(self, name: str) -> str:
        return self.inner.url_for(name)

    def open_writer(self, name: str) -> ObjectWriter:
        url = self.inner.url_for(name)
        with self._logged("open writer", url):
            writer = self.inner.open_writer(name)
        return LoggingWriter(writer, url)

    def open_reader(self, name: str) -> BinaryIO:
        with self._logged("open", self.inner.url_for(name)):
            return self.inner.open_reader(name)

    def stat(self, name: str) -> ObjectInfo:
        with self._logged("stat", self.inner.url_for(name)):
            return self.inner.stat(name)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        with self._logged("list", self.inner.url_for(prefix) + "*"):
            return self.inner.list(prefix)

    def delete(self, name: str) -> None:
        with self._logged("delete", self.inner.url_for(name)):
            self.inner.delete(name)

    def remove_incomplete(self, name: str) -> int:
        url = self.inner.url_for(name)
        with self._logged("remove incomplete", url):
            n = self.inner.remove_incomplete(name)
        if n:
            log.info("removed %d incomplete uploads of %s left by a crashed writer", n, url)
        return n
