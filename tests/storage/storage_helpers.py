"""Shared pieces of the storage tests (importable: pytest puts this directory on sys.path)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from helpers import S3_BUCKET
from pgkeep.config import Settings
from pgkeep.devs3 import DevS3
from pgkeep.storage.base import Storage
from pgkeep.storage.local import PARTIAL_MARK, LocalStorage
from pgkeep.storage.s3 import S3Storage
from pgkeep.storage.wrappers import LoggingStorage

MIB = 1 << 20
PART_SIZE = 5 * MIB  # S3's minimum: many parts for little data
CONCURRENCY = 2
BUCKET = S3_BUCKET  # the session's bucket (the ``devs3`` fixture in tests/conftest.py)


def s3_settings(server: DevS3, endpoint_url: str | None = None, **overrides: Any) -> Settings:
    """Settings for ``server`` (or a proxy in front of it), ignoring any .env file."""
    values: dict[str, Any] = {
        "s3_endpoint_url": endpoint_url or server.endpoint_url,
        "s3_region": server.region,
        "s3_force_path_style": True,
        "s3_access_key_id": server.access_key,
        "s3_secret_access_key": server.secret_key,
        "s3_part_size": PART_SIZE,
        "s3_max_concurrency": CONCURRENCY,
        "s3_max_attempts": 3,
        "s3_connect_timeout": 2,
        "s3_read_timeout": 10,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def unwrap(storage: Storage) -> Any:
    """The backend inside the wrappers that open_storage composes."""
    assert isinstance(storage, LoggingStorage), "open_storage must compose the wrappers"
    return storage.inner


@dataclass
class Backend:
    """A storage under test plus raw access to what lies beneath it."""

    kind: str
    storage: Storage  # as open_storage builds it (wrapped)
    raw: LocalStorage | S3Storage
    memory_bound: int  # bytes of object data a writer may hold
    settings: Settings | None = None  # what open_storage/locate were given

    def leftovers(self) -> list[str]:
        """Incomplete uploads or temp files: what a failed write must not leave."""
        if isinstance(self.raw, S3Storage):
            resp = self.raw.client.list_multipart_uploads(Bucket=self.raw.bucket, Prefix=self.raw.key_for(""))
            return [u["Key"] for u in resp.get("Uploads", [])]
        if not self.raw.root.exists():
            return []
        return [p.name for p in self.raw.root.iterdir() if PARTIAL_MARK in p.name]

    def tamper(self, name: str, data: bytes) -> None:
        """Replace an object's bytes behind pgkeep's back (storage corruption, an attacker)."""
        if isinstance(self.raw, S3Storage):
            self.raw.client.put_object(Bucket=self.raw.bucket, Key=self.raw.key_for(name), Body=data)
        else:
            path = self.raw.path_for(name)
            path.chmod(0o600)
            path.write_bytes(data)
