"""pgkeep wal-push, wal-fetch (PostgreSQL's archive_command and restore_command), archive status.

wal-push and wal-fetch run as the server's OS user, in the data directory:
their settings come from the environment or from ``--config FILE`` (a
.env-style file), never from the current directory, and they touch no catalog.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgkeep.cli.main import app, err_console, out_console, print_json
from pgkeep.cli.quick import DEFAULT_JOBS, PUSH_DEADLINE_S
from pgkeep.config import Settings, load_settings
from pgkeep.errors import EXIT_CODES_HELP, ConfigError, ExitCode, PgkeepError, StorageError
from pgkeep.pipeline.codecs import CodecOptions
from pgkeep.pipeline.crypto import parse_recipients
from pgkeep.storage import open_storage
from pgkeep.wal import ahead, prefetch
from pgkeep.wal import archive as wal
from pgkeep.wal.spool import FETCHER, Spool, settings_key

if TYPE_CHECKING:
    from pgkeep.pgtools.archiver import ArchiverStatus
    from pgkeep.wal.spool_status import SpoolStatus

# PostgreSQL aborts recovery when restore_command exits above 125 (it reads such a
# status as "killed by a signal"); 1 means "not in the archive, recovery may end here".
FETCH_NOT_FOUND = 1
FETCH_ABORT = 128

# wal-push's time budget. PostgreSQL retries a failed archive_command itself (three times,
# a second apart, then at the next segment or a minute later) and archives nothing else
# while one runs, and a shutdown waits for it: a push that kept retrying for minutes (the
# general S3 settings allow 5 attempts of up to 10 s connect + 60 s read per request)
# would only hold the archiver up. So each request gets a short budget, never longer than
# configured, and the whole push a deadline: worst case about PUSH_DEADLINE_S, and a
# server that refuses connections fails the push within a few seconds.
PUSH_MAX_ATTEMPTS = 3
PUSH_CONNECT_TIMEOUT_S = 5.0
PUSH_READ_TIMEOUT_S = 15.0

PUSH_HELP = (
    "Exit codes: 0 the file is archived (now, or earlier with the same content); "
    "1 not archived (storage unreachable or too slow, or the archive holds a DIFFERENT file of that name): "
    "PostgreSQL keeps the file and retries; 2 bad arguments; 6 configuration error."
)
FETCH_HELP = (
    f"Exit codes: 0 restored and its SHA-256 checked; {FETCH_NOT_FOUND} not in the archive "
    f"(PostgreSQL takes it as the end of the archive); {FETCH_ABORT} in the archive but unusable "
    "(damaged, undecryptable, storage unreachable, bad configuration): PostgreSQL aborts recovery "
    "rather than end it short of its target; 2 bad arguments."
)
SpoolOpt = Annotated[
    Path | None,
    typer.Option(
        "--spool",
        help="Archive asynchronously: a background pusher stores ready files ahead of the archiver "
        "and leaves their status in this directory (private to the server's OS user).",
        file_okay=False,
    ),
]
JobsOpt = Annotated[
    int, typer.Option("--jobs", min=1, max=64, help="With --spool: how many files the pusher stores at a time.")
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Read settings from this file (KEY=value lines, as .env) as well as the environment.",
        dir_okay=False,
    ),
]


def load_config(config: Path | None) -> Settings:
    """Settings from the environment, plus ``config`` if given (which must be readable)."""
    if config is None:
        # Not the current directory's .env: these commands run in the data directory.
        return load_settings(_env_file=None)
    try:
        with open(config, encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot read the configuration file {config}: {exc.strerror}",
            hint="it must be readable by the OS user running the command (for archiving: the server's)",
        ) from None
    return load_settings(_env_file=config)


def push_settings(settings: Settings) -> Settings:
    """``settings`` with wal-push's short per-request S3 budget (never longer than configured)."""
    return settings.model_copy(
        update={
            "s3_max_attempts": min(settings.s3_max_attempts, PUSH_MAX_ATTEMPTS),
            "s3_connect_timeout": min(settings.s3_connect_timeout, PUSH_CONNECT_TIMEOUT_S),
            "s3_read_timeout": min(settings.s3_read_timeout, PUSH_READ_TIMEOUT_S),
        }
    )


@contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Exit the process with status 1 if the block still runs after ``seconds`` (0: no limit).

    A hard exit, not an exception: botocore turns unknown exceptions raised
    inside a request into retryable errors, and cleaning up (aborting an
    upload) may itself wait on the unreachable storage. wal-push must survive
    being killed at any point anyway (PostgreSQL may die mid-push): storage
    commits are atomic, a leftover partial upload is invisible, and if the
    push did complete just before the deadline, PostgreSQL's retry finds the
    same content and succeeds.
    """
    if seconds <= 0:
        yield
        return

    def expire() -> None:
        sys.stderr.write(
            f"error: {what}: gave up after {seconds:g} s: the storage is not answering "
            "(PostgreSQL keeps the file and retries)\n"
        )
        sys.stderr.flush()
        os._exit(int(ExitCode.FAILED))

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@app.command("wal-push", epilog=PUSH_HELP)
def wal_push(
    path: Annotated[Path, typer.Argument(metavar="%p", help="The WAL file, as PostgreSQL's %p gives it.")],
    config: ConfigOpt = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=0,
            help="Give up (exit 1, PostgreSQL retries) after this many seconds; 0: no limit. Each S3 request "
            f"also gets at most {PUSH_MAX_ATTEMPTS} attempts, {PUSH_CONNECT_TIMEOUT_S:g} s to connect and "
            f"{PUSH_READ_TIMEOUT_S:g} s per read (lower PGKEEP_S3_* values win).",
        ),
    ] = PUSH_DEADLINE_S,
    spool: SpoolOpt = None,
    jobs: JobsOpt = DEFAULT_JOBS,
) -> None:
    """Archive one WAL file: use as archive_command = 'pgkeep wal-push --config FILE %p'.

    Compresses (PGKEEP_COMPRESSION), encrypts (PGKEEP_AGE_RECIPIENTS) and
    stores it under PGKEEP_STORAGE_URL as wal-<file>.<sha256>...; succeeds
    only once it is stored. Quiet on success. Fails within --timeout seconds
    when the storage is down, so the server's archiver is never held up long.

    With --spool DIR (asynchronous archiving), a background pusher stores the
    files the server has marked ready, --jobs at a time, ahead of the
    archiver; this command then only checks that its file was stored.
    """
    if spool is not None:
        # The quick path (cli.quick) did not confirm this file: push it here, and
        # drop its status so the pusher tries it again should the server retry.
        Spool(spool).forget(path.name)
    with deadline(timeout, f"wal-push {path.name}"):
        pusher(push_settings(load_config(config)))(path)


def pusher(s: Settings) -> Callable[[Path], wal.PushResult]:
    """``wal.push`` with the storage, codec and recipients of ``s`` built once (the
    background pusher stores many files with them)."""
    return functools.partial(
        wal.push,
        open_storage(s.storage_url, s),
        compression=s.default_compression,
        codec_options=CodecOptions(zstd_level=s.zstd_level, zstd_threads=s.zstd_threads, gzip_level=s.gzip_level),
        recipients=parse_recipients(s.age_recipients),
    )


PUSH_AHEAD_HELP = (
    "Exit codes: 0 nothing left to push (or another pusher is at work); 1 a push hung past --timeout "
    "and was abandoned; 6 configuration error. Failed pushes are recorded in the spool, not in the exit code."
)


@app.command("wal-push-ahead", hidden=True, epilog=PUSH_AHEAD_HELP)
def wal_push_ahead(
    pg_wal: Annotated[Path, typer.Argument(help="The server's pg_wal directory.")],
    spool: Annotated[Path, typer.Option("--spool", help="The spool directory.")],
    config: ConfigOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0, help="Give up on a push after this long.")] = (
        PUSH_DEADLINE_S
    ),
    jobs: JobsOpt = DEFAULT_JOBS,
) -> None:
    """The asynchronous pusher that wal-push --spool starts: not for interactive use."""
    queue = Spool(spool)
    lock = queue.take_lock(wait=1.0)
    if lock is None:
        return  # another pusher is at work
    queue.serve(pg_wal.resolve())

    push = pusher(push_settings(load_config(config)))
    result = ahead.run(
        pg_wal,
        queue,
        lambda path: push(path).digest,
        key=settings_key(config, os.environ),
        jobs=jobs,
        push_deadline=timeout if timeout > 0 else float("inf"),
        log=_worker_log("pusher"),
    )
    if result.timed_out is not None:
        os._exit(int(ExitCode.FAILED))  # a push thread still hangs: do not wait for it


def _worker_log(worker: str) -> Callable[[str], None]:
    """One timestamped line per event on stderr (the spool's log file)."""

    def log(line: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {worker} {os.getpid()}: {line}\n")
        sys.stderr.flush()

    return log


@app.command("wal-fetch", epilog=FETCH_HELP)
def wal_fetch(
    file: Annotated[str, typer.Argument(metavar="%f", help="The WAL file name PostgreSQL asks for.")],
    path: Annotated[Path, typer.Argument(metavar="%p", help="Where to write it, as PostgreSQL's %p gives it.")],
    config: ConfigOpt = None,
    spool: Annotated[
        Path | None,
        typer.Option(
            "--spool",
            help="Prefetch: a background fetcher downloads and checks the segments after this one into this "
            "directory (private to the server's OS user; up to 9 segments), ahead of recovery.",
            file_okay=False,
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, max=64, help="With --spool: how many segments are fetched at a time.")
    ] = DEFAULT_JOBS,
) -> None:
    """Restore one archived WAL file: use as restore_command = 'pgkeep wal-fetch --config FILE %f %p'.

    Checks the file's SHA-256 against the one recorded when it was archived.
    With --spool DIR, segments the fetcher prefetched are moved into place
    (their SHA-256 checked again) without fetching.
    """
    # With --spool the quick path (cli.quick) had no prefetched copy to hand over: fetch it here
    # (the spool is the fetcher's to clean up).
    try:
        settings = load_config(config)
        wal.fetch(open_storage(settings.storage_url, settings), file, path, identity_file=settings.age_identity_file)
    except wal.WalMissingError as exc:
        err_console.print(f"wal-fetch: {exc.message}", markup=False)
        raise typer.Exit(FETCH_NOT_FOUND) from None
    except (PgkeepError, Exception) as exc:
        # Anything but a clean "not there" must stop recovery: exit 1 here would make
        # PostgreSQL promote a cluster that is silently behind its target.
        err_console.print(f"error: wal-fetch {file}: {exc}", markup=False)
        raise typer.Exit(FETCH_ABORT) from None


FETCH_AHEAD_HELP = "Exit codes: 0 nothing asked for a while (or another fetcher is at work); 6 configuration error."


@app.command("wal-fetch-ahead", hidden=True, epilog=FETCH_AHEAD_HELP)
def wal_fetch_ahead(
    spool: Annotated[Path, typer.Option("--spool", help="The spool directory.")],
    config: ConfigOpt = None,
    jobs: JobsOpt = DEFAULT_JOBS,
) -> None:
    """The prefetcher that wal-fetch --spool starts: not for interactive use."""
    queue = Spool(spool, FETCHER)
    lock = queue.take_lock(wait=1.0)
    if lock is None:
        return  # another fetcher is at work
    settings = load_config(config)
    storage = open_storage(settings.storage_url, settings)

    def fetch_one(file: str) -> str:
        temp = queue.temp_path(file)
        try:
            result = wal.fetch(storage, file, temp, identity_file=settings.age_identity_file)
            os.replace(temp, queue.content(file))
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return result.digest

    prefetch.run(
        queue,
        lambda want, count: prefetch.archived_from(storage, want, count),
        fetch_one,
        key=settings_key(config, os.environ),
        jobs=jobs,
        log=_worker_log("fetcher"),
    )


archive_app = typer.Typer(help="The WAL archive.\n\n" + EXIT_CODES_HELP, no_args_is_help=True)
app.add_typer(archive_app, name="archive")


STATUS_HELP = (
    "Exit codes: 0 no hole in the archive (and, with --server, the server archiving without failure); "
    "1 a hole, no WAL since the oldest backup, the archive unreadable, or (--server) archiving failing or off; "
    "6 bad configuration, or (--spool) an unreadable spool. The spool's report does not change the exit code."
)


@archive_app.command("status", epilog=STATUS_HELP)
def archive_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    server: Annotated[
        bool,
        typer.Option(
            "--server",
            help="Also ask the server (DATABASE_URL) how its archiving goes: pg_stat_archiver (is "
            "archive_command failing now, since when) and the files waiting in pg_wal (needs superuser "
            "or pg_monitor). Works from any host.",
        ),
    ] = False,
    spool_dir: Annotated[
        Path | None,
        typer.Option(
            "--spool",
            help="Also report the asynchronous pusher of this spool (archive_command's --spool): "
            "running or not, the files PostgreSQL has ready and how long the oldest has waited, "
            "what it stored ahead, its last log line. Read only.",
            file_okay=False,
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Newest archived WAL segment, its age, and any hole since the oldest kept physical backup."""
    from pgkeep.services import archive as archive_service  # the catalog: see cli.main._run
    from pgkeep.services.context import Context
    from pgkeep.wal.spool_status import spool_status
    from pgkeep.wal.status import ArchiveStatus

    pusher = None
    if spool_dir is not None:
        try:
            pusher = spool_status(Spool(spool_dir))
        except OSError as exc:
            raise ConfigError(
                f"cannot read the spool {spool_dir}: {exc.strerror or exc}",
                hint="give archive_command's --spool directory; run as the server's OS user (it is private)",
            ) from None
    ctx = Context.build(load_config(config) if config is not None else load_settings())
    try:
        archiver = archive_service.server_archiver(ctx) if server else None
        try:
            result = archive_service.status(ctx)
        except StorageError as exc:
            if archiver is None and pusher is None:
                raise
            # The storage being down is often why archiving fails: still show what the server says.
            result = ArchiveStatus(problems=[f"cannot list the archive: {exc.message}"])
    finally:
        ctx.close()
    ok = result.ok and (archiver is None or archiver.ok)
    if as_json:
        extra = {"server": archiver.as_json()} if archiver else {}
        print_json(result.as_json() | {"ok": ok} | extra | ({"spool": pusher.as_json()} if pusher else {}))
    else:
        if result.newest:
            out_console.print(
                f"newest segment: {result.newest} (archived {result.age_seconds:.0f} s ago)", markup=False
            )
        else:
            out_console.print("newest segment: none archived", markup=False)
        if result.oldest_needed:
            out_console.print(f"needed since:   {result.oldest_needed} (oldest kept physical backup)", markup=False)
        out_console.print(f"segments:       {result.segments}", markup=False)
        for problem in result.problems:
            err_console.print(f"problem: {problem}", markup=False)
        if result.holes:
            err_console.print(f"missing segments ({len(result.holes)}): {', '.join(result.holes[:10])}", markup=False)
        else:
            out_console.print("no hole in the archive", markup=False)
        if archiver is not None:
            _print_archiver(archiver)
        if pusher is not None:
            _print_pusher(pusher)
    if not ok:
        raise typer.Exit(int(ExitCode.FAILED))


def _print_archiver(archiver: ArchiverStatus) -> None:
    say = functools.partial(out_console.print, markup=False)
    say(f"archive_mode:   {archiver.archive_mode}{' (in recovery)' if archiver.in_recovery else ''}")
    if archiver.last_archived_time is not None:
        say(f"last archived:  {archiver.last_archived_wal} at {archiver.last_archived_time.isoformat()}")
    else:
        say("last archived:  none since the statistics were reset")
    if archiver.failed_count:
        at = archiver.last_failed_time.isoformat() if archiver.last_failed_time else "?"
        say(f"failures:       {archiver.failed_count}, the last {archiver.last_failed_wal} at {at}")
    else:
        say("failures:       none")
    if archiver.ready is None:
        say(f"server backlog: unknown ({archiver.backlog_unknown_why})")
    elif archiver.ready:
        waited = archiver.oldest_ready_age_s or 0.0
        count = f"{archiver.ready} file{'s' if archiver.ready > 1 else ''}"
        say(f"server backlog: {count} waiting in pg_wal, the oldest ({archiver.oldest_ready}) for {waited:.0f} s")
    else:
        say("server backlog: none")
    for problem in archiver.problems:
        err_console.print(f"problem: {problem}", markup=False)


def _print_pusher(pusher: SpoolStatus) -> None:
    say = functools.partial(out_console.print, markup=False)
    say(f"pusher:         {'running' if pusher.pusher_running else 'not running (the next archive_command starts it)'}")
    if pusher.ready is None:
        where = "no pusher has run yet" if pusher.pg_wal is None else f"{pusher.pg_wal} is not readable here"
        say(f"backlog:        unknown ({where})")
    elif pusher.ready:
        count = f"{len(pusher.ready)} file{'s' if len(pusher.ready) > 1 else ''}"
        waited = pusher.oldest_ready_age_s or 0.0
        say(f"backlog:        {count} ready in pg_wal, the oldest ({pusher.ready[0]}) for {waited:.0f} s")
    else:
        say("backlog:        none (archiving has caught up)")
    say(f"pushed ahead:   {pusher.pushed_ahead} (stored, waiting for archive_command)")
    for file, error in pusher.errors.items():
        say(f"pusher error:   {file}: {error}")
    if pusher.last_log_line:
        say(f"pusher log:     {pusher.last_log_line}")
