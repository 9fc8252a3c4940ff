"""Helpers for the WAL archive and point-in-time tests (importable as ``pitr_helpers``)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from helpers import make_context, pgkeep_free_environ, s3_env
from pgkeep.devcluster import SERVER_OS_USER, DevCluster
from pgkeep.fingerprint import Fingerprint, fingerprint
from pgkeep.pgtools import postmaster
from pgkeep.services.context import Context
from pgkeep.services.pitr import PitrOptions, PitrResult, RecoveryTarget, restore_physical
from pgkeep.wal.naming import parse_object

PGKEEP = Path(sys.executable).parent / "pgkeep"
WAIT_S = 60.0


def _runs_as_server_user(*argv: str) -> bool:
    command = ["runuser", "-u", SERVER_OS_USER, "--", *argv]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def let_server_user_run_pgkeep() -> list[Path]:
    """Make ``pgkeep`` runnable by the ``postgres`` OS user, which runs archive_command.

    Only needed when the tests run as root (otherwise the server runs as the
    test's own user). Here the interpreter of the venv lives under /root
    (pyenv), which is 0700. The fix chosen: add the *search* bit for others
    (``o+x``, never read or write) on exactly the directories on the way to
    the interpreter, its standard library and pgkeep that the postgres user
    cannot traverse. The alternatives were worse: a wrapper script cannot
    help when the interpreter itself is unreachable, and running pgkeep
    under another interpreter would test something else than what ships.
    Search-only access lets other users open files whose names they already
    know and whose own modes allow it; it lists nothing. The bits are left
    in place (other test sessions may be archiving through them); the
    directories changed are returned and printed.
    """
    if os.geteuid() != 0 or _runs_as_server_user(str(PGKEEP), "--help"):
        return []
    needed = {
        Path(os.path.realpath(sys.executable)),
        Path(sys.base_prefix) / "lib",
        Path(sysconfig.get_paths()["stdlib"]),
        Path(sysconfig.get_paths()["purelib"]),
        Path(__file__).resolve().parents[2] / "src",
    }
    changed: list[Path] = []
    for path in sorted(needed):
        for directory in [*reversed(path.parents), path]:
            if not directory.is_dir() or _runs_as_server_user("test", "-x", str(directory)):
                continue
            mode = stat.S_IMODE(directory.stat().st_mode)
            os.chmod(directory, mode | stat.S_IXOTH)
            changed.append(directory)
    if changed:
        print(f"gave the {SERVER_OS_USER} OS user search (o+x) access to: {', '.join(map(str, changed))}")
    assert _runs_as_server_user(str(PGKEEP), "--help"), f"the {SERVER_OS_USER} OS user still cannot run {PGKEEP}"
    return changed


def server_user_dir(prefix: str) -> Path:
    """A new directory under /tmp the server's OS user owns (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_OS_USER, SERVER_OS_USER)
    return path


def give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_OS_USER, SERVER_OS_USER)


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    os.chmod(path, 0o600)
    give_to_server_user(path)
    return path


def archive_conf(config: Path, extra: dict[str, str] | None = None, spool: Path | None = None) -> dict[str, str]:
    """Server settings for WAL archiving through ``pgkeep wal-push`` (asynchronous with a ``spool``)."""
    push = f"{PGKEEP} wal-push --config {config}" + (f" --spool {spool}" if spool else "")
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": f"{push} %p",
        "full_page_writes": "on",
        "max_wal_senders": "5",
        **(extra or {}),
    }


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def switch_and_wait_archived(cluster: DevCluster) -> str:
    """Close the current segment and wait until the archiver has stored it; return its name."""
    with psycopg.connect(cluster.admin_conninfo(), autocommit=True) as conn:
        conn.execute("SELECT txid_current()")  # something to switch away from
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        segment = str(row[0])

        def archived() -> bool:
            got = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            return bool(got and got[0] and got[0] >= segment)

        wait_for(archived, f"segment {segment} to be archived")
    return segment


def archiver_stats(arch: Archiving) -> tuple[int, str | None]:
    """(failed_count, last_archived_wal) of the server's archiver."""
    row = arch.cluster.query("SELECT failed_count, last_archived_wal FROM pg_stat_archiver")[0]
    return int(row[0]), row[1]


def add_rows(arch: Archiving, n: int) -> None:
    arch.cluster.execute(
        "CREATE TABLE IF NOT EXISTS events (id bigserial PRIMARY KEY, payload text NOT NULL)", dbname=APP_DB
    )
    arch.cluster.execute(
        "INSERT INTO events (payload) SELECT md5(g::text) FROM generate_series(1, %s) g", [n], dbname=APP_DB
    )


def segment_objects(storage: Path) -> dict[str, Path]:
    """The archived segments in a local archive: WAL file name -> object."""
    found = {}
    for path in storage.iterdir():
        obj = parse_object(path.name)
        if obj is not None and obj.is_segment:
            found[obj.file] = path
    return found


def server_now(cluster: DevCluster) -> Any:
    return cluster.query("SELECT clock_timestamp()")[0][0]


