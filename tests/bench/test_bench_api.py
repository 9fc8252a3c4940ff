"""``python -m bench --api --tiny``, so the admin API benchmark cannot rot.

It runs end to end on both catalog backends (a real ``pgkeep serve``, real
HTTP, real async backups) and writes its report. Timings are never asserted;
only that every endpoint was measured without error and the report names the
targets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench_runner import run_bench

CATALOGS = ["sqlite", "postgresql"]
READS = {
    "healthz",
    "me",
    "list",
    "list-100",
    "list-deep",
    "list-status",
    "list-type",
    "list-type-status",
    "list-kind",
    "list-kind-logical",
    "get",
    "summary",
    "metrics",
}
LISTS = {k for k in READS if k.startswith("list")}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_bench(tmp_path_factory.mktemp("bench-api"), "--api", "--tiny")


@pytest.fixture(scope="module")
def report(report_dir: Path) -> dict[str, Any]:
    return json.loads((report_dir / "api-latest.json").read_text())  # type: ignore[no-any-return]


def test_writes_its_own_markdown_and_json(report_dir: Path) -> None:
    names = {p.name for p in report_dir.iterdir()}
    assert {"api-latest.md", "api-latest.json"} <= names
    assert any(n.endswith("-api.md") and n != "api-latest.md" for n in names), names
    assert any(n.endswith("-api.json") and n != "api-latest.json" for n in names), names
    # The backup/restore report is not overwritten by an API run.
    assert "latest.md" not in names and "latest.json" not in names


def test_every_endpoint_is_measured_on_both_catalogs(report: dict[str, Any]) -> None:
    assert [c["backend"] for c in report["catalogs"]] == CATALOGS
    requests = report["settings"]["requests"]
    for catalog in report["catalogs"]:
        assert catalog["error"] is None, f"{catalog['backend']}: {catalog['error']}"
        assert catalog["rows"] == report["settings"]["rows"] > 0
        rows = {e["key"]: e for e in catalog["endpoints"]}
        assert set(rows) == READS | {"backup-async"}
        for key, row in rows.items():
            assert row["error"] is None, f"{catalog['backend']}/{key}: {row['error']}"
            expected = report["settings"]["backups"] if key == "backup-async" else requests
            assert row["runs"] == len(row["samples_ms"]) == expected, key
            assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"], key
        assert {"reads", "backups"} <= set(catalog["others_load"])


def test_targets_are_stated_and_judged(report: dict[str, Any], report_dir: Path) -> None:
    assert report["targets"] == {"list_p95_ms": 50.0, "async_backup_ms": 100.0}
    for catalog in report["catalogs"]:
        for row in catalog["endpoints"]:
            judged = row["key"] in LISTS or row["key"] == "backup-async"
            assert (row["target_p95_ms"] is not None) == judged, row["key"]
            assert (row["meets_target"] is not None) == judged, row["key"]
    markdown = (report_dir / "api-latest.md").read_text()
    for backend in CATALOGS:
        assert f"### {backend} catalog" in markdown
    assert "p95 under 50 ms" in markdown and "within 100 ms" in markdown
    assert markdown.count("Prefer: respond-async` (202)") == len(CATALOGS)


def test_report_names_machine_versions_and_load(report: dict[str, Any]) -> None:
    assert report["machine"]["nproc"] >= 1
    assert report["versions"]["postgresql_server"].startswith("15.")
    assert set(report["versions"]) >= {"pgkeep", "python", "fastapi", "uvicorn", "sqlalchemy"}
    assert report["settings"]["rows"] == 2_000
