"""Where pgkeep's backups go during the benchmark.

A target gives pgkeep the environment that points it at one storage backend
and cleans up afterwards: local disk (``file://``, beside the reference
methods' outputs) and S3 (a SeaweedFS from :mod:`pgkeep.devs3` on loopback,
as the test suite uses). Only the targets some selected method names are
set up, so a run without S3 methods starts no SeaweedFS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pgkeep.devs3 import DevS3

S3_BUCKET = "pgkeep-bench"


class StorageTarget(Protocol):
    name: str

    def setup(self, work: Path) -> dict[str, str]:
        """Start whatever is needed; return the PGKEEP_* variables that select it."""
        ...

    def pids(self) -> list[int]:
        """Processes serving this storage, whose CPU time is the storage's, not the machine's noise."""
        ...

    def teardown(self) -> None:
        """Stop what ``setup`` started. Idempotent; safe after a failed ``setup``."""
        ...


class LocalTarget:
    """``file://`` storage on the same disk as the reference methods' outputs."""

    name = "local"

    def setup(self, work: Path) -> dict[str, str]:
        store = work / "pgkeep-store"
        store.mkdir(parents=True, exist_ok=True)
        return {"PGKEEP_STORAGE_URL": f"file://{store}"}

    def pids(self) -> list[int]:
        return []

    def teardown(self) -> None:
        pass


class S3Target:
    """``s3://`` storage on a throwaway SeaweedFS (loopback, data in the work dir).

    pgkeep's own S3 defaults (part size, concurrency, retries) are used, as a
    user would run it; only the endpoint and credentials are set.
    """

    name = "s3"

    def __init__(self) -> None:
        self.server: DevS3 | None = None

    def setup(self, work: Path) -> dict[str, str]:
        # In the work dir: the same disk as the local target, so only the transport differs.
        self.server = DevS3.start(work)
        self.server.create_bucket(S3_BUCKET)
        return {
            "PGKEEP_STORAGE_URL": f"s3://{S3_BUCKET}/backups",
            "PGKEEP_S3_ENDPOINT_URL": self.server.endpoint_url,
            "PGKEEP_S3_REGION": self.server.region,
            "PGKEEP_S3_FORCE_PATH_STYLE": "true",
            "PGKEEP_S3_ACCESS_KEY_ID": self.server.access_key,
            "PGKEEP_S3_SECRET_ACCESS_KEY": self.server.secret_key,
        }

    def pids(self) -> list[int]:
        return self.server.pids if self.server is not None else []

    def teardown(self) -> None:
        # DevS3.stop: SIGTERM, a one-second grace, then SIGKILL (weed drains for long otherwise).
        if self.server is not None:
            self.server.stop()
            self.server = None


def targets(names: set[str]) -> dict[str, StorageTarget]:
    """The targets called ``names`` (``local`` always: unmeasured commands use it)."""
    known: dict[str, type[LocalTarget] | type[S3Target]] = {"local": LocalTarget, "s3": S3Target}
    unknown = names - set(known)
    if unknown:
        raise ValueError(f"unknown storage targets {sorted(unknown)}; known: {sorted(known)}")
    return {name: known[name]() for name in sorted(names | {"local"})}
