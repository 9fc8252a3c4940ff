"""What is measured: each method is one backup or restore, run as subprocesses.

A method turns the per-data-set :class:`Env` into one :class:`Sample`. The
reference rows (floor, spec, pg_dump -Fc/-Fd, gunzip | psql, pg_restore -j)
sit beside pgkeep's own rows so every ratio comes from the same run.

Adding a method is a few lines in :func:`all_methods`. pgkeep methods name a
storage target (see :mod:`bench.storage`); a backup to S3 is one more
target plus ``_pgkeep_backup("pgkeep-s3", ..., storage="s3")``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from bench.cluster import PG_BIN_DIR, BenchCluster, ServerCpu, machine_busy_s
from bench.procs import RunResult, Stage, run_pipeline, run_quiet

Kind = Literal["backup", "restore"]
REAP_GRACE_S = 0.2  # lets the postmaster reap the last backend before the CPU sample


@dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_s: float  # client side: the whole process tree
    server_cpu_s: float  # every PostgreSQL process of the cluster
    size_bytes: int | None  # backups: bytes stored
    own_rss: int | None  # pgkeep's own process (VmHWM)
    tree_rss: int  # the largest ru_maxrss of the client processes
    # CPU seconds used meanwhile by processes that are neither ours nor the server's: on a
    # shared machine this is the noise that makes wall times longer than CPU times.
    others_cpu_s: float = 0.0


@dataclass
class Env:
    """Everything a method needs for one data set."""

    cluster: BenchCluster
    dbname: str
    work: Path
    jobs: int
    storage_env: dict[str, dict[str, str]]  # storage target name -> pgkeep env additions
    artifacts: dict[str, object] = field(default_factory=dict)
    server_cpu: ServerCpu | None = None

    def tool(self, name: str) -> str:
        return str(PG_BIN_DIR / name)

    def conninfo(self, dbname: str | None = None) -> str:
        return self.cluster.conninfo(dbname or self.dbname)

    def client_env(self) -> dict[str, str]:
        return self.cluster.client_env()

    def pgkeep_stage(self, args: list[str], storage: str = "local") -> Stage:
        env = self.client_env()
        env.update(
            DATABASE_URL=self.cluster.url(self.dbname),
            PGKEEP_CATALOG_URL=f"sqlite:///{self.work}/catalog.db",
            PGKEEP_STATE_DIR=str(self.work / "pgkeep-state"),
            PGKEEP_PG_BIN_DIR=str(PG_BIN_DIR),
        )
        env.update(self.storage_env[storage])
        exe = Path(sys.executable).with_name("pgkeep")
        # cwd = work dir: pgkeep also reads ./.env, and the repo's must not leak in.
        return Stage([str(exe), *args], env=env, cwd=self.work, watch_rss=True)

    def pgkeep_quiet(self, args: list[str], storage: str = "local") -> str:
        """An unmeasured pgkeep command (catalog set-up, deleting superseded backups)."""
        stage = self.pgkeep_stage(args, storage)
        return run_quiet(stage.argv, env=stage.env, cwd=stage.cwd)

    def run(
        self, stages: list[Stage], *, stdout: Path | None = None, capture: bool = False
    ) -> tuple[RunResult, Sample]:
        """Run and measure; ``size`` may be filled in by the caller afterwards."""
        os.sync()  # the previous method's dirty pages must not be flushed on this one's time
        assert self.server_cpu is not None
        before, busy_before = self.server_cpu.sample(), machine_busy_s()
        result = run_pipeline(stages, stdout=stdout, capture=capture)
        busy = machine_busy_s() - busy_before
        time.sleep(REAP_GRACE_S)
        server = self.server_cpu.sample() - before
        others = max(0.0, busy - result.cpu_s - server)
        sample = Sample(result.wall_s, result.cpu_s, server, None, result.own_rss, result.tree_maxrss, others)
        return result, sample


@dataclass(frozen=True)
class Method:
    key: str
    label: str  # the command, as shown in the report
    kind: Kind
    measure: Callable[[Env], Sample]
    needs: str | None = None  # restores: the backup method whose output they read


def _path_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _with_size(sample: Sample, size: int) -> Sample:
    return replace(sample, size_bytes=size)


# -- reference backups -------------------------------------------------------------------


def _pg_dump(env: Env, *args: str) -> Stage:
    return Stage([env.tool("pg_dump"), f"--dbname={env.conninfo()}", "--no-password", *args], env=env.client_env())


def _floor(env: Env) -> Sample:
    return env.run([_pg_dump(env, "--format=plain")])[1]


def _spec(env: Env) -> Sample:
    out = env.work / "spec.sql.gz"
    _, sample = env.run([_pg_dump(env, "--format=plain"), Stage(["gzip", "-9"])], stdout=out)
    env.artifacts["spec"] = out
    return _with_size(sample, _path_size(out))


def _custom(env: Env) -> Sample:
    out = env.work / "custom.dump"
    out.unlink(missing_ok=True)
    _, sample = env.run([_pg_dump(env, "--format=custom", f"--file={out}")])
    env.artifacts["fc"] = out
    return _with_size(sample, _path_size(out))


def _directory(env: Env) -> Sample:
    out = env.work / "directory.dump"
    shutil.rmtree(out, ignore_errors=True)  # pg_dump -Fd wants a new directory
    _, sample = env.run([_pg_dump(env, "--format=directory", f"--jobs={env.jobs}", f"--file={out}")])
    return _with_size(sample, _path_size(out))


# -- pgkeep backups ------------------------------------------------------------------------


def _pgkeep_backup(key: str, label: str, extra: Callable[[Env], list[str]], storage: str = "local") -> Method:
    def measure(env: Env) -> Sample:
        stage = env.pgkeep_stage(["backup", "--json", "--quiet", *extra(env)], storage)
        result, sample = env.run([stage], capture=True)
        made = json.loads(result.stdout)
        previous = env.artifacts.get(key)
        env.artifacts[key] = made["id"]
        if previous is not None:  # keep only the newest: disk space, not speed
            env.pgkeep_quiet(["delete", str(previous)], storage)
        return _with_size(sample, int(made["size"]))

    return Method(key, label, "backup", measure)


# -- restores --------------------------------------------------------------------------------


def _restore(key: str, label: str, needs: str, stages: Callable[[Env, str, object], list[Stage]]) -> Method:
    """Each measurement restores into a fresh empty database, dropped afterwards."""

    def measure(env: Env) -> Sample:
        target = f"restore_{key.replace('-', '_')}"
        env.cluster.fresh_database(target)
        try:
            return env.run(stages(env, target, env.artifacts[needs]))[1]
        finally:
            env.cluster.drop_database(target)

    return Method(key, label, "restore", measure, needs=needs)


def _gunzip_psql(env: Env, target: str, artifact: object) -> list[Stage]:
    psql = [env.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={env.conninfo(target)}"]
    return [Stage(["gunzip", "-c", str(artifact)]), Stage(psql, env=env.client_env())]


def _pg_restore(env: Env, target: str, artifact: object) -> list[Stage]:
    argv = [
        env.tool("pg_restore"),
        f"--dbname={env.conninfo(target)}",
        "--no-password",
        "--exit-on-error",
        f"--jobs={env.jobs}",
        str(artifact),
    ]
    return [Stage(argv, env=env.client_env())]


def _pgkeep_restore(jobs: bool, storage: str = "local") -> Callable[[Env, str, object], list[Stage]]:
    def stages(env: Env, target: str, artifact: object) -> list[Stage]:
        args = ["restore", str(artifact), "--yes", "--json", "--target-url", env.cluster.url(target)]
        if jobs:
            args.append(f"--jobs={env.jobs}")
        return [env.pgkeep_stage(args, storage)]

    return stages


def all_methods() -> list[Method]:
    """Every method, in report order. Restores come after the backups they read."""
    return [
        Method("floor", "`pg_dump -Fp > /dev/null` (floor)", "backup", _floor),
        Method("spec", "`pg_dump -Fp | gzip -9` (spec)", "backup", _spec),
        Method("fc", "`pg_dump -Fc`", "backup", _custom),
        Method("fd", "`pg_dump -Fd -j N`", "backup", _directory),
        _pgkeep_backup("pgkeep", "`pgkeep backup` (defaults)", lambda env: []),
        _pgkeep_backup(
            "pgkeep-dir",
            "`pgkeep backup --format directory --jobs N`",
            lambda env: ["--format", "directory", f"--jobs={env.jobs}"],
        ),
        _restore("restore-spec", "`gunzip | psql` (spec)", "spec", _gunzip_psql),
        _restore("restore-fc", "`pg_restore -j N` of `-Fc`", "fc", _pg_restore),
        _restore("pgkeep-restore", "`pgkeep restore` (defaults)", "pgkeep", _pgkeep_restore(False)),
        _restore("pgkeep-restore-j", "`pgkeep restore --jobs N`", "pgkeep", _pgkeep_restore(True)),
    ]


# Rows the ratios are taken against, per kind: (key, column heading).
REFERENCES: dict[str, list[tuple[str, str]]] = {
    "backup": [("floor", "vs floor"), ("spec", "vs spec")],
    "restore": [("restore-fc", "vs pg_restore -j"), ("restore-spec", "vs gunzip|psql")],
}
SIZE_REFERENCE = "spec"
