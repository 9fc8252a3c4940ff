"""The benchmark's own PostgreSQL cluster, and how clients connect to it.

Every client (pg_dump, psql, pgkeep) connects over TCP with a password, as
a real deployment would; the password reaches them through a passfile in
``PGPASSFILE``, never through argv or a URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from pgkeep.devcluster import DevCluster

PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "bench-secret"  # noqa: S105 - a throwaway local cluster

# Tuned for bulk loading and dumping, like a small production server, except
# durability: DevCluster runs with fsync=off, synchronous_commit=off and
# full_page_writes=off unless --fsync puts them back (restores then pay for it).
LOAD_SETTINGS = {
    "shared_buffers": "512MB",
    "maintenance_work_mem": "256MB",
    "work_mem": "32MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "max_parallel_maintenance_workers": "2",
    # Autovacuum on a freshly restored database would compete with the next
    # measurement; the data sets are vacuumed and analyzed explicitly instead.
    "autovacuum": "off",
}
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
# Physical backups need WAL archiving, and archive_mode only changes with a restart. Between
# physical measurements the archiver discards segments: a real archive_command (one process
# per 16 MB segment) would otherwise run beside the logical restores, which write their
# data through WAL, and slow them by more than the method being measured. Each physical
# method switches to its own tool's archive_command while it runs (bench/physical.py).
IDLE_ARCHIVE_COMMAND = "/bin/true"
ARCHIVE_SETTINGS = {"archive_mode": "on", "archive_command": IDLE_ARCHIVE_COMMAND}


@dataclass
class BenchCluster:
    dev: DevCluster
    passfile: Path
    settings: dict[str, str]

    @classmethod
    def start(cls, work: Path, *, durable: bool = False) -> BenchCluster:
        settings = {**LOAD_SETTINGS, **ARCHIVE_SETTINGS}
        if durable:
            settings.update(DURABLE_SETTINGS)
        dev = DevCluster.start(PG_BIN_DIR, superuser_password=PASSWORD, extra_conf=settings)
        passfile = work / "pgpass"
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"*:*:*:*:{PASSWORD}\n")
        effective = {
            name: value
            for name, value in dev.query(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                [[*settings, *DURABLE_SETTINGS, "wal_level", "max_wal_senders"]],
            )
        }
        return cls(dev=dev, passfile=passfile, settings=dict(sorted(effective.items())))

    def stop(self) -> None:
        self.dev.stop()

    # -- how clients connect ---------------------------------------------------------

    def conninfo(self, dbname: str) -> str:
        """libpq keyword string over TCP, without the password (safe for argv)."""
        return f"host={self.dev.host} port={self.dev.port} user={self.dev.superuser} dbname={dbname}"

    def url(self, dbname: str) -> str:
        """postgresql:// URL without the password (for pgkeep's settings and --target-url)."""
        return f"postgresql://{self.dev.superuser}@{self.dev.host}:{self.dev.port}/{dbname}"

    def client_env(self) -> dict[str, str]:
        """The caller's environment minus PG* and PGKEEP_* variables, plus our passfile."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # PGKEEP_* too
        env["PGPASSFILE"] = str(self.passfile)
        env["LC_ALL"] = "C.UTF-8"
        return env

    # -- databases -----------------------------------------------------------------------

    def fresh_database(self, name: str) -> None:
        """An empty database from template0 (dropping any leftover of the same name)."""
        self.dev.drop_database(name)
        self.dev.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        self.dev.drop_database(name)

    def server_version(self) -> str:
        return str(self.dev.query("SHOW server_version")[0][0])

    def database_size(self, dbname: str) -> int:
        return int(self.dev.query("SELECT pg_database_size(%s)", [dbname])[0][0])

    def cluster_size(self) -> int:
        """Bytes of every database: about what a physical backup reads (pg_wal aside)."""
        return int(self.dev.query("SELECT sum(pg_database_size(oid)) FROM pg_database")[0][0])


class ServerCpu:
    """CPU seconds used by all server processes between two samples.

    Backends that exit in between are counted through the postmaster's
    cutime/cstime (it reaps them), so short-lived sessions are not lost;
    a child's own cutime/cstime (the archiver's archive_command) counts too,
    and moves into the postmaster's when that child exits, so nothing is
    counted twice.
    """

    def __init__(self, data_dir: Path) -> None:
        self.postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        self.tick = os.sysconf("SC_CLK_TCK")

    def _stat(self, pid: int) -> list[str] | None:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return raw[raw.rindex(")") + 2 :].split()

    def sample(self) -> float:
        ticks = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            fields = self._stat(int(entry.name))
            if fields is None:
                continue
            pid = int(entry.name)
            # fields[1] is ppid; utime, stime, cutime, cstime are fields 11..14 here. A child's
            # cutime/cstime count what it reaped: the archiver's archive_command runs
            # (pgkeep wal-push, pgbackrest archive-push) are server-side work too.
            if pid == self.postmaster or int(fields[1]) == self.postmaster:
                ticks += sum(int(f) for f in fields[11:15])
        return ticks / self.tick


def machine_busy_s() -> float:
    """CPU seconds all processes on the machine have used since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
