"""``python -m bench.archiving`` at a tiny size, so it cannot rot (timings are never asserted)."""

from __future__ import annotations

import subprocess
import sys

from bench_runner import REPO, TIMEOUT_S
from test_bench_tiny import _let_server_user_run_pgkeep


def test_archiving_bench_drains_a_backlog_and_replays_it_both_ways() -> None:
    _let_server_user_run_pgkeep()
    result = subprocess.run(
        [sys.executable, "-m", "bench.archiving", "--segments", "2", "--repeat", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `pgkeep wal-push")]
    assert [row.split("`")[1].split(" --")[0] for row in rows] == ["pgkeep wal-push"] * 2
    assert "--spool DIR" in rows[1]
    for row in rows:
        wall = float(row.split("|")[2])
        assert wall > 0
    backlog = result.stdout.split("Backlog: ")[1].split(" ready files")[0]
    assert int(backlog) >= 2  # the segments written were ready, then archived by each method
    restores = [line for line in result.stdout.splitlines() if line.startswith(("| `pgkeep restore", "| the same"))]
    assert len(restores) == 2 and "`--no-prefetch`" in restores[1]
    assert all(float(row.split("|")[2]) > 0 for row in restores)
