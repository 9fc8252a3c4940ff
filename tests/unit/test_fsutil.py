"""Private files and directories: new ones are 0600/0700 whatever the umask; existing ones are left alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pgkeep.fsutil import private_dir


def test_new_directories_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        leaf = private_dir(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    for directory in (tmp_path / "a", tmp_path / "a" / "b", leaf):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp as the parent of a catalog file
    private_dir(shared)
    private_dir(shared / "mine")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "mine").stat().st_mode) == 0o700
