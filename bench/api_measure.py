"""What the API benchmark measures: latency percentiles over real HTTP, and the machine's other load."""

from __future__ import annotations

import math
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.cluster import ServerCpu, machine_busy_s

LIST_P95_TARGET_MS = 50.0
ASYNC_BACKUP_TARGET_MS = 100.0
BACKUP_TIMEOUT_S = 300.0
POLL_S = 0.05
PREFIX = "/api/admin"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 200 samples is the 190th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass
class Latency:
    key: str
    label: str
    target_ms: float | None  # the p95 target, for rows it applies to
    samples_ms: list[float] = field(default_factory=list)
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        s = self.samples_ms
        p95 = percentile(s, 95) if s else None
        return {
            "key": self.key,
            "label": self.label,
            "runs": len(s),
            "error": self.error,
            "p50_ms": percentile(s, 50) if s else None,
            "p95_ms": p95,
            "max_ms": max(s) if s else None,
            "mean_ms": statistics.fmean(s) if s else None,
            "target_p95_ms": self.target_ms,
            "meets_target": None if self.target_ms is None or p95 is None else p95 < self.target_ms,
            **self.extra,
            "samples_ms": [round(v, 3) for v in s],
        }


@dataclass
class CatalogRun:
    backend: str
    rows: int
    fill_s: float = 0.0
    reads: list[Latency] = field(default_factory=list)
    backup: Latency | None = None
    others_load: dict[str, float] = field(default_factory=dict)  # phase -> CPUs busy elsewhere
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "rows": self.rows,
            "fill_s": round(self.fill_s, 2),
            "error": self.error,
            "others_load": self.others_load,
            "endpoints": [r.summary() for r in self.reads] + ([self.backup.summary()] if self.backup else []),
        }


class CpuMeter:
    """CPU used by this process, the server process tree and PostgreSQL, and by everyone else."""

    def __init__(self, server_pid: int, pg: ServerCpu) -> None:
        self.server_pid, self.pg = server_pid, pg
        self.tick = os.sysconf("SC_CLK_TCK")

    def _ours(self) -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        try:
            raw = Path(f"/proc/{self.server_pid}/stat").read_text()
            fields = raw[raw.rindex(")") + 2 :].split()
            server = sum(int(f) for f in fields[11:15]) / self.tick  # utime stime cutime cstime
        except OSError:
            server = 0.0
        return me.ru_utime + me.ru_stime + server + self.pg.sample()

    def start(self) -> tuple[float, float, float]:
        return time.perf_counter(), machine_busy_s(), self._ours()

    def others_load(self, mark: tuple[float, float, float]) -> float:
        wall0, busy0, ours0 = mark
        wall = time.perf_counter() - wall0
        others = (machine_busy_s() - busy0) - (self._ours() - ours0)
        return round(max(0.0, others) / wall, 2) if wall > 0 else 0.0


@dataclass(frozen=True)
class Endpoint:
    key: str
    label: str
    path: Callable[[int], str]  # request number -> path (GET one rotates through ids)
    target_ms: float | None = None
    auth: bool = True


