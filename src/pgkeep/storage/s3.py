"""S3-compatible object storage (AWS S3, SeaweedFS, MinIO, ...) through boto3.

``s3://bucket/prefix`` stores object ``name`` under the key ``prefix/name``;
``url_for`` gives back ``s3://bucket/prefix/name``. Endpoint, region,
addressing style and credentials come from :class:`S3Options` (built from
pgkeep's settings) and, for everything left unset, from boto3's own
resolution: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_REGION``,
``AWS_PROFILE``, the shared config files, and the default credential chain
(environment, web identity, container and instance roles).

Writing streams into a multipart upload, never into a local temp file:

- bytes fill one buffer of the part size; a full buffer becomes a part that
  a thread pool uploads while the next one fills;
- at most ``max_concurrency`` parts are in flight; when the window is full,
  ``write`` blocks until one finishes (backpressure on pg_dump);
- so a writer holds at most **part size x (max_concurrency + 1)** bytes of
  data (5 MiB x 3 = 15 MiB with the defaults), whatever the object's size up
  to 5 GiB. Parts are bytearrays handed to botocore without a copy, and an
  uploaded part's buffer is filled again (the same buffers from the first
  part to the last, not an allocation per part, whose freed memory the
  allocator kept: RSS wandered by 5-8 MB). Measured: the process's peak RSS
  grows by about 3x the part size, so the defaults keep an S3 backup's
  process under 150 MB peak RSS, where 16 MiB x 5 did not.
- an object smaller than one part is a single ``PutObject``;
- S3 allows 10,000 parts per object, of at most 5 GiB each. Rather than a
  part size chosen for the largest database (and memory to match for every
  backup), the part size doubles every ``PARTS_PER_STEP`` (1,000) parts:
  5 GiB in 5 MiB parts, the next 10 GiB in 10 MiB parts, and so on, which
  reaches 5 TiB within the 10,000 parts. Memory grows only for objects
  past 5 GiB, by the part size of the moment.

Integrity: every part and every small object carries its SHA-256
(``x-amz-checksum-sha256``), which the server checks on receipt, so bytes
corrupted on the way are refused, not stored. Once the server has shown it
checks that header, parts sign the header and not the body (``UNSIGNED-PAYLOAD``,
also over plain HTTP; see :class:`BodySigning`): hashing each byte once more
for the signature would add nothing the checksum does not give. ``commit`` then asks the server
for the object's size (and, when it reports one, the composite SHA-256 of the
parts) and compares them with what was written. The whole-object SHA-256 of
the stored bytes is computed by the backup pipeline, not here.

No overwrite: ``PutObject`` and ``CompleteMultipartUpload`` are sent with
``If-None-Match: *`` (AWS since 2024, SeaweedFS 4, MinIO), so the server
refuses atomically when the name exists. ``open_writer`` also checks with
``HeadObject`` to fail before any data is produced. A server that ignores the
header is protected by that check only, which races: two writers of one
name that both start before either completes would both succeed, the later
replacing the earlier. pgkeep's backup names are unique (timestamp and id),
so this needs two pgkeep processes writing the very same backup.

Lost responses are the subtle case. botocore retries a PutObject or a
completion that in fact succeeded, and the retry fails with 412 (the object
exists now) or NoSuchUpload: ``commit`` compares the object's ETag with the
one its own bytes produce before calling the object someone else's (an
identical object under the name thus counts as written: nothing was
overwritten). A retried CreateMultipartUpload may leave an orphan upload
nobody knows the id of: the writer aborts the other uploads of its key when
it finishes.

Failure leaves nothing behind: ``abort`` waits for in-flight parts, aborts
the multipart upload (and deletes the object if it was completed but failed
verification). If the server is unreachable even for that, the upload stays
open, invisible and unlisted, until :meth:`S3Storage.remove_incomplete` runs
for that name (crash recovery calls it); a bucket lifecycle rule
(AbortIncompleteMultipartUpload) is the belt and braces on AWS.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
import botocore.exceptions as bce
import botocore.session
from botocore.config import Config

from pgkeep.errors import ConfigError, ObjectNotFoundError, StorageError
from pgkeep.storage.base import ObjectInfo, check_name
from pgkeep.storage.s3_models import api_models
from pgkeep.storage.wrappers import RetryPolicy

if TYPE_CHECKING:
    from pgkeep.config import Settings

log = logging.getLogger("pgkeep.storage.s3")

MIB = 1 << 20
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB  # S3's maximum
DEFAULT_PART_SIZE = 5 * MIB  # S3's minimum: the least memory (see the module docstring)
MAX_PARTS = 10_000
PARTS_PER_STEP = 1_000  # the part size doubles after each of these many parts


def part_size_for(number: int, base: int) -> int:
    """The size of part ``number`` (1-based): ``base``, doubled every PARTS_PER_STEP parts."""
    return min(base << ((number - 1) // PARTS_PER_STEP), MAX_PART_SIZE)


# Codes where retrying cannot help: (what went wrong, how to fix it).
_CREDENTIALS_HINT = (
    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or PGKEEP_S3_ACCESS_KEY_ID / "
    "PGKEEP_S3_SECRET_ACCESS_KEY, AWS_PROFILE) and that the endpoint is the right server"
)
_REGION_HINT = "set PGKEEP_S3_REGION or AWS_REGION to the bucket's region"
_PERMANENT: dict[str, tuple[str, str]] = {
    "NoSuchBucket": (
        "the bucket does not exist",
        "create the bucket, or correct the bucket in PGKEEP_STORAGE_URL and the endpoint",
    ),
    "AccessDenied": (
        "access denied",
        "the credentials' policy must allow s3:PutObject, s3:GetObject, s3:ListBucket, "
        "s3:DeleteObject, s3:AbortMultipartUpload and s3:ListBucketMultipartUploads "
        "on the bucket",
    ),
    "AllAccessDisabled": ("all access to the bucket is disabled", "ask the bucket's owner"),
    "AccountProblem": ("the account has a problem", "ask the storage provider"),
    "InvalidAccessKeyId": ("the access key ID is not known to the server", _CREDENTIALS_HINT),
    "SignatureDoesNotMatch": (
        "the request signature does not match (wrong secret key)",
        _CREDENTIALS_HINT,
    ),
    "InvalidToken": ("the session token is invalid", "refresh the credentials"),
    "ExpiredToken": ("the session token has expired", "refresh the credentials"),
    "TokenRefreshRequired": ("the session token has expired", "refresh the credentials"),
    "RequestTimeTooSkewed": (
        "this host's clock is too far from the server's",
        "synchronise the clock (NTP)",
    ),
    "InvalidBucketName": ("the bucket name is invalid", "correct PGKEEP_STORAGE_URL"),
    "AuthorizationHeaderMalformed": ("the request was signed for another region", _REGION_HINT),
    "PermanentRedirect": ("the bucket is in another region or endpoint", _REGION_HINT),
    "IllegalLocationConstraintException": ("the bucket is in another region", _REGION_HINT),
    "NoSuchUpload": (
        "the multipart upload was aborted by someone else (a lifecycle rule or a cleanup)",
        "raise the bucket's AbortIncompleteMultipartUpload age above the longest backup",
    ),
    "EntityTooLarge": ("the object is too large", "raise PGKEEP_S3_PART_SIZE"),
    "InvalidPart": ("the server lost an uploaded part", "retry the backup"),
    "NotImplemented": ("the server does not implement this S3 call", "use another S3 server"),
}
# Corrupted in transit: the server refused the bytes. Worth another try, but botocore
# does not retry a 400, so these are reported as transient.
_CORRUPTED = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"}
# A HEAD response has no body, so the code is only the HTTP status.
_HEAD_STATUS = {
    "403": "AccessDenied",
    "400": "BadRequest",
    "301": "PermanentRedirect",
}


@dataclass(frozen=True)
class S3Options:
    """Client settings; None means "let boto3 resolve it" (environment, config files)."""

    endpoint_url: str | None = None
    region: str | None = None
    force_path_style: bool = False
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    part_size: int = DEFAULT_PART_SIZE
    max_concurrency: int = 4
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.part_size < MIN_PART_SIZE:
            raise ConfigError(f"PGKEEP_S3_PART_SIZE must be at least {MIN_PART_SIZE} bytes")
        if self.max_concurrency < 1:
            raise ConfigError("PGKEEP_S3_MAX_CONCURRENCY must be at least 1")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigError(
                "PGKEEP_S3_ACCESS_KEY_ID and PGKEEP_S3_SECRET_ACCESS_KEY must be set together",
                hint="set both, or neither to use the AWS credential chain",
            )

    @property
    def memory_bound(self) -> int:
        """Most bytes of object data one writer holds."""
        return self.part_size * (self.max_concurrency + 1)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Options:
        secret = settings.s3_secret_access_key
        return cls(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            force_path_style=settings.s3_force_path_style,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            part_size=settings.s3_part_size,
            max_concurrency=settings.s3_max_concurrency,
            retry=RetryPolicy(
                mode=settings.s3_retry_mode.value,
                max_attempts=settings.s3_max_attempts,
                connect_timeout=settings.s3_connect_timeout,
                read_timeout=settings.s3_read_timeout,
            ),
        )

    def make_client(self) -> Any:
        """A boto3 S3 client with pgkeep's retry, timeout and addressing settings."""
        config = Config(
            retries={"mode": self.retry.mode, "total_max_attempts": self.retry.max_attempts},
            connect_timeout=self.retry.connect_timeout,
            read_timeout=self.retry.read_timeout,
            # One connection per upload thread, plus the writer's own calls.
            max_pool_connections=max(10, self.max_concurrency + 2),
            user_agent_extra="pgkeep",
            # Unset unless asked: the shared config file's addressing_style then applies.
            s3={"addressing_style": "path"} if self.force_path_style else None,
        )
        kwargs: dict[str, Any] = {"config": config}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.region:
            kwargs["region_name"] = self.region
        if self.access_key_id is not None:
            kwargs["aws_access_key_id"] = self.access_key_id
            kwargs["aws_secret_access_key"] = self.secret_access_key
        try:
            # A session per client: boto3's default one is shared by threads and caches the
            # credentials it found first. Only the parsed API model files are shared (parsing
            # them costs 0.15 s a client), read lean (s3_models: half the memory).
            session = botocore.session.Session()
            session.register_component("data_loader", api_models())
            return boto3.session.Session(botocore_session=session).client("s3", **kwargs)
        except (bce.BotoCoreError, ValueError) as exc:
            raise ConfigError(f"cannot configure the S3 client: {exc}") from None


