"""S3 specifics against a real SeaweedFS: error mapping, the AWS environment, faults.

Faults are injected deterministically: a server killed between parts, and a
loopback proxy (flaky_proxy.py) that throttles, resets or loses chosen
requests. The retries themselves are botocore's.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
from flaky_proxy import TRUNCATE_AFTER, FlakyProxy
from pydantic import SecretStr
from storage_helpers import BUCKET, MIB, s3_settings, unique, unwrap

from pgkeep.config import S3RetryMode, Settings
from pgkeep.devs3 import DevS3
from pgkeep.errors import ConfigError, ObjectNotFoundError, StorageError
from pgkeep.storage import locate, open_storage
from pgkeep.storage import s3 as s3_module
from pgkeep.storage.base import Storage, iter_chunks
from pgkeep.storage.s3 import (
    MAX_PART_SIZE,
    MAX_PARTS,
    PARTS_PER_STEP,
    S3Options,
    S3Storage,
    parse_s3_url,
    part_size_for,
)


def data_of(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def write(storage: Storage, name: str, data: bytes, chunk: int = MIB) -> None:
    writer = storage.open_writer(name)
    for i in range(0, len(data), chunk):
        writer.write(data[i : i + chunk])
    writer.commit()


def read(storage: Storage, name: str) -> bytes:
    with storage.open_reader(name) as reader:
        return b"".join(iter_chunks(reader))


def sent_requests(storage: Storage) -> list[str]:
    """Record every HTTP request the storage's client sends, retries included."""
    sent: list[str] = []
    client = unwrap(storage).client

    def record(request: Any, **_: Any) -> None:
        sent.append(f"{request.method} {request.url}")

    client.meta.events.register("before-send.s3", record)
    return sent


def uploads(raw: S3Storage) -> list[str]:
    resp = raw.client.list_multipart_uploads(Bucket=raw.bucket, Prefix=raw.key_for(""))
    return [u["Key"] for u in resp.get("Uploads", [])]


# -- URLs and configuration ---------------------------------------------------------


def test_urls_and_keys() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b/")
    for bad in ("s3:///x", "file:///x", "s3://"):
        with pytest.raises(ConfigError):
            parse_s3_url(bad)
    options = S3Options(region="us-east-1", access_key_id="k", secret_access_key="s")
    storage = S3Storage("bucket", "/backups/prod/", options)
    assert storage.key_for("x.dump") == "backups/prod/x.dump"
    assert storage.url_for("x.dump") == "s3://bucket/backups/prod/x.dump"
    assert S3Storage("bucket", "", options).url_for("x.dump") == "s3://bucket/x.dump"
    assert "secret_access_key" not in repr(options)
    with pytest.raises(ConfigError, match="names no object"):
        locate("s3://bucket")


def test_options_from_settings_and_their_limits() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        s3_part_size=8 * MIB,
        s3_max_concurrency=3,
        s3_retry_mode=S3RetryMode.ADAPTIVE,
        s3_max_attempts=7,
        s3_access_key_id="k",
        s3_secret_access_key=SecretStr("s"),
    )
    options = S3Options.from_settings(settings)
    assert options.memory_bound == 8 * MIB * 4
    assert (options.retry.mode, options.retry.max_attempts) == ("adaptive", 7)
    assert options.secret_access_key == "s"
    with pytest.raises(ConfigError, match="at least"):
        S3Options(part_size=MIB)
    with pytest.raises(ConfigError, match="together"):
        S3Options(access_key_id="k")