def endpoints(ids: list[str], pages: int) -> list[Endpoint]:
    b = f"{PREFIX}/backups"
    t = LIST_P95_TARGET_MS
    return [
        Endpoint("healthz", "`GET /healthz` (no auth, no catalog: the HTTP floor)", lambda _: "/healthz", auth=False),
        Endpoint("me", f"`GET {PREFIX}/me` (token check only)", lambda _: f"{PREFIX}/me"),
        Endpoint("list", f"`GET {b}` (first page, limit 20)", lambda _: b, t),
        Endpoint("list-100", f"`GET {b}?limit=100` (the dashboard's chart)", lambda _: f"{b}?limit=100", t),
        Endpoint("list-deep", f"`GET {b}?page={pages}` (the last page)", lambda _: f"{b}?page={pages}", t),
        Endpoint("list-status", f"`GET {b}?status=FAILED`", lambda _: f"{b}?status=FAILED", t),
        Endpoint("list-type", f"`GET {b}?type=MANUAL`", lambda _: f"{b}?type=MANUAL", t),
        Endpoint(
            "list-type-status",
            f"`GET {b}?type=SCHEDULED&status=COMPLETED`",
            lambda _: f"{b}?type=SCHEDULED&status=COMPLETED",
            t,
        ),
        Endpoint("list-kind", f"`GET {b}?kind=physical`", lambda _: f"{b}?kind=physical", t),
        Endpoint("list-kind-logical", f"`GET {b}?kind=logical`", lambda _: f"{b}?kind=logical", t),
        Endpoint("get", f"`GET {b}/{{id}}`", lambda n: f"{b}/{ids[n % len(ids)]}"),
        Endpoint("summary", f"`GET {PREFIX}/summary` (the dashboard's header)", lambda _: f"{PREFIX}/summary"),
        Endpoint("metrics", "`GET /metrics` (a Prometheus scrape, no auth)", lambda _: "/metrics", auth=False),
    ]


def _get(client: httpx.Client, ep: Endpoint, n: int, token: str) -> float:
    headers = {"Authorization": f"Bearer {token}"} if ep.auth else {}
    t0 = time.perf_counter()
    response = client.get(ep.path(n), headers=headers)
    elapsed = (time.perf_counter() - t0) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{ep.path(n)} answered {response.status_code}: {response.text[:300]}")
    return elapsed


def measure_reads(client: httpx.Client, eps: list[Endpoint], token: str, requests: int, warmup: int) -> list[Latency]:
    results = {ep.key: Latency(ep.key, ep.label, ep.target_ms) for ep in eps}
    for n in range(warmup):
        for ep in eps:
            _get(client, ep, n, token)
    for n in range(requests):
        shift = n % len(eps)  # rotated rounds: no endpoint always follows the same one
        for ep in eps[shift:] + eps[:shift]:
            result = results[ep.key]
            if result.error is not None:
                continue
            try:
                result.samples_ms.append(_get(client, ep, warmup + n, token))
            except Exception as exc:
                result.error = f"{type(exc).__name__}: {exc}"
    return [results[ep.key] for ep in eps]


def measure_async_backups(client: httpx.Client, token: str, count: int) -> Latency:
    """``count`` accepted ``Prefer: respond-async`` backups; each finishes before the next starts."""
    result = Latency(
        "backup-async", f"`POST {PREFIX}/backups` with `Prefer: respond-async` (202)", ASYNC_BACKUP_TARGET_MS
    )
    headers = {"Authorization": f"Bearer {token}", "Prefer": "respond-async"}
    refused = 0
    completions: list[float] = []
    while len(result.samples_ms) < count:
        t0 = time.perf_counter()
        response = client.post(f"{PREFIX}/backups", headers=headers, json={"type": "MANUAL"})
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status_code == 409:  # the previous backup's lock session is closing: not measured
            refused += 1
            if refused > 10 * count:
                result.error = "409 backup_in_progress every time"
                break
            time.sleep(0.2)
            continue
        if response.status_code != 202:
            result.error = f"answered {response.status_code}: {response.text[:300]}"
            break
        result.samples_ms.append(elapsed)
        location = response.headers["Location"]
        deadline = time.monotonic() + BACKUP_TIMEOUT_S
        while True:
            state = client.get(location, headers={"Authorization": f"Bearer {token}"}).json()
            if state["status"] in ("COMPLETED", "FAILED"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"backup {state['id']} still {state['status']} after {BACKUP_TIMEOUT_S} s")
            time.sleep(POLL_S)
        if state["status"] != "COMPLETED":
            result.error = f"backup {state['id']} FAILED: {state.get('errorMessage')}"
            break
        completions.append(time.perf_counter() - t0)
    result.extra = {
        "refused_409": refused,
        "backup_completed_s_median": round(statistics.median(completions), 3) if completions else None,
    }
    return result
