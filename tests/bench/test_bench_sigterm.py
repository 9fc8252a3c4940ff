"""A benchmark stopped with SIGTERM (a CI timeout, ``kill``) stops the servers it started.

Before, only Ctrl-C ran its clean-up: SIGTERM left the benchmark's PostgreSQL
cluster and SeaweedFS running, and their data in the work dir.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench_runner import REPO

WAIT_S = 300  # only a bound for a hung run: the tiny run reaches its first data set in seconds


def _processes_naming(text: str) -> list[str]:
    """Command lines of the running processes that mention ``text`` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return False
    return True


def _kill_leftovers(log_text: str, work: Path) -> None:
    """After a failure: stop by PID what the benchmark left running, so no test leaks servers."""
    data_dir = re.search(r"\(data dir (\S+)\)", log_text)
    if data_dir:
        data = Path(data_dir.group(1))
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(data.parent, ignore_errors=True)  # the cluster's own temp dir
    for line in _processes_naming(str(work)):
        with contextlib.suppress(OSError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)


def test_sigterm_stops_the_cluster_and_the_s3_server(tmp_path: Path) -> None:
    work = tmp_path / "work"
    log_path = tmp_path / "bench.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench", "--tiny", "--work-dir", str(work), "--out", str(tmp_path / "out")],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + WAIT_S
        # "loading" is logged once the cluster and the S3 server are up.
        while "loading" not in log_path.read_text():
            assert proc.poll() is None, f"the benchmark ended early:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the benchmark never reached its first data set"
            time.sleep(0.2)
        up = re.search(r"cluster up on port (\d+)", log_path.read_text())
        assert up, log_path.read_text()
        port = int(up.group(1))
        assert _accepts(port)
        assert any("weed" in p for p in _processes_naming(str(work)))

        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=WAIT_S)
        assert rc == 128 + signal.SIGTERM, log_path.read_text()[-3000:]
        assert not _accepts(port), "the benchmark's PostgreSQL cluster is still running"
        assert _processes_naming(str(work)) == [], "the benchmark's SeaweedFS is still running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill_leftovers(log_path.read_text(), work)
