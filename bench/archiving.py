"""How fast archive_command drains a WAL backlog, and recovery replays one: ``python -m bench.archiving``.

PostgreSQL archives one file at a time, so archive_command's cost per
16 MB segment caps how much WAL a server can produce for long without
``pg_wal`` growing. This measures that cap for ``pgkeep wal-push``, the
synchronous push and the asynchronous one (``--spool``), on the
benchmark's cluster with a local archive:

1. archive_command fails (``/bin/false``) while the server writes
   ``--segments`` segments of table data, so they pile up as ``.ready``;
2. archive_command becomes the method's, the server is told to reload,
   and the clock runs until the archiver reports the last segment archived.

Methods alternate, ``--repeat`` times each, with the archive emptied before
each run. Prints a Markdown table (wall s, segments per second, MB/s).

Then recovery, the other direction: a physical backup, the same backlog
archived after it, and ``pgkeep restore --kind physical --latest --start``
with restore_command prefetching (the default) and without
(``--no-prefetch``), alternating; each restored server is stopped and
removed. Its wall time includes unpacking the backup and starting the
server, the same for both.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from psycopg import sql

from bench.cluster import PG_BIN_DIR, BenchCluster
from bench.physical import PgkeepArchive, as_server_user, give_to_server_user
from pgkeep.devcluster import log_tail

SEGMENT_MB = 16
WAIT_S = 600.0


def _set_archive_command(cluster: BenchCluster, command: str) -> None:
    cluster.dev.execute(sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(command)))
    cluster.dev.execute("SELECT pg_reload_conf()")


def _write_backlog(cluster: BenchCluster, segments: int) -> str:
    """About ``segments`` segments of WAL, left ready; returns the last one's name."""
    dev = cluster.dev
    dev.execute("CREATE TABLE IF NOT EXISTS backlog (id bigserial, payload text)")
    dev.execute("TRUNCATE backlog")
    start = dev.query("SELECT pg_current_wal_lsn()")[0][0]
    while True:
        dev.execute(
            "INSERT INTO backlog (payload) SELECT repeat(md5(random()::text), 4) FROM generate_series(1, 50000)"
        )
        written = dev.query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [start])[0][0]
        if written >= segments * SEGMENT_MB << 20:
            break
    return str(dev.query("SELECT pg_walfile_name(pg_switch_wal())")[0][0])


def _ready_count(cluster: BenchCluster) -> int:
    return len(list((cluster.dev.data_dir / "pg_wal" / "archive_status").glob("*.ready")))


def _drain(cluster: BenchCluster, command: str, last: str) -> float:
    started = time.perf_counter()
    _set_archive_command(cluster, command)
    deadline = time.monotonic() + WAIT_S
    while True:
        done = cluster.dev.query("SELECT last_archived_wal FROM pg_stat_archiver")[0][0]
        if done and done >= last:
            return time.perf_counter() - started
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{command!r} did not archive {last} in {WAIT_S:.0f} s\n{log_tail(cluster.dev.log_file)}"
            )
        time.sleep(0.02)


