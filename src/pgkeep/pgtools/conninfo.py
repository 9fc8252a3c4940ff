"""Connection targets: parse libpq URLs once, keep the password apart.

The password never goes on a command line: child processes get the
connection string without it plus a private, unnamed passfile (see :func:`client_env`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import psycopg.conninfo

from pgkeep.config import check_conninfo
from pgkeep.fsutil import create_private_file

CONNECT_TIMEOUT_S = "10"


@dataclass(frozen=True)
class Target:
    """A database to back up or restore into."""

    params: dict[str, str]  # libpq keywords, without the password
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str, setting: str = "DATABASE_URL") -> Target:
        params = check_conninfo(url, setting)
        password = params.pop("password", None)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        return cls(params=params, password=password)

    @property
    def dbname(self) -> str:
        """The database name as libpq resolves it (dbname, PGDATABASE, user, OS user)."""
        return (
            self.params.get("dbname")
            or os.environ.get("PGDATABASE")
            or self.params.get("user")
            or os.environ.get("PGUSER")
            or _os_user()
        )

    def with_dbname(self, dbname: str) -> Target:
        return Target(params={**self.params, "dbname": dbname}, password=self.password)

    def with_session_settings(self, **settings: str) -> Target:
        """The same target, every session of which starts with ``settings`` (``-c name=value``).

        They are added to the connection's options, or to PGOPTIONS's when the
        URL has none (libpq reads PGOPTIONS only when the options are unset).
        Values must not contain spaces or backslashes.
        """
        if any(" " in value or "\\" in value for value in settings.values()):
            raise ValueError("a session setting's value must not contain spaces or backslashes")
        base = self.params.get("options", os.environ.get("PGOPTIONS", ""))
        added = " ".join(f"-c {name}={value}" for name, value in settings.items())
        return Target(params={**self.params, "options": f"{base} {added}".strip()}, password=self.password)

    def conninfo(self) -> str:
        """Connection string *without* the password: safe for argv and messages."""
        return psycopg.conninfo.make_conninfo(**self.params)

    def connect_conninfo(self) -> str:
        """Connection string with the password, for in-process psycopg connections only."""
        extra = {"password": self.password} if self.password is not None else {}
        return psycopg.conninfo.make_conninfo(**self.params, **extra)

    def describe(self) -> str:
        """Human description: user@host:port/dbname, never the password."""
        host = self.params.get("host") or os.environ.get("PGHOST") or "local socket"
        port = self.params.get("port") or os.environ.get("PGPORT") or "5432"
        user = self.params.get("user") or os.environ.get("PGUSER") or _os_user()
        return f"{user}@{host}:{port}/{self.dbname}"

    def connect(self, **kwargs: object) -> psycopg.Connection:
        return psycopg.connect(self.connect_conninfo(), **kwargs)  # type: ignore[arg-type]

    def error_text(self, exc: BaseException) -> str:
        """A driver error as one line (libpq adds its hints on further lines), without the password."""
        return " ".join(self.scrub(str(exc)).split())  # scrubbed first: joining may change the password's spaces

    def scrub(self, text: str) -> str:
        """Remove the password from a message that might echo it."""
        # Very short passwords would garble every message and are guessable anyway.
        if self.password and len(self.password) >= 4:
            text = text.replace(self.password, "********")
        return text


def _os_user() -> str:
    import getpass

    return getpass.getuser()


def _passfile_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def client_env(target: Target, base: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Environment for a libpq client process connecting to ``target``.

    The password goes into a 0600 passfile that has no name: it is created in
    a private temporary directory, and the file and directory are removed
    before any child starts. The child reaches it through an open descriptor,
    ``PGPASSFILE=/dev/fd/N``, which it must inherit (:func:`passed_fds`;
    :class:`pgkeep.pgtools.process.Child` does that). So nothing is left on
    disk even if pgkeep is killed with SIGKILL, and /proc/<pid>/cmdline and
    the environment never show the password. (A password with a newline
    cannot be stored in a passfile; it falls back to PGPASSWORD, which only
    the same OS user can read.)
    """
    env = dict(os.environ if base is None else base)
    env.pop("PGPASSWORD", None)
    if target.password is None:
        yield env
        return
    if "\n" in target.password or "\r" in target.password:
        env["PGPASSWORD"] = target.password
        yield env
        return
    fd = _unnamed_passfile("*:*:*:*:" + _passfile_escape(target.password) + "\n")
    try:
        env["PGPASSFILE"] = f"{_FD_PATH}{fd}"
        yield env
    finally:
        os.close(fd)


_FD_PATH = "/dev/fd/"


def _unnamed_passfile(content: str) -> int:
    """A descriptor of a 0600 file holding ``content`` whose name is already gone."""
    tmpdir = Path(tempfile.mkdtemp(prefix="pgkeep-pass-"))
    path = tmpdir / "pgpass"
    try:
        fd = create_private_file(path)
        try:
            os.write(fd, content.encode("utf-8"))
        except BaseException:
            os.close(fd)
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):
            tmpdir.rmdir()
    return fd


def passed_fds(env: dict[str, str]) -> tuple[int, ...]:
    """The descriptors a child started with ``env`` (from :func:`client_env`) must inherit."""
    passfile = env.get("PGPASSFILE", "")
    if passfile.startswith(_FD_PATH) and passfile[len(_FD_PATH) :].isdigit():
        return (int(passfile[len(_FD_PATH) :]),)
    return ()
