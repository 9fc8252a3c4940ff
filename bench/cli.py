"""``python -m bench``: build a cluster, load the data sets, measure, report."""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import api, datasets, memory
from bench.cluster import BenchCluster, ServerCpu
from bench.machine import machine_info, versions
from bench.methods import Env, Method, all_methods
from bench.physical import Physical
from bench.report import MB, DatasetResult, MethodResult, write_reports
from bench.storage import StorageTarget, targets

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
TINY = {"scale": 1, "realistic_mb": 5.0, "repeat": 1}


def parse_args(argv: list[str]) -> argparse.Namespace:
    keys = ", ".join(m.key for m in all_methods())
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure pgkeep against pg_dump/pg_restore and the spec's gzip pipeline.",
    )
    p.add_argument("--scale", type=int, default=100, help="pgbench scale (default 100, ~1.6 GB)")
    p.add_argument(
        "--realistic-mb",
        type=float,
        default=1000.0,
        help="generated text of the realistic data set, in MB (default 1000)",
    )
    p.add_argument("--repeat", type=int, default=3, help="measurements per method (default 3)")
    p.add_argument("--methods", default="*", help=f"comma-separated method keys or globs (default all): {keys}")
    p.add_argument("--datasets", default="pgbench,realistic", help="comma-separated data sets, or none")
    p.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 2, help="N for the parallel methods (default: the number of CPUs)"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report directory")
    p.add_argument("--work-dir", type=Path, help="where dumps are written (default: a temp dir)")
    p.add_argument("--seed", type=int, default=1, help="seed of the realistic data set")
    p.add_argument(
        "--fsync", action="store_true", help="run the cluster with fsync/synchronous_commit/full_page_writes on"
    )
    p.add_argument(
        "--memory-check",
        action="store_true",
        help="also compare pgkeep's peak RSS (backup, verify, restore) on the realistic data set at --memory-sizes",
    )
    p.add_argument(
        "--memory-sizes",
        default=",".join(f"{s:g}" for s in memory.DEFAULT_SIZES),
        help="MB of text of the memory check's data sets, smallest first (default 100,1000: 10x apart)",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="short smoke run for CI (a minute or two): scale 1, 5 MB, repeat 1, memory check at 1 and 10 MB",
    )
    api.add_arguments(p)
    args = p.parse_args(argv)
    if args.tiny:
        for name, value in TINY.items():
            setattr(args, name, value)
        api.apply_tiny(args)
        args.memory_check = True
        args.memory_sizes = ",".join(f"{s:g}" for s in memory.TINY_SIZES)
    if args.repeat < 1 or args.jobs < 1 or args.scale < 1 or args.realistic_mb <= 0:
        p.error("--repeat, --jobs, --scale and --realistic-mb must be positive")
    try:
        args.memory_sizes = memory.parse_sizes(args.memory_sizes)
    except ValueError as exc:
        p.error(str(exc))
    return args


def select_methods(pattern: str) -> list[Method]:
    globs = [g.strip() for g in pattern.split(",") if g.strip()]
    chosen = [m for m in all_methods() if any(fnmatch.fnmatchcase(m.key, g) for g in globs)]
    if not chosen:
        raise SystemExit(f"--methods {pattern!r} matches none of: {[m.key for m in all_methods()]}")
    return chosen


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def warm_up(env: Env) -> int:
    """One unmeasured plain dump: fills the page cache and gives the plain dump's size."""
    proc = subprocess.Popen(
        [env.tool("pg_dump"), f"--dbname={env.conninfo()}", "--no-password", "--format=plain"],
        stdout=subprocess.PIPE,
        env=env.client_env(),
    )
    assert proc.stdout is not None
    total = 0
    while chunk := proc.stdout.read(1 << 20):
        total += len(chunk)
    if proc.wait() != 0:
        raise RuntimeError(f"warm-up pg_dump exited {proc.returncode}")
    return total


