"""Starting and stopping a restored cluster, as the server's OS user.

PostgreSQL refuses to run as root: when pgkeep runs as root the data
directory is handed to ``os_user`` and pg_ctl runs through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

from pgkeep.errors import ConfigError, RestoreFailedError

LOG_TAIL_CHARS = 4000


def as_root() -> bool:
    return os.geteuid() == 0


def server_user(os_user: str | None) -> str | None:
    """The OS user that must own the data directory: ``os_user`` when root (default postgres), else None."""
    if not as_root():
        return None
    user = os_user or "postgres"
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(
            f"PostgreSQL cannot run as root and the OS user {user!r} does not exist",
            hint="pass --os-user with the OS user that runs PostgreSQL on this machine",
        ) from None
    return user


def chown_tree(path: Path, user: str | None) -> None:
    """Give ``path`` and everything below it to ``user`` (no-op for None)."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    uid, gid = entry.pw_uid, entry.pw_gid
    os.lchown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), uid, gid)


def _command(argv: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _env() -> dict[str, str]:
    # The caller's PG* variables (PGDATA, PGPORT, ...) must not leak into the restored cluster.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C")
    return env


def run_as(argv: list[str], user: str | None, *, cwd: Path | None = None, timeout: float = 120) -> str:
    """Run a server binary (as ``user`` when root); RestoreFailedError with its output if it fails."""
    result = subprocess.run(
        _command(argv, user),
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-LOG_TAIL_CHARS:]
        raise RestoreFailedError(f"{Path(argv[0]).name} failed (exit {result.returncode}): {detail}")
    return result.stdout


def start(bin_dir: Path, data_dir: Path, log_file: Path, user: str | None) -> None:
    """Start the server in the background (``pg_ctl start`` without waiting: recovery may take long)."""
    run_as([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log_file), "-W", "start"], user, cwd=data_dir)


def stop(bin_dir: Path, data_dir: Path, user: str | None, mode: str = "fast") -> None:
    """Stop the server if it runs; ignores a server that is not running."""
    if not (data_dir / "postmaster.pid").exists():
        return
    run_as([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", mode, "-w", "stop"], user, cwd=data_dir)


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def server_bin_dir(major: int, configured: Path | None) -> Path:
    """A directory with ``postgres`` and ``pg_ctl`` of exactly ``major`` (a data directory runs only there)."""
    from pgkeep.pgtools.binaries import DEBIAN_ROOT, tool_version

    candidates = []
    if configured is not None:
        candidates.append(configured)
    candidates.append(DEBIAN_ROOT / str(major) / "bin")
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        info = tool_version(directory / "postgres") if (directory / "postgres").exists() else None
        if info is not None and info[1] == major and (directory / "pg_ctl").exists():
            return directory
    raise ConfigError(
        f"no PostgreSQL {major} server binaries (postgres, pg_ctl) found to start the restored cluster",
        hint=f"install postgresql-{major}, or set PGKEEP_PG_BIN_DIR to its bin directory",
    )
