"""Every history in ``histories/`` against its expected plan in ``golden/``.

Rewrite the goldens after an intended change with::

    PGKEEP_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/retention

and review the diff: each plan entry is one line. The hand-written
``expect`` block of a history is checked either way.
"""

from __future__ import annotations

import json
import os
import random

import pytest
from retention_cases import GOLDEN, HISTORIES, case_names, golden_document, load_case, render_golden
from retention_invariants import check_invariants

from pgkeep.retention import plan_retention

UPDATE = os.environ.get("PGKEEP_UPDATE_GOLDEN") == "1"
CASES = case_names()


def test_there_are_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", CASES)
def test_plan_matches_golden(name: str) -> None:
    case = load_case(name)
    plan = plan_retention(case.backups, case.policy, case.now)
    document = golden_document(case, plan)
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.write_text(render_golden(document))
    assert path.exists(), f"no golden for {name}: run with PGKEEP_UPDATE_GOLDEN=1 and review it"
    golden = json.loads(path.read_text())
    changed = [
        f"golden {old}\n  now   {new}" for old, new in zip(golden["plan"], document["plan"], strict=False) if old != new
    ]
    assert not changed, f"{len(changed)} decision(s) changed in {name}:\n" + "\n".join(changed)
    assert golden == document


@pytest.mark.parametrize("name", CASES)
def test_hand_written_expectations(name: str) -> None:
    case = load_case(name)
    plan = plan_retention(case.backups, case.policy, case.now)
    expect = case.expect
    assert expect, f"{name} has no hand-written 'expect' block"
    if "summary" in expect:
        assert expect["summary"] == {"keep": len(plan.keep_ids), "delete": len(plan.delete_ids)}
    for backup_id in expect.get("keep", []):
        assert backup_id in plan.keep_ids, f"{backup_id} should be kept: {plan.decision(backup_id)}"
    for backup_id in expect.get("delete", []):
        assert backup_id in plan.delete_ids, f"{backup_id} should go: {plan.decision(backup_id)}"
    for backup_id, reasons in expect.get("reasons", {}).items():
        assert list(plan.decision(backup_id).reasons) == reasons, backup_id
    if "warnings" in expect:
        assert list(plan.warnings) == expect["warnings"]


@pytest.mark.parametrize("name", CASES)
def test_safety_invariants_and_input_order(name: str) -> None:
    case = load_case(name)
    plan = plan_retention(case.backups, case.policy, case.now)
    check_invariants(case.backups, plan, case.now)
    shuffled = list(case.backups)
    random.Random(name).shuffle(shuffled)
    assert plan_retention(shuffled, case.policy, case.now) == plan


def test_no_orphan_goldens() -> None:
    orphans = {p.stem for p in GOLDEN.glob("*.json")} - set(CASES)
    assert not orphans, f"goldens without a history in {HISTORIES}: {sorted(orphans)}"


def test_golden_rendering_round_trips() -> None:
    case = load_case(CASES[0])
    document = golden_document(case, plan_retention(case.backups, case.policy, case.now))
    assert json.loads(render_golden(document)) == document
    empty = {**document, "plan": []}
    assert json.loads(render_golden(empty)) == empty
