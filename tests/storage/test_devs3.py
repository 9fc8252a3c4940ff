"""The throwaway SeaweedFS server: loopback only, signed requests, kill/restart, cleanup."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import botocore
import botocore.exceptions
import pytest

from pgkeep.devs3 import DevS3, find_weed


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_weed_comes_from_the_wheel() -> None:
    weed = find_weed()
    assert weed.name == "weed" and os.access(weed, os.X_OK)


def test_start_and_stop_leave_nothing_behind(tmp_path: Path) -> None:
    # Kill and restart are exercised by the fault tests in test_s3_storage.py.
    with DevS3.start(base_dir=tmp_path) as server:
        assert server.base_dir.parent == tmp_path
        assert server.startup_seconds < 20, "startup takes about 3.5 s; something is slow"
        assert len(server.pids) == 2 and server.running
        ports = dict(server.ports)
        assert len(set(ports.values())) == len(ports)  # every listener on a port of ours
        server.create_bucket("lifecycle")
        server.client().put_object(Bucket="lifecycle", Key="k", Body=b"x")

        # Signatures are checked: no anonymous access.
        anonymous = server.client(signature_version=botocore.UNSIGNED)
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            anonymous.get_object(Bucket="lifecycle", Key="k")
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            anonymous.list_buckets()
        pids = server.pids
        base_dir = server.base_dir

    assert not base_dir.exists()
    assert not any(_alive(pid) for pid in pids)
    assert not any(_port_open(port) for port in ports.values())
    leftovers = [
        p
        for p in Path("/tmp").glob("seaweedfs-*-grpc-*.sock")
        if any(p.name.endswith(f"-{port}.sock") for port in ports.values())
    ]
    assert leftovers == []
    server.stop()  # idempotent
