"""Helpers of the browser tests (a module of its own: ``conftest`` names clash between directories)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.sync_api import Locator, Page

from helpers import DbHandle

CHROMIUM = Path(os.environ.get("PGKEEP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PGKEEP = str(Path(sys.executable).parent / "pgkeep")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
API = "/api/admin"


@dataclass(frozen=True)
class Server:
    url: str
    db: DbHandle
    tokens: dict[str, str]  # role -> token
    ids: dict[str, str]  # role -> token (admin) id
    root: Path

    def api(self, role: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + API, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=60
        )


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot for review under test-artifacts/screenshots/ (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def row_of(page: Page, backup_id: str) -> Locator:
    """The backups table's row of ``backup_id``."""
    return page.locator(f'#backups-body tr[data-backup-id="{backup_id}"]')


def sign_in(page: Page, token: str) -> None:
    page.goto("/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#whoami").wait_for(state="visible")


# An arrow function evaluated in the page (kept as .js so editors and linters read it as JS).
LOW_CONTRAST_JS = (Path(__file__).parent / "low_contrast.js").read_text()


def low_contrast(page: Page) -> list[str]:
    """Visible text below WCAG AA contrast (4.5:1, 3:1 for large text) against its backdrop."""
    found: list[str] = page.evaluate(LOW_CONTRAST_JS)
    return found
