"""Two POST / at the same moment: exactly one 201, one 409, and one COMPLETED row.

Deterministic overlap: an ACCESS EXCLUSIVE lock on a table, held in another
session, stops the winner's pg_dump mid-run; the lock is released only once
the loser has been answered, so the two requests provably overlap.
"""

from __future__ import annotations

import threading

import httpx
from apihelpers import API, LiveServer, Tokens, bearer
from fastapi import FastAPI

from helpers import DbHandle, backup_rows, blocked_pg_dump_backend, table_locked, wait_for
from pgkeep.catalog.models import BackupStatus
from pgkeep.services.context import Context


def test_two_creates_at_the_same_moment(app: FastAPI, ctx: Context, tokens: Tokens, source_db: DbHandle) -> None:
    responses: dict[int, httpx.Response] = {}
    barrier = threading.Barrier(2)

    with LiveServer(app) as server:

        def post(n: int) -> None:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                barrier.wait()
                responses[n] = http.post(f"{API}/backups", json={"type": "MANUAL"}, headers=bearer(tokens.operator))

        threads = [threading.Thread(target=post, args=(n,)) for n in range(2)]
        with table_locked(source_db.conninfo):
            for thread in threads:
                thread.start()
            wait_for(lambda: len(responses) == 1, "the refused request's answer")
            [refused] = responses.values()
            assert refused.status_code == 409, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "backup_in_progress"
            # The winner is still running: its pg_dump waits behind the lock.
            wait_for(
                lambda: blocked_pg_dump_backend(source_db.conninfo, source_db.name),
                "the winner's pg_dump to wait for the lock",
            )
            [running] = backup_rows(ctx)
            assert running.status is BackupStatus.IN_PROGRESS
        for thread in threads:
            thread.join(timeout=120)

    statuses = sorted(r.status_code for r in responses.values())
    assert statuses == [201, 409]
    [row] = backup_rows(ctx)  # the refused attempt left no row
    assert row.status is BackupStatus.COMPLETED
    [created] = [r for r in responses.values() if r.status_code == 201]
    assert created.json()["backup"]["id"] == row.id
