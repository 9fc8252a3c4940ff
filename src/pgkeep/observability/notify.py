"""Webhook notifications: a JSON POST with a Slack-compatible ``text`` field.

Sent when a backup or cleanup fails, when a restore starts and ends, when
no backup has succeeded within the alert window, and when a readiness check
(``pgkeep check``) fails as the worker starts. A notification that
cannot be delivered is logged and never fails the operation that sent it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from pgkeep.observability.logs import get_logger

log = get_logger("pgkeep.notify")
TIMEOUT_S = 5.0


class Notifier:
    def __init__(self, urls: list[str]) -> None:
        self.urls = urls

    def send(self, event: str, text: str, **fields: Any) -> None:
        """POST ``{event, text, time, ...fields}`` to every URL, in a background thread."""
        if not self.urls:
            return
        payload = {"event": event, "text": f"pgkeep: {text}", "time": datetime.now(UTC).isoformat(), **fields}
        # Not a daemon thread: a CLI that fails and exits still delivers its alert
        # (each delivery is bounded by TIMEOUT_S per URL).
        threading.Thread(target=self._deliver, args=(payload,), daemon=False, name="pgkeep-notify").start()

    def send_sync(self, event: str, text: str, **fields: Any) -> None:
        """Like :meth:`send`, but waits (used at process exit and in tests)."""
        if self.urls:
            self._deliver({"event": event, "text": f"pgkeep: {text}", "time": datetime.now(UTC).isoformat(), **fields})

    def _deliver(self, payload: dict[str, Any]) -> None:
        import httpx  # only processes that send notifications pay for importing it

        for url in self.urls:
            try:
                response = httpx.post(url, json=payload, timeout=TIMEOUT_S)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                # Only the host is logged: webhook URLs often embed a secret token.
                log.warning(
                    "notification failed",
                    notification=payload["event"],
                    host=httpx.URL(url).host,
                    error=type(exc).__name__,
                )
