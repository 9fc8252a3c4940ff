"""A restore job's progress: every pass over the stored bytes reports how far it got,
and the job's row records it without a catalog write per chunk."""

from __future__ import annotations

import io

import pytest

from pgkeep.catalog.admin_models import JobStatus, RestoreJob
from pgkeep.config import Compression, DumpFormat
from pgkeep.services import admin
from pgkeep.services.artifacts import Artifact
from pgkeep.services.context import Context
from pgkeep.storage.base import READ_CHUNK


def _artifact(data: bytes, on_read: list[int]) -> Artifact:
    return Artifact(
        name="b.dump",
        opener=lambda: io.BytesIO(data),
        fmt=DumpFormat.CUSTOM,
        compression=Compression.NONE,
        on_read=on_read.append,
    )


def test_each_pass_reports_the_bytes_read_so_far() -> None:
    data = b"x" * (3 * READ_CHUNK + 5)
    seen: list[int] = []
    artifact = _artifact(data, seen)
    for _ in range(2):  # e.g. verify, then load: each pass counts from the start
        reader = artifact.reader()
        assert b"".join(reader.chunks()) == data
        reader.close()
    one_pass = [READ_CHUNK, 2 * READ_CHUNK, 3 * READ_CHUNK, len(data)]
    assert seen == one_pass + one_pass


def _job(ctx: Context) -> str:
    with ctx.catalog.session() as session:
        job = RestoreJob(backup_id="b", status=JobStatus.IN_PROGRESS.value, dry_run=False, total_bytes=100)
        session.add(job)
        session.commit()
        return job.id


def _recorded(ctx: Context, job_id: str) -> int:
    with ctx.catalog.session() as session:
        job = session.get(RestoreJob, job_id)
        assert job is not None
        return job.bytes_read


def test_the_first_chunk_of_a_pass_is_recorded_at_once_the_rest_at_most_every_interval(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "PROGRESS_EVERY_S", 3600.0)
    job_id = _job(ctx)
    assert _recorded(ctx, job_id) == 0
    progress = admin.RestoreProgress(ctx, job_id)
    progress(10)
    assert _recorded(ctx, job_id) == 10  # a pass began: shown at once
    progress(20)
    progress(30)
    assert _recorded(ctx, job_id) == 10  # within the interval: not written
    assert progress.bytes_read == 30  # but known, for the job's final row
    progress(5)
    assert _recorded(ctx, job_id) == 5  # the next pass began


def test_every_report_past_the_interval_is_recorded(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin, "PROGRESS_EVERY_S", 0.0)
    job_id = _job(ctx)
    progress = admin.RestoreProgress(ctx, job_id)
    for n in (10, 20, 30):
        progress(n)
        assert _recorded(ctx, job_id) == n


def test_a_catalog_failure_never_fails_the_restore(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = _job(ctx)
    progress = admin.RestoreProgress(ctx, job_id)

    def broken() -> None:
        raise RuntimeError("catalog down")

    monkeypatch.setattr(ctx.catalog, "session", broken)
    progress(10)  # does not raise
    assert progress.bytes_read == 10
