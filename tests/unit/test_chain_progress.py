"""A point-in-time restore's progress counts on across its chain of backups (pure logic)."""

from __future__ import annotations

from pgkeep.catalog.models import DatabaseBackup
from pgkeep.services.pitr import chain_progress


def test_each_backup_of_a_chain_counts_on_from_the_sizes_before_it() -> None:
    chain = [DatabaseBackup(size=100), DatabaseBackup(size=30), DatabaseBackup(size=7)]
    heard: list[int] = []
    first, second, third = chain_progress(heard.append, chain)
    assert first is not None and second is not None and third is not None
    for callback, size in ((first, 100), (second, 30), (third, 7)):
        callback(size // 2)
        callback(size)
    # One pass from the job's point of view: rising to the chain's whole size.
    assert heard == [50, 100, 115, 130, 133, 137]


def test_no_listener_no_callbacks() -> None:
    assert chain_progress(None, [DatabaseBackup(size=1), DatabaseBackup(size=2)]) == [None, None]
