"""The planner's result: one decision with its reasons per backup."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    KEEP = "keep"
    DELETE = "delete"


@dataclass(frozen=True)
class Decision:
    """Keep or delete one backup, and why.

    A kept backup lists every rule that keeps it (safety rules first, then
    daily/weekly/monthly/yearly, then expiry, then dependencies); a deleted
    one has exactly one reason.
    """

    id: str
    action: Action
    reasons: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """``{"id", "action", "reasons"}`` with plain JSON types."""
        return {"id": self.id, "action": self.action.value, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class RetentionPlan:
    """A decision for every backup given to the planner except DELETED ones.

    ``decisions`` are ordered newest first (``started_at``, then id, both
    descending) whatever the input order; applying the deletions in this
    order removes an incremental before the base it depends on.
    ``warnings`` name problems the plan cannot fix (a kept backup whose base
    is missing or failed).
    """

    decisions: tuple[Decision, ...]
    warnings: tuple[str, ...] = ()

    @property
    def keep_ids(self) -> tuple[str, ...]:
        """Ids of the kept backups, in plan order."""
        return tuple(d.id for d in self.decisions if d.action is Action.KEEP)

    @property
    def delete_ids(self) -> tuple[str, ...]:
        """Ids of the backups to delete, in plan order (dependents before their bases)."""
        return tuple(d.id for d in self.decisions if d.action is Action.DELETE)

    def decision(self, backup_id: str) -> Decision:
        """The decision for one backup; ``KeyError`` if it is not in the plan."""
        for d in self.decisions:
            if d.id == backup_id:
                return d
        raise KeyError(backup_id)

    def as_json(self) -> list[dict[str, Any]]:
        """``[{"id", "action", "reasons"}, ...]`` for ``cleanup --dry-run --json`` and the API."""
        return [d.as_json() for d in self.decisions]
