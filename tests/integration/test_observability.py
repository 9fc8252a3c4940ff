"""Metrics follow backups as they succeed and fail; webhooks reach a loopback receiver."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from helpers import DbHandle
from pgkeep.catalog.models import utcnow
from pgkeep.config import load_settings
from pgkeep.errors import BackupFailedError
from pgkeep.observability.freshness import check_freshness
from pgkeep.observability.metrics import build_registry
from pgkeep.services.backup import create_backup
from pgkeep.services.context import Context
from pgkeep.services.manage import cleanup_expired
from webhook_receiver import Receiver


def _ctx(tmp_path: Path, url: str, **extra: object) -> Context:
    return Context.build(
        load_settings(
            database_url=url,
            catalog_url=f"sqlite:///{tmp_path}/catalog.db",
            storage_url=f"file://{tmp_path}/backups",
            state_dir=str(tmp_path / "state"),
            **extra,
        )
    )


def _unreachable(url: str) -> str:
    """The same URL (awkward password included) pointing at a closed port."""
    port = url.rsplit("@", 1)[1].split("/")[0].split(":")[1]
    return url.replace(f":{port}/", ":1/")


def _metrics(ctx: Context) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(build_registry(ctx)).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_metrics_change_as_backups_succeed_and_fail(tmp_path: Path, source_db: DbHandle) -> None:
    ctx = _ctx(tmp_path, source_db.url)
    try:
        before = _metrics(ctx)
        assert before["pgkeep_backups_total"] == [({"outcome": "success"}, 0.0), ({"outcome": "failure"}, 0.0)]
        assert "pgkeep_last_success_timestamp_seconds" not in before
        result = create_backup(ctx)
        after = _metrics(ctx)
        assert ({"outcome": "success"}, 1.0) in after["pgkeep_backups_total"]
        assert after["pgkeep_last_backup_size_bytes"] == [({}, float(result.size))]
        assert after["pgkeep_last_backup_success"] == [({}, 1.0)]
        ((labels, ts),) = after["pgkeep_last_success_timestamp_seconds"]
        assert labels == {"type": "MANUAL"} and abs(ts - time.time()) < 600
        assert after["pgkeep_storage_bytes"] == [({}, float(result.size))]
    finally:
        ctx.close()
    broken = _ctx(tmp_path, _unreachable(source_db.url))
    try:
        with pytest.raises(BackupFailedError):
            create_backup(broken)
        failed = _metrics(broken)
        assert ({"outcome": "failure"}, 1.0) in failed["pgkeep_backups_total"]
        assert failed["pgkeep_last_backup_success"] == [({}, 0.0)]
        assert ({"status": "FAILED"}, 1.0) in failed["pgkeep_backups_by_status"]
        cleanup_expired(broken)
        assert "pgkeep_last_cleanup_timestamp_seconds" in _metrics(broken)
    finally:
        broken.close()


def test_webhooks_for_failed_backup_restore_and_stale_backups(
    tmp_path: Path, source_db: DbHandle, receiver: Receiver
) -> None:
    bad = _ctx(tmp_path, _unreachable(source_db.url), webhook_urls=receiver.url)
    try:
        with pytest.raises(BackupFailedError):
            create_backup(bad)
        note = receiver.wait_for("backup.failed")
        assert "FAILED" in note["text"] and note["backupId"]
        assert "secret" not in json.dumps(note)
        # Never a successful backup: the freshness check alerts once, not on every check.
        assert check_freshness(bad) is True
        assert receiver.wait_for("backup.stale")["lastSuccess"] is None
        assert check_freshness(bad) is False
    finally:
        bad.close()


def test_a_dead_webhook_never_fails_the_backup(tmp_path: Path, source_db: DbHandle) -> None:
    ctx = _ctx(tmp_path, source_db.url, webhook_urls="http://127.0.0.1:1/nothing-listens")
    try:
        result = create_backup(ctx)
        assert result.checksum
        assert check_freshness(ctx, now=utcnow()) is False
        assert check_freshness(ctx, now=utcnow() + timedelta(hours=27)) is True
    finally:
        ctx.close()


def test_restore_start_and_end_are_notified(
    tmp_path: Path, source_db: DbHandle, empty_db: DbHandle, receiver: Receiver
) -> None:
    from pgkeep.services.restore import RestoreOptions, resolve_backup, restore

    ctx = _ctx(tmp_path, source_db.url, webhook_urls=receiver.url)
    try:
        result = create_backup(ctx)
        restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(target_url=empty_db.url))
    finally:
        ctx.close()
    started = receiver.wait_for("restore.started")
    ended = receiver.wait_for("restore.succeeded")
    assert started["backupId"] == ended["backupId"] == result.id
    assert empty_db.name in ended["target"] and "restore" in ended["text"]
    assert "secret" not in json.dumps(receiver.received) and "p%40ss" not in json.dumps(receiver.received)


def test_a_webhook_url_stays_out_of_the_logs(
    tmp_path: Path, source_db: DbHandle, receiver: Receiver, capfd: pytest.CaptureFixture[str]
) -> None:
    """A webhook URL is often its own secret (Slack's /services/T../B../XXXX): httpx logged it whole."""
    import logging

    import structlog

    from pgkeep.observability import logs

    secret_url = receiver.url + "/services/T000/B000/XXXXSLACKSECRET"
    ctx = _ctx(tmp_path, source_db.url, webhook_urls=secret_url)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    try:
        logs.configure(json_output=True)  # as `pgkeep worker` and `serve` log
        ctx.notifier.send("backup.failed", "a test alert", backupId="x")
        receiver.wait_for("backup.failed")
        time.sleep(0.2)  # the delivery's own log lines come after the receiver answered
    finally:
        ctx.close()
        root.handlers[:], level, config = saved
        root.setLevel(level)
        structlog.configure(**config)
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    err = capfd.readouterr().err
    assert "XXXXSLACKSECRET" not in err


def test_another_databases_backups_do_not_make_this_one_fresh(
    tmp_path: Path, source_db: DbHandle, empty_db: DbHandle, receiver: Receiver
) -> None:
    """One catalog, two databases: the other's nightly backup silenced this one's staleness alert."""
    from pgkeep.api.routes.summary import summarize

    mine = _ctx(tmp_path, source_db.url, webhook_urls=receiver.url)
    other = _ctx(tmp_path, empty_db.url)  # the same catalog and storage
    try:
        create_backup(other)
        assert summarize(mine)["lastBackup"]["at"] is None
        registry = build_registry(mine)
        assert registry.get_sample_value("pgkeep_last_backup_success") is None
        assert registry.get_sample_value("pgkeep_last_success_timestamp_seconds", {"type": "MANUAL"}) is None
        assert check_freshness(mine) is True
        assert receiver.wait_for("backup.stale")["lastSuccess"] is None

        done = create_backup(mine)
        assert summarize(mine)["lastBackup"]["at"] is not None
        assert build_registry(mine).get_sample_value("pgkeep_last_backup_success") == 1.0
        assert build_registry(other).get_sample_value("pgkeep_last_backup_duration_seconds") is not None
        assert check_freshness(mine, now=utcnow()) is False and done.id
    finally:
        mine.close()
        other.close()