CHECKSUM_HEADER = "x-amz-checksum-sha256"


class BodySigning:
    """Whether a client's UploadPart requests still sign their bodies.

    Over plain HTTP botocore signs every body: one more SHA-256 pass over each
    byte on both sides (-0.2 client CPU-s per 300 MB), on top of the SHA-256
    header every part carries. Once the server has shown that it checks that
    header (its answer to a part repeats the SHA-256 sent), later parts sign
    the header instead of the body (``UNSIGNED-PAYLOAD``): a changed byte is
    refused (BadDigest), and the header, like every ``x-amz-`` header, is
    signed, so it cannot be changed to match. botocore makes the same choice
    over HTTPS. A server that does not answer with the checksum (an older
    S3-compatible one may ignore the header) keeps every body signed.
    """

    def __init__(self) -> None:
        self.server_checks_sha256 = False

    def saw(self, response: dict[str, Any], sent_sha256: str) -> None:
        """Note an UploadPart answer: does the server repeat the SHA-256 it was sent?"""
        if response.get("ChecksumSHA256") == sent_sha256:
            self.server_checks_sha256 = True

    def before_sign(self, request: Any, **_: Any) -> None:
        config = request.context.get("client_config")
        if not self.server_checks_sha256 or config is None or CHECKSUM_HEADER not in request.headers:
            return
        s3_config = dict(config.s3 or {}, payload_signing_enabled=False)
        request.context["client_config"] = config.merge(Config(s3=s3_config))


