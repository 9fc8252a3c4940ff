"""Integration fixtures: a pgkeep service context on the per-test source database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import DbHandle, make_context
from pgkeep.services.context import Context
from webhook_receiver import Receiver


@pytest.fixture
def ctx(tmp_path: Path, source_db: DbHandle) -> Iterator[Context]:
    """Backs up ``source_db`` (TCP, awkward password) into ``tmp_path/backups``."""
    context = make_context(tmp_path, source_db.url)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def backups_dir(tmp_path: Path) -> Path:
    return tmp_path / "backups"


@pytest.fixture
def private_umask() -> Iterator[None]:
    """Run with umask 000: whatever pgkeep creates must still be private."""
    import os

    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook endpoint on loopback recording every notification."""
    r = Receiver()
    try:
        yield r
    finally:
        r.close()
