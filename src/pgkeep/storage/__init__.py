"""Storage backends, chosen by URL scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pgkeep.errors import ConfigError
from pgkeep.storage.base import ObjectInfo, ObjectWriter, Storage
from pgkeep.storage.local import LocalStorage

__all__ = ["LocalStorage", "ObjectInfo", "ObjectWriter", "Storage", "local_path_from_url", "open_storage"]


def local_path_from_url(url: str) -> Path:
    """``file:///abs/dir`` -> /abs/dir; ``file://./rel`` and ``file://rel`` -> relative paths."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise ConfigError(f"not a file:// URL: {url}")
    if parts.netloc in ("", "localhost"):
        return Path(unquote(parts.path))
    # file://./backups is not a standard file URL but the documented default.
    return Path(unquote(parts.netloc + parts.path))


def open_storage(url: str) -> Storage:
    """Build the backend for ``PGKEEP_STORAGE_URL``."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        return LocalStorage(local_path_from_url(url))
    raise ConfigError(
        f"PGKEEP_STORAGE_URL: storage scheme {scheme!r} is not supported yet",
        hint="use file:///path/to/dir",
    )


def locate(storage_url: str) -> tuple[Storage, str]:
    """The backend and object name for a catalogued ``storageUrl``."""
    scheme = urlsplit(storage_url).scheme
    if scheme == "file":
        path = local_path_from_url(storage_url)
        return LocalStorage(path.parent), path.name
    raise ConfigError(f"storage URL scheme {scheme!r} is not supported")