_BODY_SIGNING: weakref.WeakKeyDictionary[Any, BodySigning] = weakref.WeakKeyDictionary()
_BODY_SIGNING_LOCK = threading.Lock()


def body_signing(client: Any) -> BodySigning:
    """The one BodySigning of ``client``, hooked into it on first use."""
    with _BODY_SIGNING_LOCK:
        signing = _BODY_SIGNING.get(client)
        if signing is None:
            signing = _BODY_SIGNING[client] = BodySigning()
            client.meta.events.register("before-sign.s3.UploadPart", signing.before_sign)
        return signing


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ("bucket", "a/b"). Not urlsplit: keys may hold ``#`` or ``?``."""
    if not url.startswith("s3://"):
        raise ConfigError(f"not an s3:// URL: {url}")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or any(c in bucket for c in "?#@: "):
        raise ConfigError(
            f"invalid S3 URL {url!r}: no bucket name",
            hint="use s3://bucket or s3://bucket/prefix",
        )
    return bucket, key


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _multipart_etag(part_etags: list[str]) -> str | None:
    """The ETag S3 gives a completed multipart object: MD5 of the parts' MD5s, "-N"."""
    try:
        md5s = b"".join(bytes.fromhex(etag.strip('"')) for etag in part_etags)
    except ValueError:
        return None  # not plain MD5s (e.g. SSE-KMS): cannot be predicted
    return f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(part_etags)}"


