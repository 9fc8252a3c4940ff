"""Running PostgreSQL client processes: argument lists, no shell, no orphans.

Each child gets ``PR_SET_PDEATHSIG = SIGKILL``: if pgkeep dies, even by
SIGKILL, the kernel kills its pg_dump/pg_restore so nothing keeps writing.
Danger: the signal fires when the *thread* that forked the child exits, so a
child must be started and waited for by the same long-lived thread.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import IO

from pgkeep.pgtools.conninfo import passed_fds

PR_SET_PDEATHSIG = 1
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
STDERR_TAIL_LINES = 20

_libc = ctypes.CDLL(None, use_errno=True)
_parent_pid = os.getpid


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal comes.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def enlarge_pipe(stream: IO[bytes] | None) -> None:
    """Grow a pipe's kernel buffer to 1 MiB: fewer wake-ups on the hot path."""
    if stream is not None:
        enlarge_pipe_fd(stream.fileno())


def enlarge_pipe_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)


class StderrTail:
    """Collects the last lines of a child's stderr in a background thread."""

    def __init__(self, stream: IO[bytes], scrub: Callable[[str], str]) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._scrub = scrub
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._lines.append(self._scrub(line))
        stream.close()

    def text(self, timeout: float = 5.0) -> str:
        self._thread.join(timeout)
        return "\n".join(self._lines)


class Child:
    """A running client binary with its stderr tail."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        stdin: int | IO[bytes] | None = None,
        stdout: int | IO[bytes] | None = None,
        scrub: Callable[[str], str] = lambda s: s,
    ) -> None:
        self.name = os.path.basename(argv[0])
        self.proc = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
            bufsize=0,
            preexec_fn=_die_with_parent(os.getpid()),
            close_fds=True,
            pass_fds=passed_fds(env),  # the passfile's descriptor, if any
        )
        enlarge_pipe(self.proc.stdout)
        enlarge_pipe(self.proc.stdin)
        assert self.proc.stderr is not None
        self.stderr = StderrTail(self.proc.stderr, scrub)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self) -> int:
        return self.proc.wait()

    def kill(self) -> None:
        """Stop the child at once (used on failure paths); idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def failure(self, returncode: int | None = None) -> str | None:
        """A one-paragraph cause if the child failed, else None."""
        rc = self.proc.returncode if returncode is None else returncode
        if rc == 0:
            return None
        tail = self.stderr.text()
        if rc is not None and rc < 0:
            try:
                signame = signal.Signals(-rc).name
            except ValueError:
                signame = f"signal {-rc}"
            cause = f"{self.name} was killed by {signame}"
        else:
            cause = f"{self.name} exited with status {rc}"
        return f"{cause}: {tail}" if tail else cause
