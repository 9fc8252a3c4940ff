"""The two data sets: pgbench with incompressible-ish filler, and the realistic app.

Both end frozen, analyzed and checkpointed, so the first measured dump does
not pay for hint bits or a checkpoint that later ones skip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.cluster import PG_BIN_DIR, BenchCluster
from bench.procs import run_quiet
from bench.realistic import load_realistic

# pgbench's stock filler is blanks and compresses ~35x, flattering every compressor.
# 64 hex digits of md5 (the last 20 of the 84 chars stay blank padding) bring
# the plain dump to about 2.5x under gzip, like the measurements in NOTES.md.
FILLER_SQL = """
ALTER TABLE pgbench_accounts ALTER COLUMN filler TYPE char(84)
    USING md5(aid::text) || md5((aid # 1518500249)::text)
"""


@dataclass(frozen=True)
class Dataset:
    name: str
    dbname: str
    description: str
    loader: Callable[[BenchCluster, str], dict[str, int]]

    def load(self, cluster: BenchCluster) -> dict[str, Any]:
        """Create the database and fill it; return facts for the report."""
        t0 = time.perf_counter()
        cluster.fresh_database(self.dbname)
        counts = self.loader(cluster, self.dbname)
        with psycopg.connect(cluster.dev.admin_conninfo(self.dbname), autocommit=True) as conn:
            conn.execute("VACUUM (FREEZE, ANALYZE)")
            conn.execute("CHECKPOINT")
        return {
            "rows": counts,
            "database_bytes": cluster.database_size(self.dbname),
            "load_s": round(time.perf_counter() - t0, 1),
        }


def _table_counts(cluster: BenchCluster, dbname: str) -> dict[str, int]:
    rows = cluster.dev.query("SELECT relname, n_live_tup FROM pg_stat_user_tables ORDER BY relname", dbname=dbname)
    return {str(name): int(n) for name, n in rows}


def pgbench(scale: int) -> Dataset:
    def load(cluster: BenchCluster, dbname: str) -> dict[str, int]:
        dev = cluster.dev
        base = [str(PG_BIN_DIR / "pgbench"), "-h", dev.host, "-p", str(dev.port), "-U", dev.superuser]
        env = cluster.client_env()
        # Server-side generation (G), then primary keys (p) once the filler is rewritten:
        # the ALTER rewrites the table once, with no dead tuples left behind.
        run_quiet([*base, "-i", "-I", "dtG", "-s", str(scale), dbname], env=env)
        dev.execute(FILLER_SQL, dbname=dbname)
        run_quiet([*base, "-i", "-I", "p", dbname], env=env)
        dev.execute("ANALYZE", dbname=dbname)
        return _table_counts(cluster, dbname)

    return Dataset(
        name="pgbench",
        dbname="bench_pgbench",
        description=f"pgbench scale {scale}, filler replaced by md5 hex text",
        loader=load,
    )


def realistic(target_mb: float, seed: int) -> Dataset:
    def load(cluster: BenchCluster, dbname: str) -> dict[str, int]:
        return load_realistic(cluster.dev.admin_conninfo(dbname), target_mb, seed)

    return Dataset(
        name="realistic",
        dbname="bench_app",
        description=(
            f"meeting-notes app, about {target_mb:g} MB of generated text (Zipf-distributed pseudo-words, seed {seed})"
        ),
        loader=load,
    )
