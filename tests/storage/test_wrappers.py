"""The wrappers open_storage composes: what they log, and that they log no secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from storage_helpers import BUCKET, s3_settings, unique

from pgkeep.devs3 import DevS3
from pgkeep.errors import ObjectNotFoundError, StorageError
from pgkeep.storage import locate, open_storage
from pgkeep.storage.wrappers import LoggingStorage


def test_every_storage_is_wrapped_once(tmp_path: Path) -> None:
    storage = open_storage((tmp_path / "s").as_uri())
    assert isinstance(storage, LoggingStorage)
    assert not isinstance(storage.inner, LoggingStorage)
    located, _ = locate(storage.url_for("x.dump"))
    assert isinstance(located, LoggingStorage)


def test_outcomes_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pgkeep.storage")
    storage = open_storage((tmp_path / "s").as_uri())
    writer = storage.open_writer("a.dump")
    writer.write(b"12345")
    writer.commit()
    stored = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(stored) == 1 and "stored" in stored[0].getMessage()
    assert "a.dump: 5 bytes" in stored[0].getMessage()

    caplog.clear()
    writer = storage.open_writer("b.dump")
    writer.write(b"xx")
    writer.abort()
    assert "discarded" in caplog.text and "after 2 bytes" in caplog.text

    caplog.clear()
    with pytest.raises(ObjectNotFoundError):
        storage.stat("missing.dump")
    # A missing object is an answer, not a malfunction: no warning.
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]

    caplog.clear()
    with pytest.raises(StorageError):
        storage.open_writer("a/b")
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "permanent" in caplog.text


def test_credentials_never_reach_the_log(devs3: DevS3, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # botocore's own debug output included
    secret = "pgkeep-secret-that-must-not-leak"
    settings = s3_settings(devs3, s3_secret_access_key=secret)
    storage = open_storage(f"s3://{BUCKET}/{unique()}", settings)
    with pytest.raises(StorageError) as caught:
        storage.list()
    assert secret not in str(caught.value)
    assert caught.value.permanent
    assert secret not in caplog.text
    assert "SignatureDoesNotMatch" in caplog.text  # the failure itself is logged
