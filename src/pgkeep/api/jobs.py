"""Background jobs of the API: one thread per job, started and awaited in one place.

Danger: pg_dump and pg_restore children get PDEATHSIG, which fires when the
*thread* that started them exits. So a job's thread runs the whole job,
starting and waiting for its children; never hand a child to another thread.
Threads are not daemons: at interpreter exit Python waits for them, so a
stopping server finishes its backups instead of leaving IN_PROGRESS rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("pgkeep.api")


class JobRunner:
    """Starts jobs on their own threads and can wait for all of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def start(self, name: str, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            except BaseException:
                # The job records its own outcome; this only keeps a bug visible.
                log.exception("background job %s crashed", name)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"pgkeep-{name}", daemon=False)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._threads)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every running job; True if none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.running == 0
