"""Running measured commands: argument lists, pipes between them, rusage of each.

Every command is an argument list (never a shell string). A pipeline's
stages are connected Popen-to-Popen, and each stage is reaped with
``os.wait4`` so its user+system CPU time (which includes the children it
reaped itself, e.g. pg_dump under pgkeep or pg_dump's -j workers) and its
peak RSS are known exactly.
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
    tree_maxrss: int  # bytes: the largest ru_maxrss among the stages
    own_rss: int | None  # bytes: VmHWM of the watched stage, if any
    stdout: bytes = b""
    returncodes: list[int] = field(default_factory=list)


class CommandFailed(RuntimeError):
    """A stage exited non-zero; the message carries the tail of its stderr."""


class _HwmPoller:
    """Samples /proc/<pid>/status VmHWM until stopped.

    VmHWM only grows, so the last sample before exit is the peak up to then;
    wait4's ru_maxrss would also count the children (pg_dump), which is not
    what "pgkeep's own memory" means.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        path = Path(f"/proc/{self.pid}/status")
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                for line in path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
                        break
            self._stop.wait(RSS_POLL_S)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


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
    poller: _HwmPoller | None = None
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
                    poller = _HwmPoller(proc.pid)
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
            own = poller.stop() if poller is not None else None
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
        tree_maxrss=max(u.ru_maxrss for _, u in results) * 1024,  # Linux reports KiB
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
