"""API fixtures: the real app on the per-test source database, a per-test SQLite catalog, tokens."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from apihelpers import Shared, Tokens, bearer, build_context, make_tokens
from fastapi import FastAPI
from fastapi.testclient import TestClient

from helpers import DbHandle
from pgkeep.api import create_app
from pgkeep.catalog.db import create_catalog_engine, upgrade
from pgkeep.devcluster import DevCluster
from pgkeep.services.context import Context


@pytest.fixture(scope="session")
def migrated_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite catalog at the head revision, copied per test (migrating each time is slower)."""
    path = tmp_path_factory.mktemp("catalog-template") / "catalog.db"
    engine = create_catalog_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return path


@pytest.fixture
def target_db(request: pytest.FixtureRequest) -> DbHandle:
    """The database the app backs up: the test's own clone when it asks for ``source_db``
    (it changes data or locks), else the module's shared clone (cloning costs a second)."""
    if "source_db" in request.fixturenames:
        return request.getfixturevalue("source_db")  # type: ignore[no-any-return]
    return request.getfixturevalue("module_db")  # type: ignore[no-any-return]


@pytest.fixture
def ctx(tmp_path: Path, target_db: DbHandle, migrated_catalog: Path) -> Iterator[Context]:
    """A per-test SQLite catalog and storage under ``tmp_path``, backing up ``target_db``."""
    context = build_context(tmp_path, target_db.url, migrated_catalog)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def app(ctx: Context) -> FastAPI:
    return create_app(ctx)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # The context manager runs the lifespan: leaving it waits for background jobs.
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def tokens(ctx: Context) -> Tokens:
    return make_tokens(ctx)


@pytest.fixture
def as_admin(client: TestClient, tokens: Tokens) -> TestClient:
    client.headers.update(bearer(tokens.admin))
    return client


@pytest.fixture(scope="module")
def module_db(pg15: DevCluster, template_db: str) -> Iterator[DbHandle]:
    """A clone of the template shared by one module's tests (they must not change its data)."""
    name = f"mod_{uuid.uuid4().hex[:12]}"
    pg15.create_database(name, template=template_db)
    try:
        yield DbHandle(name=name, url=pg15.url(name), conninfo=pg15.admin_conninfo(name))
    finally:
        pg15.drop_database(name)


@pytest.fixture(scope="module")
def shared(module_db: DbHandle, migrated_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    context = build_context(tmp_path_factory.mktemp("shared"), module_db.url, migrated_catalog)
    app = create_app(context)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Shared(context, app, client, make_tokens(context))
    finally:
        context.close()
