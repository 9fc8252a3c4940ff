"""What is measured: each method is one backup or restore, run as subprocesses.

A method turns the per-data-set :class:`Env` into one :class:`Sample`. The
reference rows (floor, spec, pg_dump -Fc/-Fd, gunzip | psql, pg_restore -j,
and pgBackRest for physical backups) sit beside pgkeep's own rows so every
ratio comes from the same run.

Adding a method is a few lines in :func:`all_methods`. pgkeep methods name a
storage target (see :mod:`bench.storage`): ``pgkeep-s3`` is the default
backup with ``storage="s3"``. Physical methods name the tool whose
archiver they need (see :mod:`bench.physical`).
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
from bench.physical import PgBackRest, PgkeepArchive, Physical, SetupError
from bench.procs import RunResult, Stage, cpu_of, run_pipeline, run_quiet
from pgkeep.pipeline.codecs import CodecOptions

# Logical backups, restores of them, and physical backups (whole cluster), each its own table.
Kind = Literal["backup", "restore", "physical"]
KINDS: tuple[Kind, ...] = ("backup", "restore", "physical")
REAP_GRACE_S = 0.2  # lets the postmaster reap the last backend before the CPU sample


@dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_s: float  # client side: the whole process tree
    server_cpu_s: float  # every PostgreSQL process of the cluster
    size_bytes: int | None  # backups: bytes stored
    own_rss: int | None  # pgkeep's own process (VmHWM)
    tree_rss: int  # the largest VmHWM of any client process (and their children)
    # CPU seconds used meanwhile by processes that are neither ours nor the server's: on a
    # shared machine this is the noise that makes wall times longer than CPU times.
    others_cpu_s: float = 0.0
    # CPU seconds of the storage server (SeaweedFS for S3 methods; 0 for local disk).
    storage_cpu_s: float = 0.0


@dataclass
class Env:
    """Everything a method needs for one data set."""

    cluster: BenchCluster
    dbname: str
    work: Path
    jobs: int
    # storage target name -> pgkeep env additions, or why that target is unavailable
    storage_env: dict[str, dict[str, str] | str]
    artifacts: dict[str, object] = field(default_factory=dict)
    server_cpu: ServerCpu | None = None
    storage_pids: list[int] = field(default_factory=list)  # storage servers: their CPU is not noise
    physical: Physical | None = None

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
        target = self.storage_env.get(storage, f"storage target {storage!r} was not set up")
        if isinstance(target, str):
            raise RuntimeError(target)
        env.update(target)
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
        storage_before = cpu_of(self.storage_pids)
        result = run_pipeline(stages, stdout=stdout, capture=capture)
        busy = machine_busy_s() - busy_before
        storage = cpu_of(self.storage_pids) - storage_before
        time.sleep(REAP_GRACE_S)
        server = self.server_cpu.sample() - before
        others = max(0.0, busy - result.cpu_s - server - storage)
        sample = Sample(result.wall_s, result.cpu_s, server, None, result.own_rss, result.tree_maxrss, others, storage)
        return result, sample

    def pgkeep_archive(self) -> PgkeepArchive:
        tool = self.physical.pgkeep if self.physical else SetupError("physical methods were not set up")
        if isinstance(tool, SetupError):
            raise tool
        return tool

    def pgbackrest(self) -> PgBackRest:
        tool = self.physical.pgbackrest if self.physical else SetupError("physical methods were not set up")
        if isinstance(tool, SetupError):
            raise tool
        return tool


@dataclass(frozen=True)
class Method:
    key: str
    label: str  # the command, as shown in the report
    kind: Kind
    measure: Callable[[Env], Sample]
    needs: str | None = None  # restores: the backup method whose output they read
    storage: str | None = None  # pgkeep methods: the storage target (bench.storage) they write to
    archiver: str | None = None  # physical methods: whose archive_command they run with (bench.physical)


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


def _custom_zstd(env: Env) -> Sample:
    """What pgkeep's default backup does, in C tools only: its lower bound on this machine."""
    out = env.work / "custom-zstd.dump.zst"
    level = CodecOptions().zstd_level
    stages = [_pg_dump(env, "--format=custom", "--compress=0"), Stage(["zstd", "-q", f"-{level}", f"-T{env.jobs}"])]
    _, sample = env.run(stages, stdout=out)
    return _with_size(sample, _path_size(out))


# -- pgkeep backups ------------------------------------------------------------------------


def _pgkeep_backup(
    key: str, label: str, extra: Callable[[Env], list[str]], storage: str = "local", kind: Kind = "backup"
) -> Method:
    def measure(env: Env) -> Sample:
        stage = env.pgkeep_stage(["backup", "--json", "--quiet", *extra(env)], storage)
        result, sample = env.run([stage], capture=True)
        made = json.loads(result.stdout)
        previous = env.artifacts.get(key)
        env.artifacts[key] = made["id"]
        if previous is not None:  # keep only the newest: disk space, not speed
            env.pgkeep_quiet(["delete", str(previous)], storage)
        return _with_size(sample, int(made["size"]))

    if kind == "physical":
        return Method(key, label, kind, _archiving("pgkeep", measure), storage=storage, archiver="pgkeep")
    return Method(key, label, kind, measure, storage=storage)


# -- physical backups ------------------------------------------------------------------------


