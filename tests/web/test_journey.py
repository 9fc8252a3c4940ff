"""The operator's whole day in headless Chromium, against a real ``pgkeep serve`` and PostgreSQL 15.

A module of its own: it starts from an empty catalog (its own server), so it
can watch the freshness cards go from overdue to OK.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg
from playwright.sync_api import Page, Request, expect
from webhelpers import Server, row_of, screenshot, sign_in

from helpers import make_context, scalar
from pgkeep.catalog import repository as repo

SLOW_MS = 60_000  # a restore or a drill on a loaded CI machine; tests never assert on timing


def expire(server: Server, backup_id: str) -> None:
    """Let time pass for one backup: its expiry date moves into the past (arranging, not acting)."""
    ctx = make_context(server.root, None)
    try:
        with ctx.catalog.session() as session:
            repo.update_backup(session, backup_id, expires_at=datetime.now(UTC) - timedelta(days=1))
    finally:
        ctx.close()


def test_an_admin_backs_up_verifies_restores_deletes_and_audits(page: Page, server: Server) -> None:
    sign_in(page, server.tokens["admin"])
    expect(page.locator("#whoami-text")).to_contain_text("admin")
    expect(page.locator("#database-name")).to_have_text(f"database {server.db.name}")
    fresh_backup, fresh_drill = page.locator("#fresh-backup"), page.locator("#fresh-drill")
    expect(fresh_backup).to_have_attribute("data-stale", "true")
    expect(fresh_backup).to_contain_text("Overdue")
    expect(fresh_drill).to_have_attribute("data-stale", "true")
    screenshot(page, "01-dashboard-before-any-backup")

    # --- back up now, held by a table lock so that its live progress can be watched ---
    with psycopg.connect(server.db.conninfo) as blocker:
        blocker.execute("LOCK TABLE organizations IN ACCESS EXCLUSIVE MODE")
        page.get_by_role("button", name="Back up now").click()
        dialog = page.locator("#backup-dialog")
        expect(dialog.get_by_label("MANUAL")).to_be_checked()
        dialog.get_by_role("button", name="Start backup").click()
        expect(dialog).to_be_hidden()
        running = page.locator('#activity-list li[data-kind="backup"]')
        expect(running).to_contain_text("IN PROGRESS")
        expect(running).to_contain_text("written")
        elapsed = running.locator('[data-part="elapsed"]')
        first = elapsed.inner_text()
        expect(elapsed).not_to_have_text(first, timeout=3_000)  # it moves without a reload
        # While something runs the page asks every 1.5 s (idle: 5 s): two asks in 4 s at least.
        polls: list[str] = []

        def count(request: Request) -> None:
            if request.url.endswith("/api/admin/summary"):
                polls.append(request.url)

        page.on("request", count)
        page.wait_for_timeout(4_000)
        page.remove_listener("request", count)
        assert len(polls) >= 2, polls
        in_table = page.locator('#backups-body tr[data-status="IN_PROGRESS"]')
        expect(in_table).to_have_count(1)
        expect(in_table).to_contain_text("so far")
        backup_id = in_table.get_attribute("data-backup-id")
        assert backup_id
        screenshot(page, "02-backup-running")
        blocker.rollback()
    row = row_of(page, backup_id)
    expect(row).to_have_attribute("data-status", "COMPLETED", timeout=SLOW_MS)
    expect(page.locator("#activity-empty")).to_be_visible()
    expect(fresh_backup).to_have_attribute("data-stale", "false")
    expect(fresh_backup).to_contain_text("just now")
    expect(page.locator("#chart-size circle")).not_to_have_count(0)

    # --- verify, at the restore-drill level: the drill card turns from overdue to OK ---
    row.get_by_role("button", name="Verify").click()
    dialog = page.locator("#verify-dialog")
    dialog.locator("#verify-level-restore").check()
    dialog.get_by_role("button", name="Verify", exact=True).click()
    expect(dialog.locator('[data-role="result"]')).to_contain_text("Valid (restore)", timeout=SLOW_MS)
    screenshot(page, "03-verified-by-a-restore-drill", full_page=False)
    dialog.get_by_role("button", name="Close").click()
    expect(row).to_contain_text("VALID")
    expect(row).to_contain_text("restore")
    expect(fresh_drill).to_have_attribute("data-stale", "false")

    # --- restore: an error in words, then the dry run, then the typed name ---
    rows_before = scalar(server.db.conninfo, "SELECT count(*) FROM users")
    row.get_by_role("button", name="Restore").click()
    dialog = page.locator("#restore-dialog")
    dialog.get_by_label("Target database").fill("no_such_db")
    dialog.get_by_role("button", name="Run dry run").click()
    error = dialog.locator('[data-role="error"]')
    expect(error).to_contain_text("does not exist on the configured server")
    expect(error).to_contain_text("What to do:")
    assert "{" not in error.inner_text()
    dialog.get_by_label("Target database").fill("")
    restore = dialog.get_by_role("button", name="Restore and replace data")
    expect(restore).to_be_disabled()
    with psycopg.connect(server.db.conninfo):  # the dry run says who else is connected to the target
        dialog.get_by_role("button", name="Run dry run").click()
        dry_result = dialog.locator('[data-role="dry-result"]')
        expect(dry_result).to_contain_text("Dry run passed", timeout=SLOW_MS)
    expect(dry_result).to_contain_text(f"Warning: 1 other session is connected to {server.db.name}: a table")
    confirm = dialog.get_by_label("Type the database name to confirm")
    confirm.fill(server.db.name + "_")
    expect(restore).to_be_disabled()
    confirm.fill(server.db.name)
    expect(restore).to_be_enabled()
    screenshot(page, "04-restore-confirmation", full_page=False)
    with psycopg.connect(server.db.conninfo) as blocker:
        # A reader of users holds the restore at its first DROP: meanwhile it shows how far it read.
        blocker.execute("SELECT count(*) FROM users").fetchone()
        restore.click()
        running = page.locator('#activity-list li[data-kind="restore"]')
        expect(running.locator('[data-part="bytes"]')).to_contain_text(" read", timeout=SLOW_MS)
        expect(running.locator('[data-part="bytes"]')).to_contain_text(" of ")
        expect(running.locator("progress")).to_have_attribute("value", re.compile(r"^[1-9][0-9]*$"))
        expect(running.locator("progress")).to_have_attribute("max", re.compile(r"^[1-9][0-9]*$"))
        blocker.rollback()
    result = dialog.locator('[data-role="real-result"]')
    expect(result).to_contain_text("Restore finished", timeout=SLOW_MS)
    expect(restore).to_be_disabled()  # another restore needs another dry run
    # The restore took a safety backup of the previous contents, and said so.
    said = re.search(r"safety backup of the previous contents: ([0-9a-f-]{36})", result.inner_text())
    assert said, result.inner_text()
    safety_id = said.group(1)
    dialog.get_by_role("button", name="Close").click()
    assert scalar(server.db.conninfo, "SELECT count(*) FROM users") == rows_before
    expect(row_of(page, safety_id)).to_have_attribute("data-status", "COMPLETED")

    # --- keep, then release ---
    keep = row.locator('button[data-action="keep"]')
    keep.click()
    expect(keep).to_have_text("Unkeep")
    expect(row).to_contain_text("KEPT")
    expect(row).to_contain_text("never (kept)")
    keep.click()
    expect(keep).to_have_text("Keep")

    # --- cleanup: the plan first, with reasons, then the deletion ---
    expire(server, backup_id)
    page.get_by_role("button", name="Clean up…").click()
    dialog = page.locator("#cleanup-dialog")
    expect(dialog.locator('[data-part="plan-summary"]')).to_contain_text("1 backup would be deleted")
    planned = dialog.locator(f'tr[data-plan-id="{backup_id}"]')
    expect(planned).to_have_attribute("data-action", "delete")
    expect(planned).to_contain_text("expired")
    screenshot(page, "05-cleanup-plan", full_page=False)
    dialog.get_by_role("button", name="Delete 1 expired backup").click()
    expect(dialog.locator('[data-role="result"]')).to_contain_text("Cleaned up 1 expired backups")
    dialog.get_by_role("button", name="Close").click()
    expect(row).to_have_attribute("data-status", "DELETED")

    # --- delete the safety backup ---
    safety = row_of(page, safety_id)
    safety.get_by_role("button", name="Delete").click()
    dialog = page.locator("#delete-dialog")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice is the default
    dialog.get_by_role("button", name="Delete backup").click()
    expect(safety).to_have_attribute("data-status", "DELETED")
    expect(page.locator("#status-notice")).to_contain_text("Backup deleted successfully")
    screenshot(page, "06-dashboard-after-the-journey")

    # --- every action is in the audit log ---
    page.get_by_role("link", name="Audit log").click()
    audit = page.locator("#audit-body")
    actions = ("backup.create", "backup.verify", "backup.restore", "backup.keep", "backup.cleanup", "backup.delete")
    for action in actions:
        expect(audit.locator(f'tr[data-action="{action}"]').first).to_be_visible()
    screenshot(page, "07-audit-log")
    page.locator("#audit-action").select_option("backup.restore")
    restores = audit.locator("tr")
    expect(restores.first).to_have_attribute("data-action", "backup.restore")
    # the refused target, then started + success for the dry run and for the real restore
    expect(restores).to_have_count(5)
    expect(audit.locator('tr[data-outcome="failure"]')).to_contain_text("invalid_target_database")
    expect(audit).to_contain_text("dryRun: false")
    page.locator("#audit-outcome").select_option("success")
    expect(restores).to_have_count(2)
    page.locator("#audit-action").select_option("")
    page.locator("#audit-outcome").select_option("")
    page.locator("#audit-resource").fill(safety_id)
    page.get_by_role("button", name="Apply filters").click()
    expect(restores).to_have_count(1)
    expect(restores).to_have_attribute("data-action", "backup.delete")
