"""`pgkeep catalog rebuild`: the catalog recreated from storage (S3) alone after it was lost."""

from __future__ import annotations

import json
from pathlib import Path

from cli_runner import make_cli

from helpers import S3_BUCKET, DbHandle, make_context, s3_env, s3_overrides
from pgkeep.devs3 import DevS3
from pgkeep.services.backup import create_backup
from pgkeep.services.manifest import manifest_name


def test_rebuild_after_losing_the_catalog(tmp_path: Path, source_db: DbHandle, devs3: DevS3) -> None:
    overrides = s3_overrides(devs3)
    ctx = make_context(tmp_path, source_db.url, **overrides)
    try:
        kept = [create_backup(ctx), create_backup(ctx, include_globals=True)]
        no_manifest = create_backup(ctx)
        corrupted = create_backup(ctx)
        storage = ctx.storage
    finally:
        ctx.close()
    cli = make_cli(tmp_path, source_db.url)
    cli.env.update(s3_env(overrides))
    # A legal hold must survive the catalog: one backup kept, one kept and released again.
    assert cli.json("keep", kept[0].id)["keep"] is True
    assert cli.json("keep", kept[1].id)["keep"] is True
    assert cli.json("keep", kept[1].id, "--off")["keep"] is False
    before = cli.json("list", "--limit", "100")["backups"]
    assert len(before) == 4
    assert {b["id"]: b["keep"] for b in before}[kept[0].id] is True

    # Damage: one manifest lost, one artifact altered (same size, other bytes).
    storage.delete(manifest_name(no_manifest.filename))
    key = (corrupted.storage_url or "").removeprefix(f"s3://{S3_BUCKET}/")
    body = bytearray(devs3.client().get_object(Bucket=S3_BUCKET, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    devs3.client().put_object(Bucket=S3_BUCKET, Key=key, Body=bytes(body))

    (tmp_path / "catalog.db").unlink()  # the catalog database is lost

    rebuilt = cli.run("catalog", "rebuild", "--json")
    assert rebuilt.returncode == 5, rebuilt.stderr  # some backups were reported
    report = json.loads(rebuilt.stdout)
    assert sorted(e["id"] for e in report["imported"]) == sorted(r.id for r in kept)
    problems = {p["filename"]: p["problem"] for p in report["problems"]}
    assert set(problems) == {no_manifest.filename, corrupted.filename}
    assert "no manifest" in problems[no_manifest.filename]
    assert "SHA-256" in problems[corrupted.filename]

    # The list is what it was for the backups that could be verified: every field.
    expected = [b for b in before if b["id"] in {r.id for r in kept}]
    assert cli.json("list", "--limit", "100")["backups"] == expected

    again = cli.run("catalog", "rebuild")  # idempotent
    assert again.returncode == 5
    assert "Imported 0 backups, 2 were already catalogued, 2 reported" in again.stdout
    assert f"not imported: {corrupted.filename}: " in again.stderr
    assert f"not imported: {no_manifest.filename}: no manifest" in again.stderr