def _archiving(tool: str, measure: Callable[[Env], Sample]) -> Callable[[Env], Sample]:
    """Run ``measure`` with ``tool``'s archive_command in place, and a clean start.

    The switch and a CHECKPOINT happen before the clock starts: a backup's
    own (fast) checkpoint must not pay for the dirty buffers of the restore
    measured before it.
    """

    def measure_archived(env: Env) -> Sample:
        archive: PgkeepArchive | PgBackRest = env.pgkeep_archive() if tool == "pgkeep" else env.pgbackrest()
        assert env.physical is not None
        try:
            env.physical.archiver.use(archive.command, archive.landed)
            env.cluster.dev.execute("CHECKPOINT")
            return measure(env)
        finally:
            # Also after a failed switch: a failing archive_command would keep WAL piling up.
            env.physical.archiver.idle()

    return measure_archived


def _pgbackrest(env: Env) -> Sample:
    tool = env.pgbackrest()
    _, sample = env.run([Stage(tool.argv("backup", "--type=full"), cwd=tool.config.parent)])
    newest = tool.newest_backup()
    info = newest["info"]
    assert isinstance(info, dict)
    tool.expire_older()
    return _with_size(sample, int(info["repository"]["size"]))


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


def _pgkeep_restore(
    jobs: bool, storage: str = "local", extra: tuple[str, ...] = ()
) -> Callable[[Env, str, object], list[Stage]]:
    def stages(env: Env, target: str, artifact: object) -> list[Stage]:
        args = ["restore", str(artifact), "--yes", "--json", "--target-url", env.cluster.url(target), *extra]
        if jobs:
            args.append(f"--jobs={env.jobs}")
        return [env.pgkeep_stage(args, storage)]

    return stages


def all_methods() -> list[Method]:
    """Every method, in report order. Restores come after the backups they read."""
    physical_pgkeep = _pgkeep_backup(
        "pgkeep-physical", "`pgkeep backup --kind physical`", lambda env: ["--kind", "physical"], kind="physical"
    )
    return [
        Method("floor", "`pg_dump -Fp > /dev/null` (floor)", "backup", _floor),
        Method("spec", "`pg_dump -Fp | gzip -9` (spec)", "backup", _spec),
        Method("fc", "`pg_dump -Fc`", "backup", _custom),
        Method("fd", "`pg_dump -Fd -j N`", "backup", _directory),
        Method(
            "fc-zstd",
            f"`pg_dump -Fc -Z0 | zstd -{CodecOptions().zstd_level} -T N` (pgkeep's work in C tools)",
            "backup",
            _custom_zstd,
        ),
        _pgkeep_backup("pgkeep", "`pgkeep backup` (defaults)", lambda env: []),
        _pgkeep_backup(
            "pgkeep-dir",
            "`pgkeep backup --format directory --jobs N`",
            lambda env: ["--format", "directory", f"--jobs={env.jobs}"],
        ),
        _pgkeep_backup("pgkeep-s3", "`pgkeep backup` (defaults) to S3 (SeaweedFS)", lambda env: [], storage="s3"),
        _restore("restore-spec", "`gunzip | psql` (spec)", "spec", _gunzip_psql),
        _restore("restore-fc", "`pg_restore -j N` of `-Fc`", "fc", _pg_restore),
        _restore("pgkeep-restore", "`pgkeep restore` (defaults)", "pgkeep", _pgkeep_restore(False)),
        _restore("pgkeep-restore-j", "`pgkeep restore --jobs N`", "pgkeep", _pgkeep_restore(True)),
        _restore(
            "pgkeep-restore-pglz",
            "`pgkeep restore --toast-compression server` (pglz, as the reference rows)",
            "pgkeep",
            _pgkeep_restore(False, extra=("--toast-compression", "server")),
        ),
        Method(
            "pgbackrest",
            "pgBackRest full backup (zst, process-max N)",
            "physical",
            _archiving("pgbackrest", _pgbackrest),
            archiver="pgbackrest",
        ),
        physical_pgkeep,
    ]


# Rows the ratios are taken against, per kind: (key, column heading).
REFERENCES: dict[str, list[tuple[str, str]]] = {
    "backup": [("floor", "vs floor"), ("spec", "vs spec")],
    "restore": [("restore-fc", "vs pg_restore -j"), ("restore-spec", "vs gunzip|psql")],
    # Physical backups copy the whole cluster's files: they compare with each other only.
    "physical": [("pgbackrest", "vs pgBackRest")],
}
# The row whose output size the "size vs" column divides by, per kind.
SIZE_REFERENCES: dict[str, tuple[str, str]] = {
    "backup": ("spec", "size vs spec"),
    "physical": ("pgbackrest", "size vs pgBackRest"),
}


@dataclass(frozen=True)
class Target:
    """One of issue 7's targets: ``key``'s median over ``baseline``'s is at most ``at_most``."""

    key: str
    baseline: str
    what: str
    at_most: float
    measure: Literal["wall_s", "size_bytes"] = "wall_s"


TARGETS: list[Target] = [
    Target("pgkeep", "floor", "logical backup, wall time vs the floor", 1.2),
    Target("pgkeep", "spec", "logical backup, wall time vs the spec's pipeline", 0.1),
    Target("pgkeep", "spec", "logical backup, output size vs the spec's pipeline", 0.9, "size_bytes"),
    Target("pgkeep-s3", "pgkeep", "backup to S3 (SeaweedFS on loopback) vs the same backup to local disk", 1.25),
    Target("pgkeep-restore", "restore-fc", "restore, wall time vs `pg_restore -j N`", 1.1),
    Target("pgkeep-restore", "restore-spec", "restore, wall time vs `gunzip | psql`", 1.0),
    Target("pgkeep-physical", "pgbackrest", "physical backup, wall time vs pgBackRest's full backup", 1.0),
]
