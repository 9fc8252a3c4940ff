"""Where pgkeep's backups go during the benchmark.

A target gives pgkeep the environment that points it at one storage backend
and cleans up afterwards. Only local disk exists today; an S3 target (start
``pgkeep.devs3``'s SeaweedFS in ``setup``, return ``PGKEEP_STORAGE_URL=s3://...``
and its credentials, stop it in ``teardown``) plugs in beside it, and then
``TARGETS["s3"] = S3Target()`` plus one method line in ``bench.methods``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class StorageTarget(Protocol):
    name: str

    def setup(self, work: Path) -> dict[str, str]:
        """Start whatever is needed; return the PGKEEP_* variables that select it."""
        ...

    def teardown(self) -> None: ...


class LocalTarget:
    """``file://`` storage on the same disk as the reference methods' outputs."""

    name = "local"

    def setup(self, work: Path) -> dict[str, str]:
        store = work / "pgkeep-store"
        store.mkdir(parents=True, exist_ok=True)
        return {"PGKEEP_STORAGE_URL": f"file://{store}"}

    def teardown(self) -> None:
        pass


def targets() -> dict[str, StorageTarget]:
    return {"local": LocalTarget()}
