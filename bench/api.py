"""``python -m bench --api``: the admin API's latency with a large catalog.

Issue 7's targets: ``GET /api/admin/backups`` answers in under 50 ms at the
95th percentile with 100,000 catalog rows, and a ``Prefer: respond-async``
backup request answers within 100 ms.

For each catalog backend pgkeep supports (SQLite, PostgreSQL) this fills a
catalog with ``--api-rows`` database_backups rows (mixed kinds, types and
statuses, with metadata shaped like real backups'), starts a real
``pgkeep serve`` as operators run it (a subprocess on loopback, default log
level, no scheduler) and measures over real HTTP with one keep-alive client:
every read endpoint ``--api-requests`` times after a warm-up, interleaved in
rotated rounds so drift hits all alike, then ``--api-backups`` async backups
of a small real database, each polled to completion before the next.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Table

from bench.api_catalog import Tables, fill_postgresql, fill_sqlite, generate_rows, verifications_for
from bench.api_measure import (
    ASYNC_BACKUP_TARGET_MS,
    LIST_P95_TARGET_MS,
    POLL_S,
    PREFIX,
    CatalogRun,
    CpuMeter,
    endpoints,
    measure_async_backups,
    measure_reads,
)
from bench.cluster import PG_BIN_DIR, BenchCluster, ServerCpu
from bench.machine import machine_info, versions
from bench.report import write_section
from pgkeep.catalog.models import BackupVerification, DatabaseBackup
from pgkeep.sample import load_sample

ROWS = 100_000
REQUESTS = 200
WARMUP = 20
BACKUPS = 10
TINY = {"api_rows": 2_000, "api_requests": 20, "api_backups": 2}
CATALOGS = ("sqlite", "postgresql")
SERVER_START_TIMEOUT_S = 60.0
TARGET_DB = "apibench"
CATALOG_DB = "pgkeep_catalog"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The API benchmark's options (``--api`` selects it instead of the backup/restore run)."""
    g = p.add_argument_group("admin API benchmark (--api)")
    g.add_argument("--api", action="store_true", help="measure the admin API's latency instead of backups and restores")
    g.add_argument("--api-rows", type=int, default=ROWS, help=f"catalog rows (default {ROWS:,})")
    g.add_argument(
        "--api-requests", type=int, default=REQUESTS, help=f"measured requests per endpoint (default {REQUESTS})"
    )
    g.add_argument("--api-backups", type=int, default=BACKUPS, help=f"measured async backups (default {BACKUPS})")
    g.add_argument("--api-catalogs", default=",".join(CATALOGS), help="catalog backends: sqlite, postgresql")


def apply_tiny(args: argparse.Namespace) -> None:
    for name, value in TINY.items():
        setattr(args, name, value)


