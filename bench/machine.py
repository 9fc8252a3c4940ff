"""The machine and the versions a result was measured with."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.cluster import PG_BIN_DIR


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, object]:
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _mem_total_gib(),
        "kernel": platform.release(),
    }


def versions(server_version: str) -> dict[str, str]:
    return {
        "postgresql_server": server_version,
        "pg_dump": _first_line([str(PG_BIN_DIR / "pg_dump"), "--version"]),
        "pgkeep": _dist_version("pgkeep"),
        "python": platform.python_version(),
        "zstandard": _dist_version("zstandard"),
        # Decompression's zstd binding: the standard library's from Python 3.14.
        "zstd_decompression": (
            "compression.zstd" if sys.version_info >= (3, 14) else f"backports.zstd {_dist_version('backports.zstd')}"
        ),
        "psycopg": _dist_version("psycopg"),
        "gzip": _first_line(["gzip", "--version"]),
        "pgbackrest": _first_line(["pgbackrest", "version"]).replace("missing", "pgBackRest not installed"),
    }
