"""pgkeep's own memory stays bounded however far the stored bytes expand.

A table of blank padding stores in a few kilobytes of zstd: one stored
chunk then decompresses to hundreds of megabytes. Verify and restore must
still hand it on in bounded pieces (issue 7: under 150 MB peak RSS, not
growing with the data).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
from cli_runner import Cli

from helpers import DbHandle, scalar

PADDING_MB = 200
RSS_LIMIT_KB = 150 * 1024


# wait4's ru_maxrss of a child counts the memory of the process that forked it
# (Linux carries the old high-water mark across exec), so the test process,
# large by now, starts a small Python that starts pgkeep and reports on it.
MEASURE = """
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cli: Cli, out_dir: Path, *args: str) -> int:
    """Run one pgkeep command, which must succeed; return its peak RSS in KiB."""
    rss_file = out_dir / f"{args[0]}.rss"
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(rss_file), *cli.command(*args)],
        cwd=cli.cwd,
        env=cli.environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (args, result.stderr)
    return int(rss_file.read_text())


def test_verify_and_restore_of_highly_compressible_data_stay_small(
    cli: Cli, tmp_path: Path, source_db: DbHandle, empty_db: DbHandle
) -> None:
    with psycopg.connect(source_db.conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE padding (id int PRIMARY KEY, blank text NOT NULL)")
        conn.execute(
            "INSERT INTO padding SELECT i, repeat(' ', 1 << 20) FROM generate_series(1, %s) AS i",
            (PADDING_MB,),
        )
    backup = cli.json("backup")
    assert backup["size"] < (PADDING_MB << 20) // 100  # the padding compresses away

    assert run_measured(cli, tmp_path, "verify", backup["id"]) < RSS_LIMIT_KB
    restore = ("restore", backup["id"], "--yes", "--target-url", empty_db.url)
    assert run_measured(cli, tmp_path, *restore) < RSS_LIMIT_KB
    assert scalar(empty_db.conninfo, "SELECT sum(length(blank)) FROM padding") == PADDING_MB << 20
