"""Roles, sign-in, filters and accessibility of the dashboard, in headless Chromium against a real
``pgkeep serve`` and PostgreSQL 15. The tests share one server and do not depend on each other's order.

Screenshots of the main screens land in test-artifacts/screenshots/ for review.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect
from webhelpers import Server, low_contrast, row_of, screenshot, sign_in

from helpers import make_context
from pgkeep.catalog.admin_models import Role
from pgkeep.catalog.models import BackupStatus, BackupType, DatabaseBackup
from pgkeep.services import admin


def test_a_viewer_sees_no_actions_and_the_api_refuses_them_anyway(page: Page, server: Server) -> None:
    with server.api("operator") as operator:
        made = operator.post("/backups", json={"type": "MANUAL"})
        assert made.status_code == 201, made.text
    backup_id = made.json()["backup"]["id"]
    sign_in(page, server.tokens["viewer"])
    expect(row_of(page, backup_id)).to_have_attribute("data-status", "COMPLETED")
    expect(page.locator("#backups-body button")).to_have_count(0)
    for name in ("Back up now", "Clean up…"):
        expect(page.get_by_role("button", name=name)).to_be_hidden()
    expect(page.get_by_role("link", name="Audit log")).to_be_hidden()
    expect(page.get_by_role("columnheader", name="Actions")).to_be_hidden()
    expect(page.locator("#readiness")).to_be_hidden()
    screenshot(page, "08-viewer")

    # What the page hides, the API refuses: the same calls with the viewer's token, from the page.
    statuses = page.evaluate(
        """async (id) => {
            const headers = {Authorization: `Bearer ${sessionStorage.getItem("pgkeep.token")}`,
                             "Content-Type": "application/json"};
            const calls = [
                ["POST", "/api/admin/backups", {type: "MANUAL"}],
                ["POST", `/api/admin/backups/${id}/verify`, {level: "checksum"}],
                ["POST", `/api/admin/backups/${id}/keep`, {keep: true}],
                ["POST", `/api/admin/backups/${id}/restore`, {confirmRestore: true}],
                ["DELETE", `/api/admin/backups/${id}`, null],
                ["POST", "/api/admin/backups/cleanup", {dryRun: true}],
                ["GET", "/api/admin/audit-logs", null],
                ["GET", "/api/admin/check", null],
            ];
            const out = [];
            for (const [method, path, body] of calls) {
                const r = await fetch(path, {method, headers, body: body && JSON.stringify(body)});
                out.push(r.status);
            }
            return out;
        }""",
        backup_id,
    )
    assert statuses == [403] * 8
    page.goto("/#audit")  # typing the address does not reach the audit view either
    expect(page.locator("#dashboard-view")).to_be_visible()
    expect(page.locator("#audit-view")).to_be_hidden()


def test_an_operator_runs_the_readiness_checks(page: Page, server: Server) -> None:
    sign_in(page, server.tokens["operator"])
    panel = page.locator("#readiness")
    expect(panel).to_be_visible()
    expect(panel.locator("#readiness-table")).to_be_hidden()
    page.get_by_role("button", name="Run checks").click()
    rows = panel.locator("#readiness-body tr")
    expect(rows).to_have_count(7)
    names = ["catalog", "storage", "encryption", "server", "client tools", "access", "archiving"]
    assert [row.get_attribute("data-check") for row in rows.all()] == names
    assert {row.get_attribute("data-status") for row in rows.all()} == {"ok"}
    expect(panel.locator("#readiness-summary")).to_contain_text("Every check passed")
    expect(panel.get_by_role("row", name="storage")).to_contain_text("wrote, read back and deleted a probe object")
    screenshot(page, "11-readiness")


def test_filters_and_pages(page: Page, server: Server) -> None:
    # Seeded rows of a type the other tests never take, failed and far from expiring, so they
    # change nothing the other tests look at.
    ctx = make_context(server.root, None)
    run = uuid.uuid4().hex[:8]
    try:
        with ctx.catalog.session() as session:
            for i in range(23):
                session.add(
                    DatabaseBackup(
                        filename=f"seeded-{run}-{i}.dump",
                        type=BackupType.SCHEDULED,
                        status=BackupStatus.FAILED,
                        started_at=datetime(2020, 1, 1, tzinfo=UTC) + timedelta(hours=i),
                        expires_at=datetime.now(UTC) + timedelta(days=3650),
                        error_message="seeded: connection refused",
                    )
                )
            session.commit()
    finally:
        ctx.close()
    sign_in(page, server.tokens["viewer"])
    label, rows = page.locator("#backups-pager [data-part=label]"), page.locator("#backups-body tr")
    page.locator("#filter-type").select_option("SCHEDULED")
    expect(label).to_have_text("Page 1 of 2 · 23 backups")
    expect(rows).to_have_count(20)
    expect(rows.first).to_contain_text("seeded: connection refused")
    page.get_by_role("button", name="Next page").click()
    expect(label).to_have_text("Page 2 of 2 · 23 backups")
    expect(rows).to_have_count(3)
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    page.locator("#filter-status").select_option("COMPLETED")  # a new filter starts at page 1
    expect(label).to_have_text("Page 1 of 1 · 0 backups")
    expect(page.get_by_text("No backups match.")).to_be_visible()


def test_a_bad_token_is_refused_in_words(page: Page, server: Server) -> None:
    page.goto("/")
    page.get_by_label("API token").fill("pgk_0123456789ab_" + "A" * 43)
    page.get_by_role("button", name="Sign in").click()
    message = page.locator("#signin-error")
    expect(message).to_contain_text("The API token is not valid")
    assert "{" not in message.inner_text()
    assert page.evaluate("sessionStorage.getItem('pgkeep.token')") is None
    screenshot(page, "00-sign-in-refused", full_page=False)


def test_the_token_stays_in_the_tab_until_sign_out(page: Page, server: Server) -> None:
    sign_in(page, server.tokens["operator"])
    assert page.evaluate("sessionStorage.getItem('pgkeep.token')") == server.tokens["operator"]
    assert page.context.cookies() == []  # never a cookie: nothing for another site to ride on
    page.reload()
    expect(page.locator("#whoami-text")).to_contain_text("operator")
    # An operator backs up and verifies; restoring, deleting, cleanup and the audit log are an admin's.
    expect(page.get_by_role("button", name="Back up now")).to_be_visible()
    expect(page.get_by_role("button", name="Clean up…")).to_be_hidden()
    expect(page.get_by_role("link", name="Audit log")).to_be_hidden()
    expect(page.locator('#backups-body button[data-action="restore"]')).to_have_count(0)
    expect(page.locator('#backups-body button[data-action="delete"]')).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.locator("#dashboard-view")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('pgkeep.token')") is None
    page.reload()
    expect(page.get_by_label("API token")).to_be_visible()


def test_a_revoked_token_signs_the_page_out_with_the_reason(page: Page, server: Server) -> None:
    ctx = make_context(server.root, None)
    try:
        made = admin.create_token(ctx, "short-lived", Role.OPERATOR, expires_in=timedelta(days=3))
        sign_in(page, made.token)
        assert made.expires_at is not None
        expect(page.locator("#whoami-text")).to_have_text(
            f"short-lived · operator · token expires {made.expires_at.date().isoformat()}"
        )
        admin.revoke_token(ctx, made.id)
    finally:
        ctx.close()
    # The next call the page makes (its summary poll, at most 5 s away) is refused: it signs out.
    expect(page.get_by_label("API token")).to_be_visible(timeout=15_000)
    expect(page.locator("#signin-error")).to_contain_text("revoked")
    expect(page.locator("#dashboard-view")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('pgkeep.token')") is None


def test_keyboard_labels_and_contrast(page: Page, server: Server) -> None:
    page.goto("/")
    expect(page.get_by_label("API token")).to_be_focused()
    page.keyboard.type(server.tokens["admin"])
    page.keyboard.press("Enter")
    expect(page.locator("#whoami")).to_be_visible()
    expect(page.locator("#backups-pager [data-part=label]")).to_contain_text("Page 1")

    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll("input, select, button, textarea")]
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                            && !el.textContent.trim())
            .map((el) => el.outerHTML)"""
    )
    assert unlabelled == []

    backup_now = page.get_by_role("button", name="Back up now")
    backup_now.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#backup-dialog")).to_be_visible()
    assert page.evaluate("document.activeElement.value") == "MANUAL"
    page.keyboard.press("Escape")
    expect(page.locator("#backup-dialog")).to_be_hidden()
    expect(backup_now).to_be_focused()

    page.get_by_role("button", name="Run checks").click()  # its badges and hints count too
    expect(page.locator("#readiness-body tr")).to_have_count(7)
    assert low_contrast(page) == []
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("#audit-view")).to_be_visible()
    assert low_contrast(page) == []


def test_a_narrow_screen_needs_no_sideways_scrolling(page: Page, server: Server) -> None:
    with server.api("operator") as operator:
        assert operator.post("/backups").status_code == 201
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, server.tokens["admin"])
    expect(page.locator("#backups-body tr").first).to_be_visible()
    page.get_by_role("button", name="Run checks").click()  # long paths and messages in its table
    expect(page.locator("#readiness-body tr")).to_have_count(7)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "09-narrow-screen")