def run_pgkeep(
    *args: str,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    command = [str(PGKEEP), *args]
    if user:
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(
        command,
        env={**pgkeep_free_environ(), **(env or {}), "NO_COLOR": "1"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


# --- archiving clusters -----------------------------------------------------------------------

PG15_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
APP_DB = "app"


@dataclass
class Archiving:
    """A running cluster whose archive_command is ``pgkeep wal-push`` into ``storage``
    (or into the storage that ``storage_env`` names, e.g. an S3 bucket)."""

    cluster: DevCluster
    root: Path  # owned by the server's OS user: storage, config, restored data directories
    storage: Path
    config: Path
    ctx: Context
    storage_env: dict[str, str] = field(default_factory=dict)  # PGKEEP_* storage settings, when not local

    @property
    def url(self) -> str:
        return self.cluster.url(APP_DB)

    @property
    def storage_url(self) -> str:
        return self.storage_env.get("PGKEEP_STORAGE_URL", f"file://{self.storage}")

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for the pgkeep CLI on this cluster and archive."""
        return {
            "DATABASE_URL": self.url,
            "PGKEEP_CATALOG_URL": self.ctx.settings.catalog_url,
            "PGKEEP_STORAGE_URL": self.storage_url,
            "PGKEEP_STATE_DIR": str(self.ctx.settings.state_dir),
            **self.storage_env,
            **extra,
        }

    def new_dir(self, name: str) -> Path:
        """A path (not created) for a restored data directory, reachable by the server's OS user."""
        return self.root / name


def start_archiving(
    bin_dir: Path,
    tmp: Path,
    extra_conf: dict[str, str] | None = None,
    storage: dict[str, Any] | None = None,
    *,
    spool: bool = False,
) -> Archiving:
    """A cluster archiving into a local directory, or into the storage that ``storage``
    settings describe (``make_settings`` overrides, ``storage_url`` included);
    asynchronously through ``<root>/spool`` if ``spool``."""
    root = server_user_dir("pgkeep-pitr-")
    local = root / "archive"
    local.mkdir(mode=0o700)
    give_to_server_user(local)
    overrides = storage or {"storage_url": f"file://{local}"}
    storage_env = s3_env(overrides) if storage else {}
    config = write_env(root / "pgkeep.env", s3_env(overrides))
    conf = archive_conf(config, extra_conf, root / "spool" if spool else None)
    cluster = DevCluster.start(bin_dir, extra_conf=conf)
    try:
        cluster.create_database(APP_DB)
        ctx = make_context(tmp, cluster.url(APP_DB), pg_bin_dir=bin_dir, **overrides)
    except BaseException:
        cluster.stop()
        raise
    return Archiving(cluster, root, local, config, ctx, storage_env)


def stop_archiving(arch: Archiving) -> None:
    arch.ctx.close()
    arch.cluster.stop()
    shutil.rmtree(arch.root, ignore_errors=True)


def pgbench(arch: Archiving, *args: str) -> None:
    """Run the cluster's own pgbench against the app database (socket, as postgres)."""
    subprocess.run(
        [
            str(arch.cluster.bin_dir / "pgbench"),
            "-h",
            str(arch.cluster.socket_dir),
            "-p",
            str(arch.cluster.port),
            "-U",
            "postgres",
            *args,
            APP_DB,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@contextmanager
def restored(
    arch: Archiving, name: str, *, bin_dir: Path = PG15_BIN_DIR, backup_id: str | None = None
) -> Iterator[PitrResult]:
    """A point-in-time restore to the end of the archive, started; stopped and removed afterwards."""
    data_dir = arch.new_dir(name)
    options = PitrOptions(data_dir, RecoveryTarget.parse(latest=True), backup_id=backup_id, start=True)
    try:
        yield restore_physical(arch.ctx, options)
    finally:
        postmaster.stop(bin_dir, data_dir, "postgres", mode="immediate")
        shutil.rmtree(data_dir, ignore_errors=True)


def restored_fingerprint(arch: Archiving, result: PitrResult) -> Fingerprint:
    """The app database of a restored, running cluster."""
    return fingerprint(
        f"host=127.0.0.1 port={result.port} user=postgres dbname={APP_DB} password={arch.cluster.superuser_password}"
    )


@contextmanager
def storage_outage(arch: Archiving) -> Iterator[str]:
    """The local archive made unwritable for the server's OS user, and a segment switched
    whose push fails; yields its name (PostgreSQL keeps it ready). Writable again after."""
    failures_before, _ = archiver_stats(arch)
    os.chmod(arch.storage, 0o500)  # the server's OS user owns it: it can no longer create files there
    try:
        add_rows(arch, 1000)
        pending = str(arch.cluster.query("SELECT pg_walfile_name(pg_switch_wal())")[0][0])
        wait_for(lambda: archiver_stats(arch)[0] > failures_before, "the archiver to report a failed wal-push")
        assert (arch.cluster.data_dir / "pg_wal" / "archive_status" / f"{pending}.ready").exists()
        assert pending not in segment_objects(arch.storage)
        yield pending
    finally:
        os.chmod(arch.storage, 0o700)
