"""Unit fixtures: a service context with only its own SQLite catalog (no database, no server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import make_context
from pgkeep.services.context import Context


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    """A fresh migrated catalog in ``tmp_path``; no DATABASE_URL."""
    context = make_context(tmp_path, None)
    try:
        yield context
    finally:
        context.close()
