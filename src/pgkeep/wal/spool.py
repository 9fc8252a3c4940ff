"""Spool directories of asynchronous archiving and prefetching: what the worker tells the command.

With ``wal-push --spool DIR``, a background pusher (``wal.ahead``) stores the
files PostgreSQL has marked ready, several at a time and ahead of the
archiver, and leaves one status file per WAL file here; archive_command then
only has to find its file's status. With ``wal-fetch --spool DIR``, a
background fetcher (``wal.prefetch``) downloads, checks and leaves here the
segments after the one PostgreSQL asked for; restore_command then only has
to move its file into place. That check is the whole cost of a segment, so
this module (and ``cli.quick``, which reads it) imports nothing beyond
the standard library: no settings, no storage.

Layout (the directory is private to the server's OS user, mode 0700):

- ``<file>.ok``: done. Content: the file's SHA-256 and the settings key
  (below), one line. The command trusts it only when both match (the file
  it has, or, fetching, the content it is about to hand over) and the
  settings it runs with. The worker clears statuses PostgreSQL is past.
- ``<file>.error``: the worker could not do it. Content: the error. The
  command then does the work itself, and reports its own error.
- ``<file>`` (fetcher only): the prefetched segment, complete once its
  ``.ok`` exists.
- ``<worker>.lock``: held (flock) by the running worker; ``<worker>.log``:
  its stderr; ``pusher.pg_wal``: the pg_wal directory the last pusher
  worked on (one spool serves one cluster); ``fetcher.want``: the segment
  PostgreSQL asked for last (the fetcher works ahead of it).

A status file is a cache of a fact in storage, never the fact itself: losing
one costs the command's own push or fetch; a stale one is rejected by its
digest or key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

OK = ".ok"
ERROR = ".error"
PUSHER = "pusher"
FETCHER = "fetcher"
_READ_CHUNK = 1 << 20


def settings_key(config: Path | None, environ: Mapping[str, str]) -> str:
    """A fingerprint of the settings a push runs with: the config file's path and
    content, and every ``PGKEEP_*`` environment variable.

    A status written under other settings (another storage URL, say) is not
    trusted: the file is pushed again under the current ones.
    """
    digest = hashlib.sha256()
    if config is not None:
        digest.update(os.fsencode(os.path.abspath(config)) + b"\0")
        try:
            digest.update(config.read_bytes())
        except OSError as exc:
            digest.update(f"unreadable: {exc.errno}".encode())
    for name in sorted(environ):
        if name.upper().startswith("PGKEEP_"):
            digest.update(f"\0{name}={environ[name]}".encode())
    return digest.hexdigest()[:32]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Status:
    """What the pusher recorded for one WAL file."""

    ok: bool
    digest: str = ""  # .ok: SHA-256 of the file stored
    key: str = ""  # .ok: settings key of the push
    error: str = ""  # .error: the message

    def confirms(self, digest: str, key: str) -> bool:
        return self.ok and self.digest == digest and self.key == key


class Spool:
    """A spool directory and its worker (``pusher``, or ``fetcher`` for wal-fetch's prefetching):
    the worker's files are ``<worker>.lock``, ``<worker>.log`` and so on."""

    def __init__(self, root: Path, worker: str = PUSHER) -> None:
        self.root = root
        self.worker = worker

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.worker}.log"

    def _own(self, what: str) -> Path:
        return self.root / f"{self.worker}.{what}"

    def prepare(self) -> None:
        """Create the directory (0700) if missing. Raises OSError if that is impossible."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, file: str, suffix: str) -> Path:
        return self.root / (file + suffix)

    def status(self, file: str) -> Status | None:
        try:
            words = self._path(file, OK).read_text(encoding="utf-8").split()
        except FileNotFoundError:
            pass
        else:
            return Status(True, *words[:2]) if len(words) >= 2 else None
        try:
            return Status(False, error=self._path(file, ERROR).read_text(encoding="utf-8").strip())
        except FileNotFoundError:
            return None

    def _write(self, file: str, suffix: str, text: str) -> None:
        self._write_file(file + suffix, text)

    def _write_file(self, name: str, text: str) -> None:
        final = self.root / name
        temp = self.temp_path(name)
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, final)  # whole or absent: a reader never sees half a status

    def record_ok(self, file: str, digest: str, key: str) -> None:
        self._write(file, OK, f"{digest} {key}\n")

    def record_error(self, file: str, message: str) -> None:
        self._write(file, ERROR, message.replace("\n", " ") + "\n")

    def forget(self, file: str) -> None:
        """Drop the status of ``file`` (and a prefetched copy): status first, so that no
        reader sees a status without its content."""
        for suffix in (OK, ERROR, ""):
            with contextlib.suppress(FileNotFoundError):
                self._path(file, suffix).unlink()

    def temp_path(self, name: str) -> Path:
        """A private temporary name in the spool (hidden; :meth:`sweep_temp` removes leftovers)."""
        return self.root / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"

    def sweep_temp(self, older_than: float = 60.0) -> None:
        """Remove temporary files a killed worker or command left: those older than
        ``older_than`` seconds (a younger one may be a command's, about to be renamed)."""
        cutoff = time.time() - older_than
        for entry in os.scandir(self.root):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)

    def content(self, file: str) -> Path:
        """Where the fetcher leaves a prefetched ``file``."""
        return self._path(file, "")

    def want(self, file: str) -> None:
        """Tell the fetcher which segment PostgreSQL asked for last (each request is new:
        PostgreSQL asks for a segment again at the end of recovery)."""
        self._write_file(self._own("want").name, f"{file} {time.time_ns()}-{os.getpid()}\n")

    def wanted(self) -> tuple[str, str] | None:
        """The segment PostgreSQL asked for last, and a token that tells requests apart."""
        try:
            words = self._own("want").read_text(encoding="utf-8").split()
        except FileNotFoundError:
            return None
        return (words[0], words[1]) if len(words) == 2 else None

    def recorded(self) -> set[str]:
        """Every WAL file with a status."""
        names = set()
        for entry in os.scandir(self.root):
            for suffix in (OK, ERROR):
                if entry.name.endswith(suffix) and not entry.name.startswith("."):
                    names.add(entry.name[: -len(suffix)])
        return names

    def serve(self, pg_wal: Path) -> None:
        """Record which cluster's pg_wal the pusher holding the lock works on."""
        self._write_file(self._own("pg_wal").name, f"{pg_wal}\n")

    def serving(self) -> Path | None:
        try:
            return Path(self._own("pg_wal").read_text(encoding="utf-8").strip())
        except FileNotFoundError:
            return None

    def take_lock(self, wait: float = 0.0) -> int | None:
        """The worker's lock: an open descriptor holding it, or None if another
        worker still holds it after ``wait`` seconds (a probe by
        :meth:`worker_running` holds it for an instant: a new worker waits that out)."""
        fd = os.open(self._own("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.01)

    def worker_running(self) -> bool:
        """Whether a worker holds the lock. Read only: no lock file is created (``archive
        status --spool`` may run as another OS user, whose file would lock the worker out)."""
        try:
            fd = os.open(self._own("lock"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # conflicts with the worker's exclusive lock
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases the probe's shared lock at once
        return False
