"""pgkeep archive status --server: the server's own view of its archiving, through the real command line.

The session's PostgreSQL 15 cluster does not archive (archive_mode off): that
is reported as a problem. Archiving clusters, failing and healthy, are
tested in ``tests/pitr`` (test_wal_archiving, test_wal_push_s3_outage).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from cli_runner import Cli, assert_one_clear_line
from psycopg import sql

from helpers import DbHandle
from pgkeep.devcluster import DevCluster
from pgkeep.errors import ExitCode


def test_a_server_that_does_not_archive_is_a_problem(cli: Cli) -> None:
    result = cli.run("archive", "status", "--server", "--json")
    assert result.returncode == int(ExitCode.FAILED), result.stderr
    report = json.loads(result.stdout)
    server = report["server"]
    assert report["ok"] is False and server["ok"] is False
    assert server["archiveMode"] == "off" and server["failing"] is False
    assert server["problems"] == [
        "archive_mode is off: this server archives no WAL (point-in-time recovery needs it on)"
    ]
    assert isinstance(server["readyCount"], int) and server["backlogUnknown"] is None  # a superuser reads it
    # The archive itself (empty, no physical backup) has no hole: only the server fails the command.
    assert report["holes"] == [] and report["problems"] == []

    text = cli.run("archive", "status", "--server")
    assert text.returncode == int(ExitCode.FAILED)
    assert "archive_mode:   off" in text.stdout and "problem: archive_mode is off" in text.stderr


def test_without_server_the_archive_alone_decides(cli: Cli) -> None:
    result = cli.run("archive", "status", "--json")
    assert result.returncode == 0, result.stderr
    assert "server" not in json.loads(result.stdout)


@pytest.fixture
def monitor_role(pg15: DevCluster, source_db: DbHandle) -> Iterator[tuple[str, str]]:
    """A login role with no privileges: (name, password); dropped afterwards."""
    name, password = f"watcher_{uuid.uuid4().hex[:8]}", "watcher-pw-1"
    pg15.create_role(name, password)
    try:
        yield name, password
    finally:
        pg15.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_the_backlog_needs_pg_monitor(
    cli: Cli, pg15: DevCluster, source_db: DbHandle, monitor_role: tuple[str, str]
) -> None:
    name, password = monitor_role
    url = pg15.url(source_db.name, user=name, password=password)
    result = cli.run("archive", "status", "--server", "--json", env={"DATABASE_URL": url})
    server = json.loads(result.stdout)["server"]
    # pg_stat_archiver and the settings are readable by any role; the backlog is not.
    assert server["archiveMode"] == "off" and server["readyCount"] is None
    assert server["backlogUnknown"] == "needs superuser or the pg_monitor role"
    text = cli.run("archive", "status", "--server", env={"DATABASE_URL": url})
    assert "server backlog: unknown (needs superuser or the pg_monitor role)" in text.stdout

    pg15.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(name)))
    result = cli.run("archive", "status", "--server", "--json", env={"DATABASE_URL": url})
    server = json.loads(result.stdout)["server"]
    assert isinstance(server["readyCount"], int) and server["backlogUnknown"] is None


def test_an_unreachable_server_is_one_clear_line(offline_cli: Cli) -> None:
    result = offline_cli.run("archive", "status", "--server")
    assert_one_clear_line(result, int(ExitCode.FAILED), "cannot read the archiver of nobody@127.0.0.1:9/nowhere")
