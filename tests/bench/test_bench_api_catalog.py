"""The list query on the API benchmark's catalog: every page, shallow and deep, in the right order.

``repository.list_backups`` reads pages past DEFERRED_PAGE_FROM skipped rows
differently (ids from the index first); both ways must give exactly the
pages that sorting everything would, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pgkeep.catalog import repository as repo
from pgkeep.catalog.db import Catalog, create_catalog_engine, upgrade
from pgkeep.catalog.models import BackupStatus, BackupType, BackupVerification, DatabaseBackup
from pgkeep.devcluster import DevCluster

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench import api_catalog as bench_api  # noqa: E402  (bench/ is not an installed package)

ROWS = 2_500  # > DEFERRED_PAGE_FROM, so both ways of reading a page are used
LIMIT = 20


def test_the_catalog_is_deep_enough_for_both_ways() -> None:
    assert ROWS - LIMIT > repo.DEFERRED_PAGE_FROM


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    made = list(bench_api.generate_rows(ROWS, 7, datetime(2026, 11, 26, tzinfo=UTC)))
    # Ties on started_at: the id decides, in both ways of reading a page.
    for i in range(10, 40):
        made[i]["started_at"] = made[10]["started_at"]
    return made


def _tables(rows: list[dict[str, Any]]) -> bench_api.Tables:
    return [(DatabaseBackup.__table__, rows), (BackupVerification.__table__, bench_api.verifications_for(rows))]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def catalog(
    request: pytest.FixtureRequest, rows: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Catalog]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('catalog')}/catalog.db"
        engine = create_catalog_engine(url)
        upgrade(engine)
        engine.dispose()
        bench_api.fill_sqlite(url, _tables(rows))
        cat = Catalog(url)
        yield cat
        cat.dispose()
        return
    pg15: DevCluster = request.getfixturevalue("pg15")
    name = f"catalog_{uuid.uuid4().hex[:12]}"
    pg15.create_database(name)
    try:
        engine = create_catalog_engine(pg15.url(name))
        upgrade(engine)
        engine.dispose()
        bench_api.fill_postgresql(pg15.admin_conninfo(name), _tables(rows))
        cat = Catalog(pg15.url(name))
        yield cat
        cat.dispose()
    finally:
        pg15.drop_database(name)


def _expected(rows: list[dict[str, Any]], backup_type: BackupType | None, status: BackupStatus | None) -> list[str]:
    chosen = [r for r in rows if backup_type in (None, r["type"]) and status in (None, r["status"])]
    chosen.sort(key=lambda r: (r["started_at"], r["id"]), reverse=True)
    return [r["id"] for r in chosen]


@pytest.mark.parametrize(
    ("backup_type", "status"),
    [
        (None, None),
        (None, BackupStatus.COMPLETED),
        (BackupType.SCHEDULED, None),
        (BackupType.SCHEDULED, BackupStatus.COMPLETED),
        (BackupType.INCREMENTAL, BackupStatus.IN_PROGRESS),  # nothing matches
    ],
)
def test_every_page_matches_sorting_everything(
    catalog: Catalog, rows: list[dict[str, Any]], backup_type: BackupType | None, status: BackupStatus | None
) -> None:
    expected = _expected(rows, backup_type, status)
    pages = max(1, math.ceil(len(expected) / LIMIT))
    got: list[str] = []
    with catalog.session() as session:
        for page in range(1, pages + 2):  # one past the end: empty, same total
            found, total = repo.list_backups(session, page=page, limit=LIMIT, backup_type=backup_type, status=status)
            assert total == len(expected)
            assert len(found) <= LIMIT
            got += [b.id for b in found]
    assert got == expected


def test_last_success_is_the_newest_completed_with_a_checksum(catalog: Catalog, rows: list[dict[str, Any]]) -> None:
    succeeded = [
        r["completed_at"]
        for r in rows
        if r["checksum"] is not None and r["status"] in repo.SUCCEEDED and r["completed_at"] is not None
    ]
    with catalog.session() as session:
        assert repo.last_success_at(session) == max(succeeded)
