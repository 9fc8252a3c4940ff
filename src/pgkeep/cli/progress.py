"""A progress bar of how much of a stored backup a command has read (restore, verify)."""

from __future__ import annotations

from types import TracebackType

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from pgkeep.cli.main import err_console


def bar_wanted(*, quiet: bool, as_json: bool) -> bool:
    """Whether a command shows its bar: not asked to be quiet, not JSON, stderr a terminal."""
    return not quiet and not as_json and err_console.is_terminal


class ReadProgress:
    """A transient bar on stderr of how much of the stored backup has been read.

    It appears only once armed (a restore arms it after its confirmation
    prompt, never under it) and at the first byte read after that, so a
    restore's safety backup shows no idle bar. Each pass over the backup
    starts it from 0 again. Pass :meth:`update` as the artifact's ``on_read``.
    """

    def __init__(self, *, enabled: bool, total: int | None, armed: bool = False) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("reading the backup"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=not enabled,
            transient=True,
        )
        self._total = total
        self._task: TaskID | None = None
        self._armed = armed

    def arm(self) -> None:
        self._armed = True

    def set_total(self, total: int) -> None:
        """The end of the bar, once known (a point-in-time restore learns it from its plan)."""
        self._total = total
        if self._task is not None:
            self._progress.update(self._task, total=total)

    def update(self, nbytes: int) -> None:
        if not self._armed:
            return
        if self._task is None:  # called by the one thread reading the backup
            self._task = self._progress.add_task("restore", total=self._total)
            self._progress.start()
        self._progress.update(self._task, completed=nbytes)

    def __enter__(self) -> ReadProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()
