"""Browser fixtures: a real ``pgkeep serve`` on a real PostgreSQL, and the system Chromium.

The browser is Debian's ``chromium`` driven by Playwright; ``playwright
install`` is never run (test tools must not download a browser). A missing
browser fails the run: it must not pass by skipping.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from webhelpers import CHROMIUM, CHROMIUM_ARGS, PGKEEP, Server

from helpers import DbHandle, make_settings, wait_for
from pgkeep.catalog.admin_models import Role
from pgkeep.devcluster import DevCluster
from pgkeep.services import admin
from pgkeep.services.context import Context


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's `chromium` (scripts/test.sh does) "
            "or point PGKEEP_CHROMIUM at one",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def web_db(pg15: DevCluster, template_db: str) -> Iterator[DbHandle]:
    """The database the module's server backs up and restores (a clone of the sample)."""
    name = f"web_{uuid.uuid4().hex[:12]}"
    pg15.create_database(name, template=template_db)
    try:
        yield DbHandle(name=name, url=pg15.url(name), conninfo=pg15.admin_conninfo(name))
    finally:
        pg15.drop_database(name)


def _env(root: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGKEEP_", "DATABASE_URL"))}
    return env | {
        "DATABASE_URL": database_url,
        "PGKEEP_CATALOG_URL": f"sqlite:///{root}/catalog.db",
        "PGKEEP_STORAGE_URL": f"file://{root}/backups",
        "PGKEEP_STATE_DIR": str(root / "state"),
    }


@pytest.fixture(scope="module")
def server(web_db: DbHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``pgkeep serve`` as operators run it (a subprocess, no scheduler), with one token per role."""
    root = tmp_path_factory.mktemp("web")
    ctx = Context.build(make_settings(root, None))
    try:
        made = {role.value: admin.create_token(ctx, f"{role.value} in the browser", role) for role in Role}
    finally:
        ctx.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [PGKEEP, "serve", "--port", str(port), "--no-scheduler", "--log-level", "warning"],
        cwd=root,
        env=_env(root, web_db.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert process.poll() is None, process.communicate()
            return False

    try:
        wait_for(up, "pgkeep serve to answer")
        yield Server(
            url,
            web_db,
            {role: t.token for role, t in made.items()},
            {role: t.id for role, t in made.items()},
            root,
        )
    finally:
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr


@dataclass
class PageErrors:
    """What the page itself got wrong: uncaught exceptions and CSP refusals."""

    messages: list[str]


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=server.url)
    context.set_default_timeout(15_000)
    new_page = context.new_page()
    errors = PageErrors([])
    new_page.on("pageerror", lambda exc: errors.messages.append(f"uncaught: {exc}"))
    # A refused HTTP status is logged as a console error too; those are expected (401, 403, 409 ...).
    new_page.on(
        "console",
        lambda msg: (
            errors.messages.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    try:
        yield new_page
    finally:
        context.close()
    assert errors.messages == [], errors.messages