class S3Storage:
    """Objects under ``s3://bucket/prefix``. Thread-safe; writers are not shared."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        options: S3Options | None = None,
        *,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.options = options or S3Options()
        self.client = client if client is not None else self.options.make_client()
        self.body_signing = body_signing(self.client)
        self._key_prefix = f"{self.prefix}/" if self.prefix else ""

    @classmethod
    def from_url(cls, url: str, options: S3Options | None = None) -> S3Storage:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, options)

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def key_for(self, name: str) -> str:
        return self._key_prefix + name

    def url_for(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key_for(name)}"

    # -- errors ----------------------------------------------------------------------

    def error(self, exc: Exception, action: str, name: str | None = None) -> StorageError:
        """Translate a boto3/botocore exception into pgkeep's StorageError."""
        where = self.url_for(name) if name is not None else f"s3://{self.bucket}/{self._key_prefix}"
        attempts = self.options.retry.max_attempts
        if isinstance(exc, bce.ClientError):
            err = exc.response.get("Error", {})
            meta = exc.response.get("ResponseMetadata", {})
            status = meta.get("HTTPStatusCode")
            attempts = int(meta.get("RetryAttempts", attempts - 1)) + 1
            code = str(err.get("Code") or status or "Unknown")
            code = _HEAD_STATUS.get(code, code)
            if code in ("NoSuchKey", "404") and name is not None:
                return ObjectNotFoundError(f"backup file {name} not found in {self.url_for('')}")
            if code in ("PreconditionFailed", "412") and name is not None:
                return _exists(self.url_for(name))
            if code in _PERMANENT:
                cause, hint = _PERMANENT[code]
                return StorageError(
                    f"{action} {where} failed: {cause} ({code}, bucket {self.bucket!r} at {self.endpoint})",
                    permanent=True,
                    hint=hint,
                )
            if code in _CORRUPTED:
                return StorageError(
                    f"{action} {where} failed: the server received corrupted data ({code})",
                    hint="retry; if it persists, check the network path to the server",
                )
            transient = status is None or status >= 500 or status in (408, 429)
            message = err.get("Message") or ""
            return StorageError(
                f"{action} {where} failed: {code} {message}".rstrip()
                + (f" (after {attempts} attempts)" if transient else ""),
                permanent=not transient,
            )
        if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
            return StorageError(
                f"{action} {where} failed: no usable S3 credentials found",
                permanent=True,
                hint=_CREDENTIALS_HINT,
            )
        if isinstance(exc, bce.ParamValidationError):
            return StorageError(f"{action} {where} failed: {exc}", permanent=True)
        if isinstance(exc, bce.BotoCoreError):
            # Connection refused/reset, timeouts, a body cut short: botocore already retried.
            return StorageError(
                f"{action} {where} failed: cannot talk to the S3 endpoint {self.endpoint}: "
                f"{exc} (after {attempts} attempts)",
                hint="check that the server is up and reachable, then retry",
            )
        if isinstance(exc, StorageError):
            return exc
        return StorageError(f"{action} {where} failed: {exc!r}")

    def call(self, action: str, name: str | None, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """Run one client call, translating its errors."""
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise self.error(exc, action, name) from None

    def _check_bucket(self, action: str, name: str) -> None:
        """After a HEAD 404, which says nothing about what is missing: raise if the bucket is."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except bce.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                cause, hint = _PERMANENT["NoSuchBucket"]
                raise StorageError(
                    f"{action} {self.url_for(name)} failed: {cause} (NoSuchBucket, bucket "
                    f"{self.bucket!r} at {self.endpoint})",
                    permanent=True,
                    hint=hint,
                ) from None
            # 403: HEAD bucket needs s3:ListBucket, which a reader may lack. Keep "not found".
        except bce.BotoCoreError:
            pass  # the HEAD object call just answered; a blip here changes nothing

    def head(self, name: str, action: str = "stat") -> dict[str, Any] | None:
        """HeadObject, or None if the key does not exist (a missing bucket raises)."""
        try:
            return cast(
                dict[str, Any],
                self.client.head_object(Bucket=self.bucket, Key=self.key_for(name), ChecksumMode="ENABLED"),
            )
        except bce.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                self._check_bucket(action, name)
                return None
            raise self.error(exc, action, name) from None
        except bce.BotoCoreError as exc:
            raise self.error(exc, action, name) from None

    # -- the Storage protocol ---------------------------------------------------------

    def open_writer(self, name: str) -> S3Writer:
        check_name(name)
        # Fail before pg_dump runs: a taken name, a missing bucket, bad credentials.
        if self.head(name, "writing") is not None:
            raise _exists(self.url_for(name))
        return S3Writer(self, name)

    def open_reader(self, name: str) -> BinaryIO:
        check_name(name)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.key_for(name))
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise self.error(exc, "reading", name) from None
        return cast(BinaryIO, S3Reader(self, name, resp))

    def stat(self, name: str) -> ObjectInfo:
        check_name(name)
        head = self.head(name)
        if head is None:
            raise ObjectNotFoundError(f"backup file {name} not found in {self.url_for('')}")
        return ObjectInfo(name, int(head["ContentLength"]), head["LastModified"])

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        out = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key_prefix + prefix, Delimiter="/"
        )
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(self._key_prefix) :]
                    if name and not name.startswith("."):
                        out.append(ObjectInfo(name, int(obj["Size"]), obj["LastModified"]))
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise self.error(exc, "listing", None) from None
        return sorted(out, key=lambda o: o.name)

    def delete(self, name: str) -> None:
        check_name(name)
        # DeleteObject succeeds for a missing key: idempotent as the contract asks.
        self.call("deleting", name, self.client.delete_object, Key=self.key_for(name))

    def remove_incomplete(self, name: str) -> int:
        """Abort the open multipart uploads of ``name`` (a dead writer's parts)."""
        check_name(name)
        key = self.key_for(name)
        removed = 0
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=key)
        try:
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Key"] != key:
                        continue  # another name that merely starts with this one
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])
                    removed += 1
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise self.error(exc, "removing incomplete uploads of", name) from None
        return removed