def test_part_size_doubles_every_step_up_to_s3s_maximum() -> None:
    base = 8 * MIB
    assert [part_size_for(n, base) for n in (1, PARTS_PER_STEP, PARTS_PER_STEP + 1)] == [base, base, 2 * base]
    assert part_size_for(3 * PARTS_PER_STEP + 1, base) == 8 * base
    assert part_size_for(MAX_PARTS, base) == 4096 * MIB  # 8 MiB x 2^9
    assert part_size_for(MAX_PARTS, 2 * base) == MAX_PART_SIZE  # 8 GiB would exceed S3's 5 GiB
    # Within S3's 10,000 parts an object can hold terabytes, not part_size x 10,000.
    capacity = sum(part_size_for(n, base) for n in range(1, MAX_PARTS + 1))
    assert capacity > 4 * 1024 * 1024 * MIB


def test_growing_parts_make_one_whole_object(devs3: DevS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of different sizes (every part but the last at least 5 MiB) form the object."""
    monkeypatch.setattr(s3_module, "PARTS_PER_STEP", 2)
    storage = open_storage(f"s3://{BUCKET}/{unique()}", s3_settings(devs3, s3_part_size=5 * MIB))
    data = data_of(33 * MIB)
    sent = sent_requests(storage)
    write(storage, "grow.dump", data)
    assert read(storage, "grow.dump") == data
    # 5 + 5 + 10 + 10 + 3 MiB: five parts where fixed 5 MiB parts would take seven.
    assert sum("partNumber=" in request for request in sent) == 5, sent


def test_a_writer_fills_the_same_buffers_again(devs3: DevS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nine parts go out in max_concurrency + 1 buffers, reused; no stale bytes reach the object."""
    storage = open_storage(f"s3://{BUCKET}/{unique()}", s3_settings(devs3, s3_part_size=5 * MIB))
    window = unwrap(storage).options.max_concurrency
    shipped: list[bytearray] = []  # kept alive, so each new allocation is a new object
    upload_part = s3_module.S3Writer._upload_part

    def spy(self: Any, number: int, buf: bytearray) -> Any:
        shipped.append(buf)
        return upload_part(self, number, buf)

    monkeypatch.setattr(s3_module.S3Writer, "_upload_part", spy)
    data = data_of(8 * 5 * MIB + MIB + 123)  # the last part is short: a reused buffer, cut
    write(storage, "reuse.dump", data, chunk=MIB - 1)
    assert len(shipped) == 9
    assert len({id(buf) for buf in shipped}) == window + 1
    assert read(storage, "reuse.dump") == data


# -- permanent errors ---------------------------------------------------------------


def test_missing_bucket_fails_at_once_naming_the_bucket(devs3: DevS3) -> None:
    storage = open_storage("s3://pgkeep-no-such-bucket/backups", s3_settings(devs3))
    sent = sent_requests(storage)
    operations = {
        "open_writer": lambda: storage.open_writer("x.dump"),
        "open_reader": lambda: storage.open_reader("x.dump"),
        "stat": lambda: storage.stat("x.dump"),
        "list": lambda: storage.list(),
        "delete": lambda: storage.delete("x.dump"),
    }
    for what, operation in operations.items():
        sent.clear()
        with pytest.raises(StorageError) as caught:
            operation()
        error = caught.value
        assert not isinstance(error, ObjectNotFoundError), what
        assert error.permanent, what
        assert "'pgkeep-no-such-bucket'" in str(error), what
        assert "does not exist" in str(error) and error.hint and "create the bucket" in error.hint
        # No retries: one request per call (HEAD object is followed by HEAD bucket).
        assert len(sent) == (2 if what in ("open_writer", "stat") else 1), (what, sent)


@pytest.mark.parametrize(
    ("access_key", "secret_key", "code"),
    [
        (None, "wrong-secret", "SignatureDoesNotMatch"),
        ("no-such-key", "whatever", "InvalidAccessKeyId"),
    ],
)
def test_bad_credentials_are_permanent(devs3: DevS3, access_key: str | None, secret_key: str, code: str) -> None:
    settings = s3_settings(
        devs3,
        s3_access_key_id=access_key or devs3.access_key,
        s3_secret_access_key=secret_key,
    )
    storage = open_storage(f"s3://{BUCKET}/{unique()}", settings)
    sent = sent_requests(storage)
    with pytest.raises(StorageError) as caught:
        storage.list()
    assert caught.value.permanent
    assert code in str(caught.value) and f"'{BUCKET}'" in str(caught.value)
    assert caught.value.hint and "AWS_SECRET_ACCESS_KEY" in caught.value.hint
    assert len(sent) == 1
    # HEAD answers carry no error code: the status alone still makes it permanent.
    with pytest.raises(StorageError, match="access denied") as caught:
        storage.open_writer("x.dump")
    assert caught.value.permanent
    assert secret_key not in str(caught.value)


# -- the AWS environment ------------------------------------------------------------


@pytest.fixture
def aws_env_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    """An environment with no AWS or pgkeep S3 variables and no AWS config files."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "PGKEEP_S3_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role probe
    return monkeypatch


@pytest.mark.parametrize("endpoint_variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_standard_aws_environment_is_honoured(
    devs3: DevS3, aws_env_only: pytest.MonkeyPatch, endpoint_variable: str
) -> None:
    env = devs3.env()
    env[endpoint_variable] = env.pop("AWS_ENDPOINT_URL_S3")
    for name, value in env.items():
        aws_env_only.setenv(name, value)
    storage = open_storage(f"s3://{BUCKET}/{unique()}")  # no settings at all
    assert unwrap(storage).endpoint == devs3.endpoint_url
    write(storage, "env.dump", b"from the environment")
    assert read(storage, "env.dump") == b"from the environment"


def test_pgkeep_variables_configure_the_client(devs3: DevS3, aws_env_only: pytest.MonkeyPatch) -> None:
    for name, value in {
        "PGKEEP_S3_ENDPOINT_URL": devs3.endpoint_url,
        "PGKEEP_S3_REGION": devs3.region,
        "PGKEEP_S3_FORCE_PATH_STYLE": "true",
        "PGKEEP_S3_ACCESS_KEY_ID": devs3.access_key,
        "PGKEEP_S3_SECRET_ACCESS_KEY": devs3.secret_key,
        "PGKEEP_S3_PART_SIZE": str(5 * MIB),
        "PGKEEP_S3_MAX_CONCURRENCY": "3",
    }.items():
        aws_env_only.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    storage = open_storage(f"s3://{BUCKET}/{unique()}", settings)
    assert unwrap(storage).options.memory_bound == 5 * MIB * 4
    data = data_of(11 * MIB)
    write(storage, "cfg.dump", data)
    assert read(storage, "cfg.dump") == data
    with pytest.raises(StorageError, match="no usable S3 credentials"):
        open_storage(f"s3://{BUCKET}/x").list()  # without settings: no credentials anywhere


# -- faults -------------------------------------------------------------------------


# fragile_s3 (tests/conftest.py): the session's server, restarted after a test that kills it.


def test_server_killed_mid_upload(fragile_s3: DevS3) -> None:
    settings = s3_settings(fragile_s3, s3_max_attempts=2, s3_connect_timeout=1)
    storage = open_storage(f"s3://{BUCKET}/{unique()}", settings)
    raw = unwrap(storage)
    write(storage, "before.dump", b"committed before the crash")
    data = data_of(40 * MIB)
    writer = storage.open_writer("killed.dump")
    writer.write(data[: 11 * MIB])  # two parts sent
    fragile_s3.kill()
    with pytest.raises(StorageError) as caught:
        for i in range(11 * MIB, len(data), MIB):
            writer.write(data[i : i + MIB])
        writer.commit()
    assert not caught.value.permanent  # a retry later may work
    assert fragile_s3.endpoint_url in str(caught.value)
    assert "after 2 attempts" in str(caught.value)
    writer.abort()  # the server is down: must not raise

    # While it is down, reads fail clearly: not "not found".
    with pytest.raises(StorageError) as down:
        storage.stat("killed.dump")
    assert not isinstance(down.value, ObjectNotFoundError)
    with pytest.raises(StorageError):
        storage.open_reader("killed.dump")

    fragile_s3.restart()
    assert [o.name for o in storage.list()] == ["before.dump"]
    assert read(storage, "before.dump") == b"committed before the crash"
    with pytest.raises(ObjectNotFoundError):
        storage.stat("killed.dump")
    # The abort could not reach the server: the upload is open but invisible, and
    # crash recovery's remove_incomplete takes it away.
    assert uploads(raw) == [raw.key_for("killed.dump")]
    assert storage.remove_incomplete("killed.dump") == 1
    assert uploads(raw) == []


def test_server_down_when_a_read_starts(fragile_s3: DevS3) -> None:
    settings = s3_settings(fragile_s3, s3_max_attempts=2, s3_connect_timeout=1)
    storage = open_storage(f"s3://{BUCKET}/{unique()}", settings)
    write(storage, "r.dump", b"data")
    fragile_s3.kill()
    with pytest.raises(StorageError, match="cannot talk to the S3 endpoint") as caught:
        storage.open_reader("r.dump")
    assert not caught.value.permanent
    fragile_s3.restart()
    assert read(storage, "r.dump") == b"data"


@pytest.fixture
def proxy(devs3: DevS3) -> Iterator[FlakyProxy]:
    with FlakyProxy(devs3.ports["s3.port"]) as flaky:
        yield flaky


def via(proxy: FlakyProxy, devs3: DevS3, **overrides: Any) -> Storage:
    settings = s3_settings(devs3, endpoint_url=proxy.endpoint_url, **overrides)
    return open_storage(f"s3://{BUCKET}/{unique()}", settings)


def test_throttling_and_dropped_connections_are_retried(proxy: FlakyProxy, devs3: DevS3) -> None:
    storage = via(proxy, devs3, s3_max_attempts=3)
    data = data_of(12 * MIB)
    proxy.arm("throttle", times=2, marker=b"HEAD ")  # the early name check: 3rd try passes
    proxy.arm("reset", times=1, marker=b"partNumber=2")  # part 2 cut off halfway
    proxy.arm("reset", times=1, marker=b"?uploads")  # starting the upload
    write(storage, "retried.dump", data)
    assert proxy.hits == {"throttle": 2, "reset": 2}
    assert read(storage, "retried.dump") == data
    assert uploads(unwrap(storage)) == []


def test_too_many_transient_failures_give_up(proxy: FlakyProxy, devs3: DevS3) -> None:
    storage = via(proxy, devs3, s3_max_attempts=2)
    proxy.arm("throttle", times=2, marker=b"partNumber=1")
    writer = storage.open_writer("gave-up.dump")
    with pytest.raises(StorageError) as caught:
        for _ in range(12):
            writer.write(data_of(MIB))
        writer.commit()
    assert not caught.value.permanent
    assert "SlowDown" in str(caught.value) and "after 2 attempts" in str(caught.value)
    writer.abort()
    assert storage.list() == []
    assert uploads(unwrap(storage)) == []


@pytest.mark.parametrize("size", [100, 12 * MIB], ids=["put", "multipart"])
def test_a_lost_success_response_is_recognised(proxy: FlakyProxy, devs3: DevS3, size: int) -> None:
    # The server stores the object but the answer is lost; botocore sends the request
    # again, which now fails (412: the name is taken, or the upload is gone). The writer
    # must see that the object there is its own, not someone else's.
    storage = via(proxy, devs3, s3_max_attempts=3)
    key = unwrap(storage).key_for("lost.dump").encode()
    marker = b"?uploadId=" if size > 100 else key + b" HTTP/1.1"
    proxy.arm("lose", marker=marker)
    data = data_of(size)
    write(storage, "lost.dump", data)
    assert proxy.hits == {"lose": 1}
    assert read(storage, "lost.dump") == data


@pytest.mark.parametrize("size", [100, 6 * MIB])
def test_bytes_changed_on_the_way_are_refused_and_nothing_is_stored(devs3: DevS3, size: int) -> None:
    # Every part (and every small object) carries its SHA-256; a byte flipped after
    # the request was signed, as by a faulty network card or proxy, must be refused
    # by the server, not stored under the backup's name.
    storage = open_storage(f"s3://{BUCKET}/{unique()}", s3_settings(devs3))
    client = unwrap(storage).client
    flipped: list[str] = []

    def flip_a_byte(request: Any, **_: Any) -> None:
        body = request.body.read() if hasattr(request.body, "read") else bytes(request.body or b"")
        if body:
            changed = bytearray(body)
            changed[len(body) // 2] ^= 0x01
            request.body = bytes(changed)
            flipped.append(request.url)

    client.meta.events.register("before-send.s3.UploadPart", flip_a_byte)
    client.meta.events.register("before-send.s3.PutObject", flip_a_byte)
    with pytest.raises(StorageError):
        write(storage, "flipped.dump", data_of(size))
    assert flipped
    assert storage.list() == []
    assert uploads(unwrap(storage)) == []


def signed_headers(request: Any) -> set[str]:
    auth = request.headers["Authorization"]
    auth = auth.decode() if isinstance(auth, bytes) else auth
    return set(auth.split("SignedHeaders=")[1].split(",")[0].split(";"))


def content_sha256(request: Any) -> str:
    value = request.headers["X-Amz-Content-SHA256"]
    return value.decode() if isinstance(value, bytes) else value


def record_uploads(storage: Storage) -> dict[str, list[Any]]:
    """The requests of each operation the storage's client sends, by operation name."""
    seen: dict[str, list[Any]] = {}

    def record(request: Any, event_name: str, **_: Any) -> None:
        seen.setdefault(event_name.rsplit(".", 1)[1], []).append(request)

    unwrap(storage).client.meta.events.register("before-send.s3", record)
    return seen


def test_parts_sign_their_checksum_not_their_body_once_the_server_checks_it(devs3: DevS3) -> None:
    # Over plain HTTP botocore would hash every body once more to sign it. The first part
    # is signed that way; its answer repeats the SHA-256 sent, so the server checks the
    # (signed) header and later parts leave the body unsigned. Other bodies stay signed.
    storage = open_storage(f"s3://{BUCKET}/{unique()}", s3_settings(devs3))
    assert devs3.endpoint_url.startswith("http://")
    seen = record_uploads(storage)
    write(storage, "first.dump", data_of(6 * MIB))
    first_part = seen["UploadPart"][0]
    assert content_sha256(first_part) == hashlib.sha256(first_part.body).hexdigest()
    seen.clear()
    write(storage, "second.dump", data_of(11 * MIB))
    write(storage, "small.dump", data_of(100))
    assert len(seen["UploadPart"]) == 3
    for request in seen["UploadPart"]:
        assert content_sha256(request) == "UNSIGNED-PAYLOAD"
        assert "x-amz-checksum-sha256" in signed_headers(request)
    for request in seen["CompleteMultipartUpload"] + seen["PutObject"]:
        assert content_sha256(request) == hashlib.sha256(request.body).hexdigest()
    assert read(storage, "second.dump") == data_of(11 * MIB)


def test_a_server_that_does_not_answer_with_the_checksum_keeps_every_body_signed(devs3: DevS3) -> None:
    # An S3-compatible server that ignores x-amz-checksum-sha256 says nothing about it in
    # its answers; then only the body's signature protects the bytes, so it stays.
    storage = open_storage(f"s3://{BUCKET}/{unique()}", s3_settings(devs3))
    client = unwrap(storage).client

    def forget_the_checksum(parsed: dict[str, Any], **_: Any) -> None:
        parsed.pop("ChecksumSHA256", None)

    client.meta.events.register("after-call.s3.UploadPart", forget_the_checksum)
    seen = record_uploads(storage)
    write(storage, "a.dump", data_of(6 * MIB))
    write(storage, "b.dump", data_of(11 * MIB))
    assert len(seen["UploadPart"]) == 5
    for request in seen["UploadPart"]:
        assert content_sha256(request) == hashlib.sha256(request.body).hexdigest()


@pytest.mark.parametrize("size", [100, 6 * MIB])
def test_a_checksum_changed_on_the_way_is_refused(devs3: DevS3, size: int) -> None:
    # The other half of the body's protection: the checksum header cannot be replaced
    # to match a changed body, because it is signed.
    storage = open_storage(f"s3://{BUCKET}/{unique()}", s3_settings(devs3))
    client = unwrap(storage).client
    forged = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()

    def forge(request: Any, **_: Any) -> None:
        request.headers["x-amz-checksum-sha256"] = forged

    client.meta.events.register("before-send.s3.UploadPart", forge)
    client.meta.events.register("before-send.s3.PutObject", forge)
    with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        write(storage, "forged.dump", data_of(size))
    assert storage.list() == []
    assert uploads(unwrap(storage)) == []


def test_a_download_cut_short_resumes_where_it_stopped(
    proxy: FlakyProxy, devs3: DevS3, caplog: pytest.LogCaptureFixture
) -> None:
    storage = via(proxy, devs3, s3_max_attempts=3)
    data = data_of(2 * MIB)
    write(storage, "cut.dump", data)
    proxy.arm("truncate", times=2, marker=b"GET ")  # the first GET and the first resume: two drops
    with caplog.at_level(logging.WARNING, logger="pgkeep.storage.s3"), storage.open_reader("cut.dump") as reader:
        # Small reads: a drop loses at most the read in progress, so each resume starts further on.
        got = b"".join(iter_chunks(reader, 16 * 1024))
    assert proxy.hits == {"truncate": 2}
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    resumed = [r.getMessage() for r in caplog.records if "resuming" in r.getMessage()]
    assert len(resumed) == 2 and "(1 of 2)" in resumed[0] and "(2 of 2)" in resumed[1], resumed
    positions = [int(m.split(" cut short at byte ")[1].split()[0]) for m in resumed]
    assert 0 < positions[0] < positions[1] < len(data), positions  # each resume starts where the last stopped


def test_a_download_cut_short_too_often_is_a_storage_error(proxy: FlakyProxy, devs3: DevS3) -> None:
    storage = via(proxy, devs3, s3_max_attempts=2)
    data = data_of(2 * MIB)
    write(storage, "cut.dump", data)
    proxy.arm("truncate", times=2, marker=b"GET ")  # one resume allowed, cut short again
    reader = storage.open_reader("cut.dump")
    with pytest.raises(StorageError, match="cut short") as caught:
        b"".join(iter_chunks(reader))
    reader.close()
    assert not caught.value.permanent and "1 resumes" in caught.value.message
    assert hashlib.sha256(read(storage, "cut.dump")).digest() == hashlib.sha256(data).digest()


def test_an_object_replaced_while_read_is_not_spliced(proxy: FlakyProxy, devs3: DevS3) -> None:
    storage = via(proxy, devs3, s3_max_attempts=3)
    write(storage, "swapped.dump", data_of(2 * MIB))
    proxy.arm("truncate", times=1, marker=b"GET ")
    reader = storage.open_reader("swapped.dump")
    first = reader.read(TRUNCATE_AFTER // 2)
    # Someone replaces the object (pgkeep never does: names are written once) before the resume.
    client = devs3.client()
    bucket_key = unwrap(storage).key_for("swapped.dump")
    client.put_object(Bucket=BUCKET, Key=bucket_key, Body=b"another object")
    with pytest.raises(StorageError, match="replaced while it was being read") as caught:
        b"".join(iter_chunks(reader))
    reader.close()
    assert caught.value.permanent and len(first) == TRUNCATE_AFTER // 2
