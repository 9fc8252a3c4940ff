"""Storage backends, chosen by URL scheme: ``file://`` (local.py) and ``s3://`` (s3.py).

Every backend leaves here wrapped by :func:`pgkeep.storage.wrappers.wrap`
(logging), the one place cross-cutting layers are composed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from pgkeep.errors import ConfigError
from pgkeep.storage.base import ObjectInfo, ObjectWriter, Storage
from pgkeep.storage.local import LocalStorage
from pgkeep.storage.wrappers import wrap

if TYPE_CHECKING:
    from pgkeep.config import Settings

__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "ObjectWriter",
    "Storage",
    "local_path_from_url",
    "locate",
    "open_storage",
]


def local_path_from_url(url: str) -> Path:
    """``file:///abs/dir`` -> /abs/dir; ``file://./rel`` and ``file://rel`` -> relative paths."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise ConfigError(f"not a file:// URL: {url}")
    if parts.netloc in ("", "localhost"):
        return Path(unquote(parts.path))
    # file://./backups is not a standard file URL but the documented default.
    return Path(unquote(parts.netloc + parts.path))


def _s3(bucket_url: str, settings: Settings | None) -> Storage:
    # Imported here: boto3 takes a while to import and local-only setups never need it.
    from pgkeep.storage.s3 import S3Options, S3Storage

    options = S3Options.from_settings(settings) if settings is not None else S3Options()
    return S3Storage.from_url(bucket_url, options)


def open_storage(url: str, settings: Settings | None = None) -> Storage:
    """Build the backend for ``PGKEEP_STORAGE_URL``.

    ``settings`` supplies the S3 options (endpoint, region, part size, ...);
    without it, an S3 backend uses boto3's defaults and the AWS environment.
    """
    scheme = urlsplit(url).scheme
    if scheme == "file":
        return wrap(LocalStorage(local_path_from_url(url)))
    if scheme == "s3":
        return wrap(_s3(url, settings))
    raise ConfigError(
        f"PGKEEP_STORAGE_URL: storage scheme {scheme!r} is not supported",
        hint="use file:///path/to/dir or s3://bucket/prefix",
    )


def locate(storage_url: str, settings: Settings | None = None) -> tuple[Storage, str]:
    """The backend and object name for a catalogued ``storageUrl``."""
    scheme = urlsplit(storage_url).scheme
    if scheme == "file":
        path = local_path_from_url(storage_url)
        return wrap(LocalStorage(path.parent)), path.name
    if scheme == "s3":
        parent, _, name = storage_url.rpartition("/")
        if not name or parent == "s3:/":
            raise ConfigError(f"storage URL {storage_url!r} names no object")
        return wrap(_s3(parent, settings)), name
    raise ConfigError(f"storage URL scheme {scheme!r} is not supported")