def _exists(url: str) -> StorageError:
    return StorageError(
        f"{url} exists already; backups are never overwritten",
        permanent=True,
        hint="choose another name, or delete the old object first",
    )


class S3Reader(io.RawIOBase):
    """A GetObject body as a file; errors become StorageError.

    A connection dropped mid-body is not retried by botocore (the response had
    started): the reader resumes where it stopped, with a ranged GET of the
    same object version (``If-Match`` its ETag: an object replaced meanwhile is
    an error, never a splice of two), up to the retry policy's attempts. Only
    then does the drop surface, as a transient StorageError.
    """

    def __init__(self, storage: S3Storage, name: str, response: dict[str, Any]) -> None:
        super().__init__()
        self._storage = storage
        self._name = name
        self._body = response["Body"]
        self._etag: str | None = response.get("ETag")
        self._length: int | None = response.get("ContentLength")
        self._pos = 0
        self._resumes = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        while True:
            try:
                data = self._body.read(None if size is None or size < 0 else size)
            except bce.ClientError as exc:
                raise self._storage.error(exc, f"reading (at byte {self._pos})", self._name) from None
            except (bce.BotoCoreError, OSError) as exc:
                if self._length is not None and self._pos >= self._length:
                    return b""  # the drop came after the last byte
                self._resume(exc)
                continue
            self._pos += len(data)
            return cast(bytes, data)

    def _resume(self, cause: Exception) -> None:
        """Reopen the body at the current position, or raise the drop when out of attempts."""
        url = self._storage.url_for(self._name)
        limit = self._storage.options.retry.max_attempts - 1
        if self._resumes >= limit or self._etag is None:
            raise StorageError(
                f"reading {url} failed at byte {self._pos}: the download was cut short ({cause})"
                + (f", {self._resumes} resumes" if self._resumes else ""),
                hint="check the network path to the S3 endpoint, then retry",
            ) from None
        self._resumes += 1
        log.warning(
            "download of %s cut short at byte %d (%s): resuming (%d of %d)", url, self._pos, cause, self._resumes, limit
        )
        with contextlib.suppress(Exception):
            self._body.close()
        try:
            response = self._storage.client.get_object(
                Bucket=self._storage.bucket,
                Key=self._storage.key_for(self._name),
                Range=f"bytes={self._pos}-",
                IfMatch=self._etag,
            )
        except bce.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 412:
                raise StorageError(
                    f"reading {url} failed at byte {self._pos}: the object was replaced while it was being read",
                    permanent=True,
                ) from None
            raise self._storage.error(exc, f"resuming (at byte {self._pos})", self._name) from None
        except bce.BotoCoreError as exc:
            raise self._storage.error(exc, f"resuming (at byte {self._pos})", self._name) from None
        self._body = response["Body"]

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        n = len(data)
        memoryview(buffer).cast("B")[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()


@dataclass(frozen=True)
class _Part:
    number: int
    etag: str
    sha256: bytes
    size: int


class S3Writer:
    """Streams one object into S3; see the module docstring for the memory bound."""

    def __init__(self, storage: S3Storage, name: str) -> None:
        self._s = storage
        self._name = name
        self._key = storage.key_for(name)
        self._url = storage.url_for(name)
        self._part_size = storage.options.part_size
        self._window = storage.options.max_concurrency
        self._buf: bytearray | None = None
        self._fill = 0
        self._size = 0
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: set[Future[tuple[_Part, bytearray]]] = set()
        self._parts: list[_Part] = []
        self._spare: list[bytearray] = []  # uploaded parts' buffers, filled again
        self._next_part = 1
        self._small_sha256: bytes | None = None
        self._completed = False  # our object is visible: abort must delete it
        self._create_retried = False
        self._state = "open"
        self._lock = threading.Lock()  # abort may come from another thread (signal handling)

    # -- ObjectWriter -----------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        self._check_open("write")
        view = memoryview(data).cast("B")
        try:
            while view:
                if self._buf is None:
                    self._buf = self._part_buffer(part_size_for(self._next_part, self._part_size))
                    self._fill = 0
                n = min(len(view), len(self._buf) - self._fill)
                self._buf[self._fill : self._fill + n] = view[:n]
                self._fill += n
                self._size += n
                view = view[n:]
                if self._fill == len(self._buf):
                    self._ship()
        except BaseException:
            self.abort()
            raise

    def commit(self) -> None:
        self._check_open("commit")
        try:
            if self._upload_id is None:  # never filled a part
                self._put_small()
            else:
                if self._buf is not None and self._fill:
                    self._ship()
                self._drain(0)
                self._complete()
            self._verify()
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        self._shutdown_pool()
        self._sweep_orphans()

    def abort(self) -> None:
        with self._lock:
            if self._state in ("committed", "aborted"):
                return
            self._state = "aborted"
        self._buf = None
        # Parts still uploading would otherwise land after the abort and keep the upload
        # (and its storage) alive on some servers: wait for them first.
        self._shutdown_pool()
        if self._upload_id is not None:
            try:
                self._s.client.abort_multipart_upload(Bucket=self._s.bucket, Key=self._key, UploadId=self._upload_id)
            except Exception as exc:  # never raise from cleanup
                log.warning(
                    "could not abort the multipart upload of %s (%s); "
                    "crash recovery (remove_incomplete) removes it later",
                    self._url,
                    self._s.error(exc, "aborting", self._name),
                )
        if self._completed:
            try:
                self._s.client.delete_object(Bucket=self._s.bucket, Key=self._key)
            except Exception as exc:
                log.warning(
                    "could not delete %s after a failed check: %s",
                    self._url,
                    self._s.error(exc, "deleting", self._name),
                )
        self._sweep_orphans()

    # -- internals ----------------------------------------------------------------------

    def _part_buffer(self, size: int) -> bytearray:
        """A buffer for the next part: an uploaded part's, or a new one.

        Handed to botocore as is (no copy when shipped) and filled again once
        uploaded, so a writer holds the same (max_concurrency + 1) buffers from
        its first parts to its last instead of a new allocation per part.
        """
        while self._spare:
            buf = self._spare.pop()
            if len(buf) == size:  # not after the part size has doubled
                return buf
        return bytearray(size)

    def _check_open(self, what: str) -> None:
        if self._state != "open":
            raise StorageError(f"{what} on {self._url} after {self._state}", permanent=True)

    def _ship(self) -> None:
        """Hand the current buffer to the upload pool, waiting for a free slot first."""
        buf, fill = self._buf, self._fill
        assert buf is not None
        self._buf, self._fill = None, 0
        if fill < len(buf):
            del buf[fill:]  # the last part: shrink in place
        if self._next_part > MAX_PARTS:
            raise StorageError(
                f"{self._url} needs more than {MAX_PARTS} parts (the last ones of {len(buf)} bytes)",
                permanent=True,
                hint="raise PGKEEP_S3_PART_SIZE (S3 allows 10,000 parts per object)",
            )
        if self._upload_id is None:
            resp = self._s.call(
                "starting the upload of",
                self._name,
                self._s.client.create_multipart_upload,
                Key=self._key,
                ChecksumAlgorithm="SHA256",
            )
            self._upload_id = resp["UploadId"]
            # A retried CreateMultipartUpload may have created an upload whose answer was
            # lost: an orphan nobody knows the id of. Swept when this writer finishes.
            self._create_retried = resp.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
            self._pool = ThreadPoolExecutor(self._window, thread_name_prefix="pgkeep-s3-part")
        # Backpressure: with the window full, block here (and so block pg_dump).
        self._drain(self._window - 1)
        assert self._pool is not None
        number = self._next_part
        self._next_part += 1
        self._inflight.add(self._pool.submit(self._upload_part, number, buf))
        del buf  # the future holds the only reference now; freed once uploaded

    def _drain(self, keep: int) -> None:
        """Wait until at most ``keep`` parts are in flight; raise the first failure."""
        while len(self._inflight) > keep:
            done, _ = wait(self._inflight, return_when=FIRST_COMPLETED)
            for future in done:
                self._inflight.discard(future)
                part, buf = future.result()  # re-raises the part's StorageError
                self._parts.append(part)
                self._spare.append(buf)

    def _upload_part(self, number: int, buf: bytearray) -> tuple[_Part, bytearray]:
        sha = hashlib.sha256(buf).digest()
        resp = self._s.call(
            f"uploading part {number} of",
            self._name,
            self._s.client.upload_part,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=buf,
            ChecksumSHA256=_b64(sha),
        )
        self._s.body_signing.saw(resp, _b64(sha))
        log.debug("%s: part %d uploaded (%d bytes)", self._url, number, len(buf))
        return _Part(number, resp["ETag"], sha, len(buf)), buf

    def _put_small(self) -> None:
        body = self._buf if self._buf is not None else bytearray()
        del body[self._fill :]
        self._small_sha256 = hashlib.sha256(body).digest()
        try:
            self._s.client.put_object(
                Bucket=self._s.bucket,
                Key=self._key,
                Body=body,
                ChecksumSHA256=_b64(self._small_sha256),
                IfNoneMatch="*",
            )
        except (bce.BotoCoreError, bce.ClientError) as exc:
            expected = hashlib.md5(body, usedforsecurity=False).hexdigest()
            self._resolve_conflict(exc, "storing", expected)
        self._completed = True
        self._buf = None

    def _complete(self) -> None:
        self._parts.sort(key=lambda p: p.number)
        parts = [{"PartNumber": p.number, "ETag": p.etag, "ChecksumSHA256": _b64(p.sha256)} for p in self._parts]
        try:
            self._s.client.complete_multipart_upload(
                Bucket=self._s.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except (bce.BotoCoreError, bce.ClientError) as exc:
            self._resolve_conflict(exc, "completing the upload of", _multipart_etag([p.etag for p in self._parts]))
        self._completed = True
        self._upload_id = None  # nothing left to abort

    def _resolve_conflict(self, exc: Exception, action: str, our_etag: str | None) -> None:
        """A 412/NoSuchUpload after retries may be our own earlier, successful attempt."""
        error = self._s.error(exc, action, self._name)
        code = ""
        if isinstance(exc, bce.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("PreconditionFailed", "NoSuchUpload") and our_etag is not None:
            head = self._s.head(self._name, action)
            if head is not None and str(head.get("ETag", "")).strip('"') == our_etag:
                log.info("%s: a retried request had already succeeded", self._url)
                return
        raise error

    def _verify(self) -> None:
        """Compare what the server reports with what was written."""
        head = self._s.head(self._name, "checking")
        if head is None:
            raise StorageError(f"{self._url} is missing right after its upload completed")
        stored = int(head["ContentLength"])
        if stored != self._size:
            raise StorageError(
                f"{self._url} has {stored} bytes on the server, {self._size} were written",
                hint="retry the backup",
            )
        reported = head.get("ChecksumSHA256")
        if reported is None:
            return  # the server keeps no SHA-256: the size check and part checksums remain
        if self._small_sha256 is not None:
            expected = _b64(self._small_sha256)
        else:
            composite = hashlib.sha256(b"".join(p.sha256 for p in self._parts)).digest()
            expected = _b64(composite)
        if str(reported).split("-")[0] != expected:
            raise StorageError(
                f"{self._url}: the server's SHA-256 {reported} differs from the bytes sent ({expected})",
                hint="retry the backup; if it persists, the server is corrupting data",
            )

    def _sweep_orphans(self) -> None:
        """Abort the other uploads of this key when our start was retried (see ``_ship``).

        Another writer of the same name would lose its upload too; it could never
        have completed anyway once this one did (If-None-Match), and two writers of
        one name is itself an error.
        """
        if not self._create_retried:
            return
        try:
            resp = self._s.client.list_multipart_uploads(Bucket=self._s.bucket, Prefix=self._key)
            for upload in resp.get("Uploads", []):
                if upload["Key"] == self._key and upload["UploadId"] != self._upload_id:
                    self._s.client.abort_multipart_upload(
                        Bucket=self._s.bucket, Key=self._key, UploadId=upload["UploadId"]
                    )
        except Exception as exc:  # never raise from cleanup
            log.warning(
                "could not remove orphaned uploads of %s: %s",
                self._url,
                self._s.error(exc, "cleaning up", self._name),
            )

    def _shutdown_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._inflight.clear()
        self._spare.clear()