def _describe(result: MethodResult) -> str:
    s = result.samples[-1]
    size = f", {s.size_bytes / MB:.1f} MB" if s.size_bytes is not None else ""
    rss = f", rss {s.own_rss / MB:.0f} MB" if s.own_rss else ""
    return f"{s.wall_s:.2f} s{size}, cpu {s.cpu_s:.1f}+{s.server_cpu_s:.1f} s{rss}"


def round_order(group: list[Method], round_no: int) -> list[Method]:
    """The order of ``group``'s methods in round ``round_no``: a Williams design.

    Each round shifts the sequence 0, 1, n-1, 2, n-2, ... by one, so every method
    takes every position once in n rounds and follows a different method each
    time. (Plain rotation kept each method's neighbours: a method measured right
    after another's aftermath, a checkpoint say, stayed there in every round.)
    """
    n = len(group)
    base = [0]
    low, high = 1, n - 1
    while low <= high:
        base.append(low)
        low += 1
        if low <= high:
            base.append(high)
            high -= 1
    return [group[(i + round_no) % n] for i in base]


def measure_dataset(env: Env, methods: list[Method], repeat: int, name: str) -> list[MethodResult]:
    results = {m.key: MethodResult(m) for m in methods}
    # A restore whose backup is not measured still needs that backup's output once.
    producers = {m.key: m for m in all_methods()}
    for needed in {m.needs for m in methods if m.needs and m.needs not in results}:
        log(f"{name}: preparing {needed} (not measured)")
        try:
            producers[needed].measure(env)
        except Exception as exc:  # its restores will report that their backup is missing
            log(f"{name}: preparing {needed} FAILED: {exc}")
    for round_no in range(repeat):
        # Physical backups before the restores: they read the cluster the logical backups read,
        # before the restores leave it full of dirty buffers and WAL.
        for kind in ("backup", "physical", "restore"):
            group = [m for m in methods if m.kind == kind]
            if not group:
                continue
            for method in round_order(group, round_no):
                result = results[method.key]
                if result.error is not None:
                    continue
                if method.needs and method.needs not in env.artifacts:
                    result.error = f"its backup ({method.needs}) failed"
                    continue
                try:
                    result.samples.append(method.measure(env))
                except Exception as exc:
                    result.error = f"{type(exc).__name__}: {exc}"
                    log(f"{name} round {round_no + 1}/{repeat}: {method.key} FAILED: {exc}")
                    continue
                log(f"{name} round {round_no + 1}/{repeat}: {method.key}: {_describe(result)}")
    return [results[m.key] for m in methods]


def setup_storages(storages: dict[str, StorageTarget], work: Path) -> dict[str, dict[str, str] | str]:
    """Each target's PGKEEP_* variables, or why it could not start (its methods then fail with that)."""
    result: dict[str, dict[str, str] | str] = {}
    for name, target in storages.items():
        try:
            result[name] = target.setup(work)
        except Exception as exc:
            if name == "local":
                raise  # unmeasured commands need it
            reason = f"the {name} storage did not start: {type(exc).__name__}: {exc}"
            log(reason)
            result[name] = reason
    return result


def memory_check(
    args: argparse.Namespace, cluster: BenchCluster, work: Path, make_env: Callable[[str, Path], Env]
) -> memory.MemoryResult:
    """pgkeep's peak RSS on the realistic data set at each of --memory-sizes."""
    points = []
    for size in args.memory_sizes:
        dataset = datasets.realistic(size, args.seed)
        log(f"memory check: loading {size:g} MB")
        facts = dataset.load(cluster)
        env = make_env(dataset.dbname, work / f"memory-{size:g}")
        env.pgkeep_quiet(["db", "upgrade"])
        facts["plain_dump_bytes"] = warm_up(env)
        point = memory.MemoryPoint(size, facts)
        memory.measure_point(env, point)
        described = ", ".join(
            [f"{op} rss {s.own_rss / MB:.0f} MB" for op, s in point.samples.items() if s.own_rss]
            + [f"{op} FAILED: {err}" for op, err in point.errors.items()]
        )
        log(f"memory check {size:g} MB: {described}")
        points.append(point)
        cluster.drop_database(dataset.dbname)
        shutil.rmtree(env.work, ignore_errors=True)
    return memory.MemoryResult(points)


