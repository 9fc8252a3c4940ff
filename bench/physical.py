"""Physical backups in the benchmark: WAL archiving for each tool, and pgBackRest as the reference.

Both physical methods back up the whole bench cluster, and both wait for
WAL archiving before they call a backup complete (pg_basebackup ``-X none``
under pgkeep; pgBackRest's archive check). So each is measured with its own
tool's archiver, as its users would run it: ``pgkeep wal-push`` into a
local archive, or ``pgbackrest archive-push`` into pgBackRest's repository.
Between physical measurements the cluster's archive_command is the idle one
(see :data:`bench.cluster.IDLE_ARCHIVE_COMMAND`).

Everything the server's OS user touches (pgBackRest's config, repository,
log, lock and spool paths, pgkeep's WAL archive and its settings file)
lives in one directory it owns inside the work dir. When the bench runs as
root, the server and both archivers run as ``postgres`` (archive_command is
run by the server), and so does pgBackRest's backup, which reads the data
directory.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from bench.cluster import IDLE_ARCHIVE_COMMAND, BenchCluster
from bench.procs import CommandFailed, run_quiet
from pgkeep.devcluster import SERVER_OS_USER, log_tail

STANZA = "bench"
ARCHIVE_WAIT_S = 60.0
SWITCH_ATTEMPTS = 3


def as_server_user(argv: Sequence[str]) -> list[str]:
    """``argv`` run as the server's OS user (``runuser`` when we are root; as is otherwise)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVER_OS_USER, "--", *argv]
    return list(argv)


def _server_user_can(*argv: str) -> bool:
    result = subprocess.run(as_server_user(argv), capture_output=True, check=False, stdin=subprocess.DEVNULL)
    return result.returncode == 0


def _unreachable_dirs(path: Path) -> list[Path]:
    """The directories on the way to ``path`` that the server's OS user cannot traverse."""
    return [d for d in [*reversed(path.parents), path] if d.is_dir() and not _server_user_can("test", "-x", str(d))]


def give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_OS_USER, SERVER_OS_USER)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    give_to_server_user(path)


class SetupError(RuntimeError):
    """A physical tool cannot be measured here; the message says why and how to fix it."""


# -- switching the archiver ------------------------------------------------------------------


@dataclass
class Archiver:
    """The bench cluster's archive_command, switched per physical measurement."""

    cluster: BenchCluster
    current: str = IDLE_ARCHIVE_COMMAND

    def use(self, command: str, landed: Callable[[str], bool]) -> None:
        """Archive through ``command`` from now on; return once a segment reached its archive.

        The archiver picks up a reload asynchronously: until a freshly
        switched segment is seen where ``command`` stores it, the backup's
        own WAL might still go to the previous command (pgBackRest's check
        would then wait for WAL that never arrives).
        """
        self._set(command)
        for _ in range(SWITCH_ATTEMPTS):
            segment = self._switch_and_wait()
            if landed(segment):
                return
            time.sleep(0.2)
        raise SetupError(f"archive_command {command!r} archived {segment}, but it is not in the archive")

    def idle(self) -> None:
        self._set(IDLE_ARCHIVE_COMMAND)

    def _set(self, command: str) -> None:
        if command == self.current:
            return
        dev = self.cluster.dev
        dev.execute(sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(command)))
        dev.execute("SELECT pg_reload_conf()")
        self.current = command

    def _switch_and_wait(self) -> str:
        dev = self.cluster.dev
        dev.execute("SELECT txid_current()")  # some WAL to switch away from
        segment = str(dev.query("SELECT pg_walfile_name(pg_switch_wal())")[0][0])
        deadline = time.monotonic() + ARCHIVE_WAIT_S
        while True:
            last, failed = dev.query("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")[0]
            if last and last >= segment:
                return segment
            if time.monotonic() > deadline:
                raise SetupError(
                    f"segment {segment} was not archived within {ARCHIVE_WAIT_S:.0f} s by "
                    f"archive_command {self.current!r} (last failed: {failed})\n"
                    f"--- tail of the server log ---\n{log_tail(dev.log_file)}"
                )
            time.sleep(0.05)


# -- pgkeep's archive ------------------------------------------------------------------------


@dataclass(frozen=True)
class PgkeepArchive:
    """``pgkeep wal-push`` into a local archive the server's OS user owns."""

    exe: Path
    config: Path
    store: Path

    @classmethod
    def setup(cls, root: Path) -> PgkeepArchive:
        exe = Path(sys.executable).with_name("pgkeep")
        if not _server_user_can(str(exe), "--help"):
            blocked = _unreachable_dirs(Path(os.path.realpath(sys.executable)))
            raise SetupError(
                f"the {SERVER_OS_USER} OS user cannot run {exe}, and the server runs archive_command "
                "(pgkeep wal-push) as that user"
                + (f"; it cannot traverse {', '.join(map(str, blocked))}" if blocked else "")
                + ". Give it search access (chmod o+x) on those directories, as tests/pitr does."
            )
        store = root / "pgkeep-wal"
        store.mkdir(mode=0o700)
        give_to_server_user(store)
        config = root / "pgkeep-wal.env"
        # Only the storage: wal-push runs with the server's environment and these settings.
        _write_private(config, f"PGKEEP_STORAGE_URL=file://{store}\n")
        return cls(exe, config, store)

    @property
    def command(self) -> str:
        return f"{shlex.quote(str(self.exe))} wal-push --config {shlex.quote(str(self.config))} %p"

    def landed(self, segment: str) -> bool:
        return any(self.store.glob(f"wal-{segment}.*"))


