"""The benchmark's tiny run, so it cannot rot: it runs end to end and reports every method.

Timings are never asserted (they depend on the machine and its neighbours);
only that every method ran, produced its row, and every backup stored bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATASETS = ("pgbench", "realistic")
TIMEOUT_S = 600  # generous: a shared CI machine can be slow; the run itself takes seconds


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"python -m bench --tiny failed:\n{result.stderr[-4000:]}"
    return out


def _all_methods() -> list[tuple[str, str, str]]:
    sys.path.insert(0, str(REPO))
    try:
        from bench.methods import all_methods
    finally:
        sys.path.remove(str(REPO))
    return [(m.key, m.label, m.kind) for m in all_methods()]


def test_writes_markdown_and_json(report_dir: Path) -> None:
    names = {p.name for p in report_dir.iterdir()}
    assert {"latest.md", "latest.json"} <= names
    for dataset in DATASETS:
        assert any(n.endswith(f"-{dataset}.md") for n in names), names
    assert any(n != "latest.json" and n.endswith(".json") for n in names), names


def test_every_method_has_a_row_in_every_data_set(report_dir: Path) -> None:
    data = json.loads((report_dir / "latest.json").read_text())
    assert [d["name"] for d in data["datasets"]] == list(DATASETS)
    for dataset in data["datasets"]:
        rows = {m["key"]: m for m in dataset["methods"]}
        for key, _, kind in _all_methods():
            row = rows[key]
            assert row["error"] is None, f"{dataset['name']}/{key}: {row['error']}"
            assert row["runs"] == 1
            assert row["wall_s_median"] > 0
            if kind == "backup" and key != "floor":
                assert row["size_bytes_median"] > 0, f"{dataset['name']}/{key} stored nothing"


def test_markdown_lists_every_method(report_dir: Path) -> None:
    latest = (report_dir / "latest.md").read_text()
    for dataset in DATASETS:
        assert f"### {dataset}" in latest
    for _, label, _ in _all_methods():
        assert latest.count(label.replace("|", "\\|")) == len(DATASETS), label


def test_report_names_machine_and_versions(report_dir: Path) -> None:
    data = json.loads((report_dir / "latest.json").read_text())
    assert data["machine"]["nproc"] >= 1
    assert data["versions"]["postgresql_server"].startswith("15.")
    assert set(data["versions"]) >= {"pgkeep", "python", "zstandard"}
    assert data["settings"]["repeat"] == 1
