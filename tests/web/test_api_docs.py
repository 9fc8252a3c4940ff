"""``/docs``: the interactive API docs come from pgkeep's own copy of Swagger UI.

FastAPI's default page loads Swagger UI (and ReDoc) from a CDN: it did not work
offline, and it ran third-party code on a page where an admin pastes a token.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect
from webhelpers import Server


def test_the_api_docs_render_from_this_server_alone(page: Page, server: Server) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = page.goto("/docs")
    assert response is not None and response.status == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy and "unsafe" not in policy
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    expect(page.locator("#swagger-ui")).to_contain_text("/api/admin/backups/{backup_id}/restore")
    # Open one operation: its parameters and responses render under the same policy.
    page.locator(".opblock-summary-path", has_text="/api/admin/backups/{backup_id}/restore").first.click()
    expect(page.locator(".opblock-body").first).to_contain_text("confirmRestore")
    assert requested and all(url.startswith(server.url) for url in requested), requested
    # The page's own console (checked by the fixture) shows no CSP refusal.
    assert page.request.get("/redoc").status == 404
