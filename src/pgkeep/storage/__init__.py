"""Storage backends, chosen by URL scheme: ``file://`` (local.py) and ``s3://`` (s3.py).

Every backend leaves here wrapped by :func:`pgkeep.storage.wrappers.wrap`
(logging), the one place cross-cutting layers are composed. With
PGKEEP_LOCAL_COPY_DIR set, the result is also paired with a local mirror
(:class:`pgkeep.storage.tee.TeeStorage`), here and nowhere else: services
write to one Storage and never know about the copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from pgkeep.errors import ConfigError
from pgkeep.storage.base import ObjectInfo, ObjectWriter, Storage
from pgkeep.storage.local import LocalStorage
from pgkeep.storage.tee import TeeStorage
from pgkeep.storage.wrappers import wrap

if TYPE_CHECKING:
    from pgkeep.config import Settings

__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "ObjectWriter",
    "Storage",
    "TeeStorage",
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


def _with_local_copy(storage: Storage, settings: Settings | None, *, strict: bool) -> Storage:
    """Pair ``storage`` with the PGKEEP_LOCAL_COPY_DIR mirror, if one is configured."""
    copy_dir = settings.local_copy_dir if settings is not None else None
    if copy_dir is None:
        return storage
    copy = wrap(LocalStorage(copy_dir))
    if copy.url_for("x") == storage.url_for("x"):
        if strict:
            raise ConfigError(
                "PGKEEP_LOCAL_COPY_DIR is the storage directory itself",
                hint="point it at another directory (or disk), or unset it",
            )
        return storage
    return TeeStorage(storage, copy)


def open_storage(url: str, settings: Settings | None = None) -> Storage:
    """Build the backend for ``PGKEEP_STORAGE_URL``.

    ``settings`` supplies the S3 options (endpoint, region, part size, ...)
    and the local copy directory; without it, an S3 backend uses boto3's
    defaults and the AWS environment.
    """
    scheme = urlsplit(url).scheme
    if scheme == "file":
        backend = wrap(LocalStorage(local_path_from_url(url)))
    elif scheme == "s3":
        backend = wrap(_s3(url, settings))
    else:
        raise ConfigError(
            f"PGKEEP_STORAGE_URL: storage scheme {scheme!r} is not supported",
            hint="use file:///path/to/dir or s3://bucket/prefix",
        )
    return _with_local_copy(backend, settings, strict=True)


def locate(storage_url: str, settings: Settings | None = None) -> tuple[Storage, str]:
    """The backend and object name for a catalogued ``storageUrl``.

    With a local copy configured, the backend is paired with it too, so that
    deleting a backup removes its copy as well (reads use the main storage).
    """
    scheme = urlsplit(storage_url).scheme
    if scheme == "file":
        path = local_path_from_url(storage_url)
        backend, name = wrap(LocalStorage(path.parent)), path.name
    elif scheme == "s3":
        parent, _, name = storage_url.rpartition("/")
        if not name or parent == "s3:/":
            raise ConfigError(f"storage URL {storage_url!r} names no object")
        backend = wrap(_s3(parent, settings))
    else:
        raise ConfigError(f"storage URL scheme {scheme!r} is not supported")
    return _with_local_copy(backend, settings, strict=False), name
