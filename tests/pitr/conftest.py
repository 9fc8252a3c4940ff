"""Fixtures for WAL archiving and point-in-time recovery: clusters that archive through ``pgkeep wal-push``.

Nothing skips: a missing server binary fails the run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pitr_helpers import archive_conf, give_to_server_user, let_server_user_run_pgkeep, server_user_dir, write_env

from helpers import make_context
from pgkeep.devcluster import DevCluster
from pgkeep.services.context import Context

PG15_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
APP_DB = "app"


@dataclass
class Archiving:
    """A running cluster whose archive_command is ``pgkeep wal-push`` into ``storage``."""

    cluster: DevCluster
    root: Path  # owned by the server's OS user: storage, config, restored data directories
    storage: Path
    config: Path
    ctx: Context

    @property
    def url(self) -> str:
        return self.cluster.url(APP_DB)

    @property
    def storage_url(self) -> str:
        return f"file://{self.storage}"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for the pgkeep CLI on this cluster and archive."""
        return {
            "DATABASE_URL": self.url,
            "PGKEEP_CATALOG_URL": self.ctx.settings.catalog_url,
            "PGKEEP_STORAGE_URL": self.storage_url,
            "PGKEEP_STATE_DIR": str(self.ctx.settings.state_dir),
            **extra,
        }

    def new_dir(self, name: str) -> Path:
        """A path (not created) for a restored data directory, reachable by the server's OS user."""
        return self.root / name


@pytest.fixture(scope="session")
def server_runs_pgkeep() -> None:
    """The server's OS user can run the venv's pgkeep (archive_command, restore_command)."""
    let_server_user_run_pgkeep()


def start_archiving(bin_dir: Path, tmp: Path, extra_conf: dict[str, str] | None = None) -> Archiving:
    root = server_user_dir("pgkeep-pitr-")
    storage = root / "archive"
    storage.mkdir(mode=0o700)
    give_to_server_user(storage)
    config = write_env(root / "pgkeep.env", {"PGKEEP_STORAGE_URL": f"file://{storage}"})
    cluster = DevCluster.start(bin_dir, extra_conf=archive_conf(config, extra_conf))
    try:
        cluster.create_database(APP_DB)
        ctx = make_context(tmp, cluster.url(APP_DB), storage_url=f"file://{storage}", pg_bin_dir=bin_dir)
    except BaseException:
        cluster.stop()
        raise
    return Archiving(cluster, root, storage, config, ctx)


def stop_archiving(arch: Archiving) -> None:
    arch.ctx.close()
    arch.cluster.stop()
    shutil.rmtree(arch.root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg15_archiving(server_runs_pgkeep: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archiving]:
    """A PostgreSQL 15 cluster archiving through pgkeep into a fresh local archive (one per module)."""
    arch = start_archiving(PG15_BIN_DIR, tmp_path_factory.mktemp("pg15arch"))
    try:
        yield arch
    finally:
        stop_archiving(arch)
