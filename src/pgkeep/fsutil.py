"""Files that hold database contents are private: 0600 files, 0700 directories.

Modes are set explicitly with ``chmod`` after creation because the umask
could otherwise widen or narrow them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` and missing parents, each new one 0700.

    A directory that exists already keeps its mode: it is not pgkeep's to
    change (``/tmp`` as the parent of a catalog file must stay 1777).
    """
    missing = []
    parent = path
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    # mkdir(parents=True) would give missing parents the umask's mode (0777 under umask 000).
    for directory in reversed(missing):
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(directory, DIR_MODE)
    return path


def create_private_file(path: Path, *, exclusive: bool = True) -> int:
    """Open a new file for writing, 0600, and return its descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    flags |= os.O_EXCL if exclusive else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def private_mode(path: Path) -> None:
    """Make ``path`` 0600 by name, without opening it (used for the SQLite catalog)."""
    if stat.S_IMODE(os.stat(path).st_mode) != FILE_MODE:
        os.chmod(path, FILE_MODE)


@contextlib.contextmanager
def locked_dir(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on directory ``path`` (between processes; released on exit).

    A directory, not a file beside the data: closing a descriptor of a file
    drops every POSIX lock this process holds on it, SQLite's included.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Persist a rename: without this a crash can forget the new directory entry."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
