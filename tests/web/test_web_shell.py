"""The dashboard's shell and assets, without a browser: served from the package, same-origin only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from fastapi.testclient import TestClient

import pgkeep.web
from helpers import make_context
from pgkeep.api import create_app
from pgkeep.api.route import AUDIT_KEY
from pgkeep.api.schemas import CreatableType, VerifyRequest
from pgkeep.services.context import Context

STATIC = Path(pgkeep.web.__file__).parent / "static"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    ctx: Context = make_context(tmp_path, None)
    try:
        with TestClient(create_app(ctx)) as test_client:
            yield test_client
    finally:
        ctx.close()


def test_the_page_is_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert "set-cookie" not in page.headers
    html = page.text
    # Nothing from another origin, and nothing inline that the policy would refuse.
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html)
    assert 'data-api="/api/admin"' in html


def test_every_asset_the_page_loads_is_in_the_package(client: TestClient) -> None:
    html = client.get("/").text
    wanted = {m.split("?")[0] for m in re.findall(r"""(?:src|href)="(/static/[^"]+)""", html)}
    # ... and every module those modules import.
    for js in STATIC.glob("js/*.js"):
        wanted |= {f"/static/js/{name}" for name in re.findall(r"""from "\./([\w.]+)";""", js.read_text())}
    assert "/static/js/main.js" in wanted and "/static/pgkeep.css" in wanted
    for path in sorted(wanted):
        response = client.get(path)
        assert response.status_code == 200, path
        text = response.text.replace("http://www.w3.org/2000/svg", "")  # a namespace name, never fetched
        assert "http://" not in text and "https://" not in text, path
    assert client.get("/static/js/main.js").headers["content-type"].startswith("text/javascript")


def test_the_page_offers_exactly_what_the_api_accepts(client: TestClient) -> None:
    assert set(pgkeep.web.CREATABLE_TYPES) == set(get_args(CreatableType))
    levels = get_args(VerifyRequest.model_fields["level"].annotation)
    assert [level.value for level in pgkeep.web.VERIFY_LEVELS] == list(levels)
    schema = client.get("/openapi.json").json()
    audited = {op[AUDIT_KEY] for path in schema["paths"].values() for op in path.values() if AUDIT_KEY in op}
    assert audited <= set(pgkeep.web.AUDIT_ACTIONS)
    assert "/" not in schema["paths"]  # the page is not part of the API