def warmup(args: argparse.Namespace) -> int:
    """Unmeasured requests per endpoint first (connections, caches, the planner's statistics)."""
    return min(WARMUP, max(1, args.api_requests // 4))


def log(message: str) -> None:
    print(f"[bench api {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- one catalog backend -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pgkeep() -> str:
    return str(Path(sys.executable).with_name("pgkeep"))


class Server:
    """``pgkeep serve`` in a subprocess, its output in a file (read for tracebacks at the end)."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / f"serve-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [_pgkeep(), "serve", "--port", str(self.port), "--no-scheduler"],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgkeep serve exited {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pgkeep serve did not answer within {SERVER_START_TIMEOUT_S} s")
            time.sleep(0.1)

    def log_tail(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: serve finishes its jobs and exits
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def run_catalog(
    backend: str, cluster: BenchCluster, work: Path, args: argparse.Namespace, rows: list[dict[str, Any]]
) -> CatalogRun:
    result = CatalogRun(backend, len(rows))
    root = work / backend
    root.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        catalog_url = f"sqlite:///{root}/catalog.db"
    else:
        cluster.fresh_database(CATALOG_DB)
        catalog_url = cluster.url(CATALOG_DB)
    env = cluster.client_env() | {
        "DATABASE_URL": cluster.url(TARGET_DB),
        "PGKEEP_CATALOG_URL": catalog_url,
        "PGKEEP_STORAGE_URL": f"file://{root}/store",
        "PGKEEP_STATE_DIR": str(root / "state"),
        "PGKEEP_PG_BIN_DIR": str(PG_BIN_DIR),
    }

    def pgkeep(*argv: str) -> str:
        # cwd = our directory: pgkeep reads ./.env, and the repository's must not leak in.
        done = subprocess.run([_pgkeep(), *argv], env=env, cwd=root, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pgkeep {' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
        return done.stdout

    pgkeep("db", "upgrade")
    t0 = time.perf_counter()
    tables: Tables = [
        (cast(Table, DatabaseBackup.__table__), rows),
        (cast(Table, BackupVerification.__table__), verifications_for(rows)),
    ]
    if backend == "sqlite":
        fill_sqlite(catalog_url, tables)
    else:
        fill_postgresql(cluster.dev.admin_conninfo(CATALOG_DB), tables)
    result.fill_s = time.perf_counter() - t0
    log(f"{backend}: {len(rows):,} rows in {result.fill_s:.1f} s")
    token = json.loads(pgkeep("admin", "create-token", "--name", "bench", "--role", "operator", "--json"))["token"]
    server = Server(env, root)
    try:
        meter = CpuMeter(server.proc.pid, ServerCpu(cluster.dev.data_dir))
        with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as client:
            picks = random.Random(args.seed).sample(rows, min(len(rows), 500))  # noqa: S311
            ids = [r["id"] for r in picks]
            pages = math.ceil(len(rows) / 20)
            mark = meter.start()
            result.reads = measure_reads(client, endpoints(ids, pages), token, args.api_requests, warmup(args))
            result.others_load["reads"] = meter.others_load(mark)
            for r in result.reads:
                s = r.summary()
                log(
                    f"{backend}: {r.key}: p50 {s['p50_ms'] or 0:.1f} ms, p95 {s['p95_ms'] or 0:.1f} ms"
                    + (f" FAILED {r.error}" if r.error else "")
                )
            mark = meter.start()
            result.backup = measure_async_backups(client, token, args.api_backups)
            result.others_load["backups"] = meter.others_load(mark)
            s = result.backup.summary()
            log(
                f"{backend}: backup-async: p50 {s['p50_ms'] or 0:.1f} ms, p95 {s['p95_ms'] or 0:.1f} ms"
                + (f" FAILED {result.backup.error}" if result.backup.error else "")
            )
    finally:
        server.stop()
        if "Traceback" in server.log_path.read_text(errors="replace"):
            result.error = f"pgkeep serve logged a traceback: {server.log_tail()[-1500:]}"
        if backend == "postgresql":
            cluster.drop_database(CATALOG_DB)
    return result


# -- the report ------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(meta: dict[str, Any], runs: list[CatalogRun]) -> str:
    m, v, s = meta["machine"], meta["versions"], meta["settings"]
    lines = [
        "# pgkeep benchmark: admin API",
        "",
        f"Measured {meta['date']} on {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, "
        f"Linux {m['kernel']}. PostgreSQL server {v['postgresql_server']}, pgkeep {v['pgkeep']}, "
        f"Python {v['python']}, FastAPI {v['fastapi']}, uvicorn {v['uvicorn']}, SQLAlchemy {v['sqlalchemy']}.",
        "",
        f"Settings: `python -m bench {s['command_line']}`: {s['rows']:,} catalog rows, {s['requests']} "
        f"measured requests per endpoint after {s['warmup']} warm-up ones (interleaved, one keep-alive "
        f"client), {s['backups']} async backups of a {s['target_db']}.",
        "",
        f"Targets (issue 7): `GET {PREFIX}/backups` p95 under {LIST_P95_TARGET_MS:.0f} ms with 100,000 rows; "
        f"`Prefer: respond-async` backup answered within {ASYNC_BACKUP_TARGET_MS:.0f} ms.",
        "",
    ]
    for run in runs:
        loads = ", ".join(f"{k} {val:.1f}" for k, val in run.others_load.items()) or "-"
        lines += [
            f"### {run.backend} catalog",
            "",
            f"{run.rows:,} rows, filled in {run.fill_s:.1f} s. Other load (CPUs busy outside the benchmark): {loads}.",
            "",
        ]
        if run.error:
            lines += [f"**Error:** {_cell(run.error[:500])}", ""]
        lines += [
            "| request | runs | p50 ms | p95 ms | max ms | target p95 | met |",
            "|---|---|---|---|---|---|---|",
        ]
        for lat in run.reads + ([run.backup] if run.backup else []):
            sm = lat.summary()
            if lat.error is not None:
                lines.append(f"| {_cell(lat.label)} | failed: {_cell(lat.error[:200])} |")
                continue
            target = "-" if lat.target_ms is None else f"< {lat.target_ms:.0f} ms"
            met = "-" if sm["meets_target"] is None else ("yes" if sm["meets_target"] else "**no**")
            lines.append(
                f"| {_cell(lat.label)} | {sm['runs']} | {_ms(sm['p50_ms'])} | {_ms(sm['p95_ms'])} | "
                f"{_ms(sm['max_ms'])} | {target} | {met} |"
            )
        if run.backup and run.backup.extra.get("backup_completed_s_median") is not None:
            lines += [
                "",
                f"Each async backup then ran to COMPLETED in {run.backup.extra['backup_completed_s_median']} s "
                f"(median, polled every {POLL_S * 1000:.0f} ms); {run.backup.extra['refused_409']} requests "
                "refused with 409 while the previous backup's session closed were retried, not measured.",
            ]
        lines.append("")
    lines += [
        "- Latency: from sending the request to having read the whole answer, over loopback HTTP/1.1.",
        "- p50/p95: nearest-rank percentiles of the measured requests; max: the slowest.",
        "- other load: CPUs kept busy by processes outside the benchmark (the client, `pgkeep serve`",
        "  and PostgreSQL subtracted), from /proc/stat. Above ~0.2 the machine was shared and",
        "  latencies are longer than on a quiet machine.",
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, argv: list[str]) -> list[Path]:
    """The whole API benchmark; returns the report files written."""
    wanted = [c.strip() for c in args.api_catalogs.split(",") if c.strip()]
    unknown = set(wanted) - set(CATALOGS)
    if unknown or not wanted:
        raise SystemExit(f"--api-catalogs: unknown {sorted(unknown)}; known: {list(CATALOGS)}")
    if args.api_rows < 1 or args.api_requests < 1 or args.api_backups < 1:
        raise SystemExit("--api-rows, --api-requests and --api-backups must be positive")
    own_work = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="pgkeep-bench-api-")) if own_work else args.work_dir / "api"
    work.mkdir(parents=True, exist_ok=True)
    cluster = BenchCluster.start(work, durable=args.fsync)
    try:
        log(f"cluster up on port {cluster.dev.port}; work dir {work}")
        cluster.fresh_database(TARGET_DB)
        load_sample(cluster.dev.admin_conninfo(TARGET_DB), scale=1)
        target_mb = cluster.database_size(TARGET_DB) / 1e6
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        rows = list(generate_rows(args.api_rows, args.seed, now))
        log(f"generated {len(rows):,} rows in {time.perf_counter() - t0:.1f} s")
        runs = []
        for backend in wanted:
            try:
                runs.append(run_catalog(backend, cluster, work, args, rows))
            except Exception as exc:
                message = f"{type(exc).__name__}: {str(exc)[:1000]}"
                log(f"{backend}: FAILED: {message}")
                runs.append(CatalogRun(backend, len(rows), error=message))
        vers = versions(cluster.server_version())
        for dist in ("fastapi", "uvicorn", "sqlalchemy", "httpx"):
            vers[dist] = _dist_version(dist)
        meta: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "versions": vers,
            "server_settings": cluster.settings,
            "settings": {
                "command_line": " ".join(argv),
                "rows": args.api_rows,
                "requests": args.api_requests,
                "warmup": warmup(args),
                "backups": args.api_backups,
                "catalogs": wanted,
                "seed": args.seed,
                "target_db": f"{target_mb:.0f} MB sample database (pgkeep.sample, scale 1)",
            },
            "targets": {"list_p95_ms": LIST_P95_TARGET_MS, "async_backup_ms": ASYNC_BACKUP_TARGET_MS},
        }
        payload = {**meta, "catalogs": [r.as_json() for r in runs]}
        return write_section(args.out, "api", meta["date"], markdown(meta, runs), payload)
    finally:
        cluster.stop()
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
