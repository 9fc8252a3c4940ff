"""The benchmark's tiny run, so it cannot rot: it runs end to end and reports every method.

Timings are never asserted (they depend on the machine and its neighbours);
only that every method ran, produced its row, and every backup stored bytes,
and that the report has its sections: physical backups against pgBackRest
(which scripts/test.sh installs), issue 7's targets, and the memory check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench_runner import REPO, run_bench

DATASETS = ("pgbench", "realistic")


def _let_server_user_run_pgkeep() -> None:
    """The physical methods archive through ``pgkeep wal-push``, run by the server's OS user.

    The same (search-only) permission fix the WAL archiving tests apply; the
    bench itself only explains what is missing.
    """
    sys.path.insert(0, str(REPO / "tests" / "pitr"))
    try:
        from pitr_helpers import let_server_user_run_pgkeep
    finally:
        sys.path.remove(str(REPO / "tests" / "pitr"))
    let_server_user_run_pgkeep()


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _let_server_user_run_pgkeep()
    return run_bench(tmp_path_factory.mktemp("bench"), "--tiny")


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
            if kind in ("backup", "physical") and key != "floor":
                assert row["size_bytes_median"] > 0, f"{dataset['name']}/{key} stored nothing"


def _sections(markdown: str) -> dict[str, str]:
    """``### name: ...`` sections of the report, by name."""
    parts = markdown.split("\n### ")[1:]
    return {part.split(":", 1)[0]: part for part in parts}


def test_markdown_lists_every_method(report_dir: Path) -> None:
    sections = _sections((report_dir / "latest.md").read_text())
    assert set(DATASETS) <= set(sections)
    for dataset in DATASETS:
        rows = [line for line in sections[dataset].splitlines() if line.startswith("| ")]
        for _, label, _ in _all_methods():
            cell = label.replace("|", "\\|")
            assert sum(row.startswith(f"| {cell} |") for row in rows) == 1, (dataset, label)


def test_physical_backups_have_their_own_table(report_dir: Path) -> None:
    sections = _sections((report_dir / "latest.md").read_text())
    for dataset in DATASETS:
        text = sections[dataset]
        physical = text[text.index("**Physical backups") :]
        assert "| vs pgBackRest |" in physical
        assert "| pgBackRest full backup (zst, process-max N) |" in physical
        assert "| `pgkeep backup --kind physical` |" in physical
        # The logical tables come before it: no physical row among them.
        assert "pgBackRest" not in text[: text.index("**Physical backups")]


def test_targets_are_judged(report_dir: Path) -> None:
    data = json.loads((report_dir / "latest.json").read_text())
    latest = (report_dir / "latest.md").read_text()
    for dataset in data["datasets"]:
        judged = {(t["key"], t["baseline"], t["measure"]): t for t in dataset["targets"]}
        s3 = judged[("pgkeep-s3", "pgkeep", "wall_s")]
        physical = judged[("pgkeep-physical", "pgbackrest", "wall_s")]
        assert s3["at_most"] == 1.25 and physical["at_most"] == 1.0
        for target in (s3, physical):
            assert target["ratio"] > 0 and isinstance(target["met"], bool)
    assert latest.count("**Against issue 7's targets**") == len(DATASETS)
    assert latest.count("vs the same backup to local disk") == len(DATASETS)


def test_memory_check_compares_two_sizes(report_dir: Path) -> None:
    data = json.loads((report_dir / "latest.json").read_text())
    memory = data["memory"]
    assert memory["sizes_mb"] == [1.0, 10.0]
    assert memory["target_at_most"] == 1.1
    assert [op["key"] for op in memory["operations"]] == ["backup", "verify", "restore"]
    for op in memory["operations"]:
        assert op["errors"] == [None, None], op
        assert all(rss > 0 for rss in op["own_rss"]), op
        assert op["ratio"] > 0
    section = _sections((report_dir / "latest.md").read_text())["memory"]
    assert "| `pgkeep backup` (defaults) | " in section
    assert "| `pgkeep verify` (archive level) | " in section
    assert "| `pgkeep restore` (defaults) | " in section
    assert any(p.name.endswith("-memory.md") for p in report_dir.iterdir())


def test_report_names_machine_and_versions(report_dir: Path) -> None:
    data = json.loads((report_dir / "latest.json").read_text())
    assert data["machine"]["nproc"] >= 1
    assert data["versions"]["postgresql_server"].startswith("15.")
    assert set(data["versions"]) >= {"pgkeep", "python", "zstandard", "pgbackrest"}
    assert data["settings"]["repeat"] == 1