def _pgkeep(cluster: BenchCluster, root: Path, archive: PgkeepArchive, *args: str) -> float:
    """Run a pgkeep command against the cluster and the archive; its wall time."""
    env = cluster.client_env()
    env.update(
        DATABASE_URL=cluster.url("postgres"),
        PGKEEP_CATALOG_URL=f"sqlite:///{root}/catalog.db",
        PGKEEP_STORAGE_URL=f"file://{archive.store}",
        PGKEEP_STATE_DIR=str(root / "state"),
        PGKEEP_PG_BIN_DIR=str(PG_BIN_DIR),
    )
    started = time.perf_counter()
    result = subprocess.run([str(archive.exe), *args], env=env, cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pgkeep {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def _recovery(cluster: BenchCluster, root: Path, archive: PgkeepArchive, segments: int, repeat: int) -> None:
    _set_archive_command(cluster, archive.command)
    _pgkeep(cluster, root, archive, "backup", "--kind", "physical", "--json")
    last = _write_backlog(cluster, segments)
    _drain(cluster, archive.command, last)
    methods = {
        "`pgkeep restore --kind physical --latest --start` (prefetching)": [],
        "the same with `--no-prefetch`": ["--no-prefetch"],
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_no in range(repeat):
        for name, extra in methods.items():
            data_dir = root / f"restored-{round_no}-{len(extra)}"
            try:
                elapsed = _pgkeep(
                    cluster,
                    root,
                    archive,
                    "restore",
                    "--kind",
                    "physical",
                    "--data-dir",
                    str(data_dir),
                    "--latest",
                    "--start",
                    "--json",
                    *extra,
                )
            finally:
                pg_ctl = [str(PG_BIN_DIR / "pg_ctl"), "-D", str(data_dir), "stop", "-m", "immediate"]
                subprocess.run(as_server_user(pg_ctl), capture_output=True, check=False)
                shutil.rmtree(data_dir, ignore_errors=True)
            times[name].append(elapsed)
            print(f"round {round_no + 1}: {name}: {elapsed:.2f} s", file=sys.stderr)
    print(f"\nRecovery: a physical backup, then {segments} segments of table data replayed from the local archive.\n")
    print("| restore | wall s (median) | min-max |")
    print("|---|---|---|")
    for name, samples in times.items():
        print(f"| {name} | {statistics.median(samples):.2f} | {min(samples):.2f}-{max(samples):.2f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.archiving", description=__doc__.split("\n\n")[0])
    p.add_argument("--segments", type=int, default=64, help="backlog size in 16 MB segments (default 64)")
    p.add_argument("--repeat", type=int, default=3, help="runs per method (default 3)")
    p.add_argument("--jobs", type=int, default=2, help="the asynchronous pusher's --jobs (default 2)")
    p.add_argument("--no-recovery", action="store_true", help="only archiving, not the recovery measurement")
    args = p.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="pgkeep-bench-archiving-"))
    give_to_server_user(root)
    cluster = BenchCluster.start(root)
    try:
        archive = PgkeepArchive.setup(root)
        spool = root / "spool"
        methods = {
            "`pgkeep wal-push` (synchronous)": archive.command,
            f"`pgkeep wal-push --spool DIR --jobs {args.jobs}` (asynchronous)": archive.command.replace(
                " %p", f" --spool {shlex.quote(str(spool))} --jobs {args.jobs} %p"
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in methods}
        counts: list[int] = []
        for round_no in range(args.repeat):
            for name, command in methods.items():
                _set_archive_command(cluster, "/bin/false")
                last = _write_backlog(cluster, args.segments)
                time.sleep(1.5)  # the archiver gives up on /bin/false and waits
                counts.append(_ready_count(cluster))
                for obj in archive.store.iterdir():
                    obj.unlink()
                elapsed = _drain(cluster, command, last)
                times[name].append(elapsed)
                print(f"round {round_no + 1}: {name}: {counts[-1]} ready files in {elapsed:.2f} s", file=sys.stderr)
        ready = statistics.median(counts)
        print(f"\nBacklog: {ready:.0f} ready files ({args.segments} segments of table data), local archive.\n")
        print("| archive_command | wall s (median) | min-max | segments/s | MB/s of WAL |")
        print("|---|---|---|---|---|")
        for name, samples in times.items():
            median = statistics.median(samples)
            print(
                f"| {name} | {median:.2f} | {min(samples):.2f}-{max(samples):.2f} | "
                f"{ready / median:.1f} | {ready * SEGMENT_MB / median:.0f} |"
            )
        if not args.no_recovery:
            _recovery(cluster, root, archive, args.segments, args.repeat)
    finally:
        _set_archive_command(cluster, "/bin/true")
        cluster.dev.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
