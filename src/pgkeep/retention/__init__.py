"""Retention planning: which backups to keep, which to delete, and why.

A pure layer: no I/O, no clock, no imports from the catalog or services.
The caller maps catalog rows to :class:`BackupInfo`, calls
:func:`plan_retention` with an explicit ``now``, and applies the plan
(``pgkeep cleanup``, the scheduler, the API's dry run).
"""

from pgkeep.retention.model import BackupInfo, Status
from pgkeep.retention.plan import Action, Decision, RetentionPlan
from pgkeep.retention.planner import plan_retention
from pgkeep.retention.policy import RetentionPolicy

__all__ = [
    "Action",
    "BackupInfo",
    "Decision",
    "RetentionPlan",
    "RetentionPolicy",
    "Status",
    "plan_retention",
]
