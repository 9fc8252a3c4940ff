"""Acceptance fixtures: the installed ``pgkeep`` command, configured per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import Cli, make_cli

from helpers import DbHandle, make_context
from pgkeep.services.context import Context


@pytest.fixture
def cli(tmp_path: Path, source_db: DbHandle) -> Cli:
    """pgkeep configured to back up ``source_db`` into ``tmp_path/backups``."""
    return make_cli(tmp_path, source_db.url)


@pytest.fixture
def offline_cli(tmp_path: Path) -> Cli:
    """pgkeep for commands that need only the catalog (DATABASE_URL points nowhere)."""
    return make_cli(tmp_path, "postgresql://nobody@127.0.0.1:9/nowhere")


@pytest.fixture
def catalog(tmp_path: Path, source_db: DbHandle) -> Iterator[Context]:
    """The same catalog and storage the CLI uses, to look behind its back."""
    context = make_context(tmp_path, source_db.url)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def backups_dir(tmp_path: Path) -> Path:
    return tmp_path / "backups"
