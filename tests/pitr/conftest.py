"""Fixtures for WAL archiving and point-in-time recovery: clusters that archive through ``pgkeep wal-push``.

Nothing skips: a missing server binary fails the run. Shared names live in
``pitr_helpers`` (``conftest`` modules of different folders clash when imported by name).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pitr_helpers import PG15_BIN_DIR, Archiving, let_server_user_run_pgkeep, start_archiving, stop_archiving


@pytest.fixture(scope="session")
def server_runs_pgkeep() -> None:
    """The server's OS user can run the venv's pgkeep (archive_command, restore_command)."""
    let_server_user_run_pgkeep()


@pytest.fixture(scope="module")
def pg15_archiving(server_runs_pgkeep: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archiving]:
    """A PostgreSQL 15 cluster archiving through pgkeep into a fresh local archive (one per module)."""
    arch = start_archiving(PG15_BIN_DIR, tmp_path_factory.mktemp("pg15arch"))
    try:
        yield arch
    finally:
        stop_archiving(arch)
