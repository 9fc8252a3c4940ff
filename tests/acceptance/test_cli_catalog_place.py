"""A PostgreSQL catalog inside the backed-up database: backups and whole restores of it are refused.

Restoring that database would replace the catalog with the backup's copy and
forget every newer backup (found by hand: the restored backup read
IN_PROGRESS and the newer ones were gone). The catalog URL below reaches the
database over the unix socket, the CLI's DATABASE_URL over TCP: pgkeep must
see they are the same database anyway.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from cli_runner import Cli, assert_one_clear_line

from helpers import DbHandle, dir_entries, scalar, socket_url
from pgkeep.devcluster import DevCluster
from pgkeep.errors import ExitCode

REFUSED = "pgkeep's catalog (PGKEEP_CATALOG_URL) is in the database"


def test_the_catalog_database_is_not_backed_up_or_restored_whole(
    cli: Cli, pg15: DevCluster, source_db: DbHandle, empty_db: DbHandle, backups_dir: Path
) -> None:
    backup_id = cli.json("backup")["id"]  # with the default SQLite catalog
    inside = {"PGKEEP_CATALOG_URL": socket_url(pg15, source_db.name)}
    assert cli.run("db", "upgrade", env=inside).returncode == 0
    assert cli.json("catalog", "rebuild", env=inside)["imported"] == [
        {"id": backup_id, "filename": dir_entries(backups_dir)[0]}
    ]

    result = cli.run("check", "--json", env=inside)
    catalog = json.loads(result.stdout)["checks"][0]
    assert result.returncode == int(ExitCode.FAILED)
    assert catalog["name"] == "catalog" and catalog["status"] == "fail"
    assert catalog["detail"].startswith(REFUSED) and "forgetting every newer backup" in catalog["detail"]
    assert "pgkeep catalog rebuild" in catalog["hint"]

    files = dir_entries(backups_dir)
    assert_one_clear_line(cli.run("backup", env=inside), int(ExitCode.CONFIG), REFUSED, f"/{source_db.name}:")
    assert dir_entries(backups_dir) == files  # nothing stored
    statuses = {row["id"]: row["status"] for row in cli.json("list", env=inside)["backups"]}
    assert sorted(statuses.values()) == ["COMPLETED", "FAILED"]  # the refusal is on record

    with psycopg.connect(source_db.conninfo, autocommit=True) as conn:
        conn.execute("DELETE FROM summaries")
    for args in (("--dry-run",), ("--yes",)):
        result = cli.run("restore", backup_id, *args, env=inside)
        assert result.returncode == int(ExitCode.CONFIG) and REFUSED in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert scalar(source_db.conninfo, "SELECT count(*) FROM summaries") == 0  # untouched
    assert cli.json("show", backup_id, env=inside)["status"] == "COMPLETED"  # and the catalog too

    # Into another database, or only some tables next to the live data: allowed.
    result = cli.run("restore", backup_id, "--yes", "--target-url", empty_db.url, env=inside)
    assert result.returncode == 0, result.stderr
    assert scalar(empty_db.conninfo, "SELECT count(*) FROM summaries") > 0
    result = cli.run(
        "restore", backup_id, "--yes", "--table", "public.summaries", "--into-schema", "recovered", env=inside
    )
    assert result.returncode == 0, result.stderr
    assert scalar(source_db.conninfo, "SELECT count(*) FROM recovered.summaries") > 0
    assert len(cli.json("list", env=inside)["backups"]) == 2  # the catalog kept its rows
