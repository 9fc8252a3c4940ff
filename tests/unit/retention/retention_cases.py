"""Golden retention cases: hand-made histories in ``histories/``, expected plans in ``golden/``.

A history file is JSON::

    {
      "description": "what the case shows",
      "now": "2026-11-26T12:00:00Z",
      "policy": {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 0, "tz": "UTC"},
      "defaults": {"type": "SCHEDULED", "status": "COMPLETED", "expires_after_days": 7},
      "series": [{"id_prefix": "d", "start": "2026-01-01T02:00:00Z", "count": 30,
                  "step_hours": 24, ...any backup field}],
      "backups": [{"id": "m1", "started_at": "...", "expires_at": "..." or null,
                   "expires_after_days": 30, "type": "MANUAL", "status": "FAILED",
                   "keep": true, "database_name": "app", "depends_on": "f1"}],
      "expect": {"summary": {"keep": 3, "delete": 1}, "keep": ["id"], "delete": ["id"],
                 "reasons": {"id": ["exact", "reasons"]}, "warnings": ["exact warning"]}
    }

``series`` expands to one backup every ``step_hours`` with ids like
``d-2026-01-01T0200`` (UTC). ``expect`` holds hand-written assertions that
are checked even when the goldens are rewritten, so a regenerated golden
cannot silently bless a broken rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pgkeep.retention import BackupInfo, RetentionPlan, RetentionPolicy

HERE = Path(__file__).parent
HISTORIES = HERE / "histories"
GOLDEN = HERE / "golden"


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    now: datetime
    policy: RetentionPolicy
    backups: list[BackupInfo]
    expect: dict[str, Any] = field(default_factory=dict)


def case_names() -> list[str]:
    return sorted(p.stem for p in HISTORIES.glob("*.json"))


def load_case(name: str) -> Case:
    raw = json.loads((HISTORIES / f"{name}.json").read_text())
    defaults = raw.get("defaults", {})
    backups = [_backup({**defaults, **spec}) for spec in raw.get("backups", [])]
    for series in raw.get("series", []):
        backups.extend(_expand({**defaults, **series}))
    return Case(
        name=name,
        description=raw["description"],
        now=_when(raw["now"]),
        policy=RetentionPolicy(**raw.get("policy", {})),
        backups=backups,
        expect=raw.get("expect", {}),
    )


def _expand(series: dict[str, Any]) -> list[BackupInfo]:
    spec = dict(series)
    prefix = spec.pop("id_prefix")
    start = _when(spec.pop("start"))
    step = timedelta(hours=spec.pop("step_hours", 24))
    out = []
    for i in range(spec.pop("count")):
        started = start + i * step
        out.append(_backup({**spec, "id": f"{prefix}-{started:%Y-%m-%dT%H%M}", "started_at": started}))
    return out


def _backup(spec: dict[str, Any]) -> BackupInfo:
    started = spec["started_at"]
    started = started if isinstance(started, datetime) else _when(started)
    if "expires_at" in spec:
        expires = None if spec["expires_at"] is None else _when(spec["expires_at"])
    elif "expires_after_days" in spec:
        expires = started + timedelta(days=spec["expires_after_days"])
    else:
        expires = None
    return BackupInfo(
        id=spec["id"],
        type=spec.get("type", "SCHEDULED"),
        status=spec.get("status", "COMPLETED"),
        started_at=started,
        expires_at=expires,
        keep=spec.get("keep", False),
        database_name=spec.get("database_name"),
        depends_on=spec.get("depends_on"),
    )


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"history timestamps need an offset or Z: {text!r}")
    return value


def golden_document(case: Case, plan: RetentionPlan) -> dict[str, Any]:
    """What a golden file holds: the inputs that matter for reading it, and the plan."""
    policy = case.policy
    return {
        "case": case.name,
        "description": case.description,
        "now": case.now.isoformat(),
        "policy": {
            "daily": policy.daily,
            "weekly": policy.weekly,
            "monthly": policy.monthly,
            "yearly": policy.yearly,
            "tz": policy.tz,
        },
        "summary": {"keep": len(plan.keep_ids), "delete": len(plan.delete_ids)},
        "warnings": list(plan.warnings),
        "plan": plan.as_json(),
    }


def render_golden(document: dict[str, Any]) -> str:
    """Pretty JSON with one plan entry per line, so a changed decision is a one-line diff."""
    head = {k: v for k, v in document.items() if k != "plan"}
    text = json.dumps(head, indent=2, ensure_ascii=False)
    entries = ",\n    ".join(json.dumps(e, ensure_ascii=False) for e in document["plan"])
    plan = f'"plan": [\n    {entries}\n  ]' if entries else '"plan": []'
    return f"{text[:-2]},\n  {plan}\n}}\n"