# -- pgBackRest --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgBackRest:
    """pgBackRest with a private config file and a repository in the work dir."""

    exe: str
    config: Path
    repo: Path
    process_max: int

    @classmethod
    def setup(cls, cluster: BenchCluster, root: Path, process_max: int) -> PgBackRest:
        exe = shutil.which("pgbackrest")
        if exe is None:
            raise SetupError("pgbackrest is not installed (the physical reference): apt-get install pgbackrest")
        home = root / "pgbackrest"
        paths = {name: home / name for name in ("repo", "log", "lock", "spool")}
        for path in [home, *paths.values()]:
            path.mkdir(mode=0o700)
            give_to_server_user(path)
        dev = cluster.dev
        config = home / "pgbackrest.conf"
        # Backups as fast as pgBackRest goes: zstd at its default level (3), one process
        # per CPU, an immediate checkpoint (as pgkeep's pg_basebackup --checkpoint=fast).
        # No retention here: its automatic expire would delete inside the measured time;
        # the bench expires old backups unmeasured instead (pgkeep's deletes are too).
        _write_private(
            config,
            "[global]\n"
            f"repo1-path={paths['repo']}\n"
            f"log-path={paths['log']}\n"
            f"lock-path={paths['lock']}\n"
            f"spool-path={paths['spool']}\n"
            "compress-type=zst\n"
            f"process-max={process_max}\n"
            "start-fast=y\n"
            "log-level-console=error\n"
            "log-level-file=info\n"
            "\n"
            f"[{STANZA}]\n"
            f"pg1-path={dev.data_dir}\n"
            f"pg1-port={dev.port}\n"
            f"pg1-socket-path={dev.socket_dir}\n"  # local socket, trust auth: no password
            f"pg1-user={dev.superuser}\n",
        )
        tool = cls(exe, config, paths["repo"], process_max)
        tool.run_quiet("stanza-create")
        return tool

    def argv(self, *args: str) -> list[str]:
        return as_server_user([self.exe, f"--config={self.config}", f"--stanza={STANZA}", *args])

    def run_quiet(self, *args: str) -> str:
        # cwd: the server user's own directory (ours may be unreadable to it).
        return run_quiet(self.argv(*args), cwd=self.config.parent)

    @property
    def command(self) -> str:
        return f"{shlex.quote(self.exe)} --config={shlex.quote(str(self.config))} --stanza={STANZA} archive-push %p"

    def landed(self, segment: str) -> bool:
        return any((self.repo / "archive" / STANZA).glob(f"*/{segment[:16]}/{segment}-*"))

    def newest_backup(self) -> dict[str, object]:
        """The newest backup's entry of ``pgbackrest info --output=json``."""
        info = json.loads(self.run_quiet("info", "--output=json"))
        backups = info[0]["backup"] if info else []
        if not backups:
            raise CommandFailed("pgbackrest info lists no backup")
        newest: dict[str, object] = backups[-1]
        return newest

    def expire_older(self) -> None:
        """Keep only the newest full backup (and the WAL it needs): disk space, not speed."""
        self.run_quiet("expire", "--repo1-retention-full=1")


# -- all of it -----------------------------------------------------------------------------------


@dataclass
class Physical:
    """What the physical methods need; a tool that cannot run here carries its reason instead."""

    archiver: Archiver
    pgkeep: PgkeepArchive | SetupError
    pgbackrest: PgBackRest | SetupError

    @classmethod
    def setup(cls, cluster: BenchCluster, work: Path, process_max: int, tools: set[str]) -> Physical:
        """Prepare ``tools`` (``pgkeep``, ``pgbackrest``); the others stay unset with a reason."""
        blocked = _unreachable_dirs(work)
        if blocked:
            reason = SetupError(
                f"the {SERVER_OS_USER} OS user cannot reach the work dir {work} "
                f"(it cannot traverse {', '.join(map(str, blocked))}); use a --work-dir it can reach"
            )
            return cls(Archiver(cluster), reason, reason)
        root = work / "server-user"
        # A reused --work-dir: an old repository's stanza belongs to another cluster.
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(mode=0o700)
        give_to_server_user(root)
        unselected = SetupError("not selected")
        pgkeep: PgkeepArchive | SetupError = unselected
        pgbackrest: PgBackRest | SetupError = unselected
        if "pgkeep" in tools:
            try:
                pgkeep = PgkeepArchive.setup(root)
            except (SetupError, CommandFailed) as exc:
                pgkeep = SetupError(str(exc))
        if "pgbackrest" in tools:
            try:
                pgbackrest = PgBackRest.setup(cluster, root, process_max)
            except (SetupError, CommandFailed) as exc:
                pgbackrest = SetupError(str(exc))
        return cls(Archiver(cluster), pgkeep, pgbackrest)
