"""Running measured commands: argument lists, pipes between them, rusage of each.

Every command is an argument list (never a shell string). A pipeline's
stages are connected Popen-to-Popen, and each stage is reaped with
``os.wait4`` so its user+system CPU time (which includes the children it
reaped itself, e.g. pg_dump under pgkeep or pg_dump's -j workers) is known
exactly; peak RSS is polled from /proc (see :class:`_HwmPoller`).
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

STDERR_TAIL = 2000
RSS_POLL_S = 0.02


@dataclass(frozen=True)
class Stage:
    """One process of a pipeline."""

    argv: Sequence[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    # Poll this process's own high-water RSS (VmHWM), not counting its children.
    watch_rss: bool = False


@dataclass
class RunResult:
    wall_s: float
    cpu_s: float  # user+sys of every stage and everything they reaped
    tree_maxrss: int  # bytes: the largest VmHWM of any process of the pipeline (and descendants)
    own_rss: int | None  # bytes: VmHWM of the watched stage, if any
    stdout: bytes = b""
    returncodes: list[int] = field(default_factory=list)


class CommandFailed(RuntimeError):
    """A stage exited non-zero; the message carries the tail of its stderr."""


def _hwm(pid: int) -> int:
    """VmHWM of ``pid`` in bytes (0 if gone or a zombie)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError, ValueError):
            for task in os.scandir(f"/proc/{current}/task"):
                todo += [int(c) for c in Path(task.path, "children").read_text().split()]
    return found


class _HwmPoller:
    """Samples VmHWM of the pipeline's processes and all their descendants until stopped.

    VmHWM only grows, so the last sample before exit is the peak up to then.
    Not wait4's ru_maxrss: Linux carries the high-water mark of the memory a
    process had before exec into it, and a child spawned by this (large)
    Python process starts with the benchmark's own peak RSS, whatever it runs.
    ``own`` is the watched stage alone (pgkeep, without its pg_dump); ``tree``
    the largest single process of the whole pipeline.
    """

    def __init__(self, watched: int | None) -> None:
        self.watched = watched
        self.own = 0
        self.tree = 0
        self._roots: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def add(self, pid: int) -> None:
        with self._lock:
            self._roots.append(pid)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                roots = list(self._roots)
            for root in roots:
                for pid in _descendants(root):
                    hwm = _hwm(pid)
                    self.tree = max(self.tree, hwm)
                    if pid == self.watched:
                        self.own = max(self.own, hwm)
            self._stop.wait(RSS_POLL_S)

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        return self.own, self.tree


def run_pipeline(
    stages: Sequence[Stage],
    *,
    stdout: Path | None = None,
    capture: bool = False,
) -> RunResult:
    """Run ``stages`` as ``a | b | c``; the last writes to ``stdout`` (a file), a pipe or /dev/null.

    Raises :class:`CommandFailed` if any stage exits non-zero.
    """
    procs: list[subprocess.Popen[bytes]] = []
    errs: list[IO[bytes]] = []
    results: list[tuple[int, resource.struct_rusage]] = []
    poller = _HwmPoller(None)
    captured = b""
    with contextlib.ExitStack() as stack:
        out_file = stack.enter_context(stdout.open("wb")) if stdout is not None else None
        errs = [stack.enter_context(tempfile.TemporaryFile()) for _ in stages]
        t0 = time.perf_counter()
        try:
            prev: IO[bytes] | None = None
            for i, stage in enumerate(stages):
                last = i == len(stages) - 1
                target: int | IO[bytes]
                if not last:
                    target = subprocess.PIPE
                elif out_file is not None:
                    target = out_file
                else:
                    target = subprocess.PIPE if capture else subprocess.DEVNULL
                proc = subprocess.Popen(
                    list(stage.argv),
                    stdin=prev if prev is not None else subprocess.DEVNULL,
                    stdout=target,
                    stderr=errs[i],
                    env=stage.env,
                    cwd=stage.cwd,
                )
                procs.append(proc)
                if prev is not None:
                    prev.close()  # only the reader may hold it: a dead reader must SIGPIPE the writer
                prev = proc.stdout if not last else None
                if stage.watch_rss:
                    poller.watched = proc.pid
                poller.add(proc.pid)
            if capture and procs[-1].stdout is not None:
                captured = procs[-1].stdout.read()
            for proc in procs:
                # wait4 instead of Popen.wait: the rusage is the reason to run things this way.
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                results.append((proc.returncode, usage))
            wall = time.perf_counter() - t0
        except BaseException:
            for proc in procs:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait()
            raise
        finally:
            own, tree = poller.stop()
            for proc in procs:
                if proc.stdout is not None:
                    proc.stdout.close()
        failures = []
        for stage, err, (rc, _) in zip(stages, errs, results, strict=True):
            if rc != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace")[-STDERR_TAIL:].strip()
                failures.append(f"{Path(stage.argv[0]).name} exited {rc}: {tail}")
    if failures:
        # In a pipe the first failure is often only the SIGPIPE of the stage before the culprit.
        raise CommandFailed("; ".join(failures))
    return RunResult(
        wall_s=wall,
        cpu_s=sum(u.ru_utime + u.ru_stime for _, u in results),
        # ru_maxrss (KiB) only if every process ended before the first sample.
        tree_maxrss=tree or max(u.ru_maxrss for _, u in results) * 1024,
        own_rss=own or None,
        stdout=captured,
        returncodes=[rc for rc, _ in results],
    )


def run_quiet(argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run an unmeasured helper command; return its stdout, raise on failure."""
    result = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CommandFailed(f"{Path(argv[0]).name} exited {result.returncode}: {result.stderr.strip()[-STDERR_TAIL:]}")
    return result.stdout


def cpu_of(pids: Sequence[int]) -> float:
    """CPU seconds (user+system, with what they reaped) that running processes have used so far.

    A process that is gone counts 0: sample before and after, and only
    long-running servers (SeaweedFS) are worth sampling this way.
    """
    ticks = 0
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")
