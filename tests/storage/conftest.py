"""Storage fixtures: one parametrized ``backend`` over every storage backend.

The S3 backend runs against a real SeaweedFS, the session's ``devs3``
fixture (tests/conftest.py, shared with the integration tests); each test
gets a fresh prefix in one bucket.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_helpers import BUCKET, Backend, s3_settings, unique, unwrap

from pgkeep.devs3 import DevS3
from pgkeep.storage import open_storage


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        storage = open_storage((tmp_path / "store").as_uri())
        # The local writer buffers nothing: what it is given goes to the file.
        return Backend("local", storage, unwrap(storage), memory_bound=0)
    server: DevS3 = request.getfixturevalue("devs3")
    settings = s3_settings(server)
    storage = open_storage(f"s3://{BUCKET}/{unique()}", settings)
    raw = unwrap(storage)
    return Backend("s3", storage, raw, memory_bound=raw.options.memory_bound, settings=settings)