def run(args: argparse.Namespace, argv: list[str]) -> list[Path]:
    methods = select_methods(args.methods)
    wanted = [d.strip() for d in args.datasets.split(",") if d.strip() and d.strip() != "none"]
    makers = {
        "pgbench": lambda: datasets.pgbench(args.scale),
        "realistic": lambda: datasets.realistic(args.realistic_mb, args.seed),
    }
    unknown = set(wanted) - set(makers)
    if unknown:
        raise SystemExit(f"unknown data sets {sorted(unknown)}; known: {sorted(makers)}")
    own_work = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="pgkeep-bench-")) if own_work else args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    if own_work and os.geteuid() == 0:
        # Search access only: the server's OS user runs the physical tools in a directory
        # of its own inside (bench/physical.py); nothing here becomes listable or readable.
        os.chmod(work, 0o711)  # noqa: S103 - search only, no read or write for others
    storages = targets({m.storage for m in methods if m.storage} if wanted else set())
    cluster = BenchCluster.start(work, durable=args.fsync)
    try:
        log(f"cluster up on port {cluster.dev.port} (data dir {cluster.dev.data_dir}); work dir {work}")
        storage_env = setup_storages(storages, work)
        archivers = {m.archiver for m in methods if m.archiver} if wanted else set()
        physical = Physical.setup(cluster, work, args.jobs, archivers) if archivers else None

        def make_env(dbname: str, env_work: Path) -> Env:
            env_work.mkdir(exist_ok=True)
            pids = [pid for target in storages.values() for pid in target.pids()]
            return Env(
                cluster,
                dbname,
                env_work,
                args.jobs,
                storage_env,
                server_cpu=ServerCpu(cluster.dev.data_dir),
                storage_pids=pids,
                physical=physical,
            )

        results: list[DatasetResult] = []
        for name in wanted:
            dataset = makers[name]()
            log(f"{name}: loading ({dataset.description})")
            facts = dataset.load(cluster)
            facts["cluster_bytes"] = cluster.cluster_size()
            log(f"{name}: loaded in {facts['load_s']} s, {facts['database_bytes'] / MB:.0f} MB")
            env = make_env(dataset.dbname, work / name)
            env.pgkeep_quiet(["db", "upgrade"])
            facts["plain_dump_bytes"] = warm_up(env)
            measured = measure_dataset(env, methods, args.repeat, name)
            results.append(DatasetResult(name, dataset.description, facts, measured))
            cluster.drop_database(dataset.dbname)
            shutil.rmtree(env.work, ignore_errors=True)
        memory_result = memory_check(args, cluster, work, make_env) if args.memory_check else None
        meta = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "versions": versions(cluster.server_version()),
            "server_settings": cluster.settings,
            "settings": {
                "command_line": " ".join(argv),
                "scale": args.scale,
                "realistic_mb": args.realistic_mb,
                "repeat": args.repeat,
                "jobs": args.jobs,
                "seed": args.seed,
                "methods": [m.key for m in methods],
                "datasets": wanted,
                "memory_sizes_mb": list(args.memory_sizes) if args.memory_check else None,
                "work_dir": str(work),
            },
        }
        return write_reports(args.out, meta, results, memory_result)
    finally:
        try:
            cluster.stop()
        finally:
            for target in storages.values():
                target.teardown()
            if own_work:
                shutil.rmtree(work, ignore_errors=True)


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the ``finally`` blocks stop the cluster and the S3 server."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.perf_counter()
    written = api.run(args, argv) if args.api else run(args, argv)
    log(f"done in {time.perf_counter() - started:.0f} s; wrote {', '.join(map(str, written))}")
    return 0
