"""Encryption at rest (age): round trip, the key needed only to read contents, wrong keys, and
the by-hand restore with Debian's ``age`` and ``zstd`` that the README documents."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import psycopg
import pytest

from helpers import PG15_BIN_DIR, DbHandle, get_row, make_context
from pgkeep.errors import ConfigError
from pgkeep.fingerprint import diff_fingerprints, fingerprint
from pgkeep.pipeline import crypto
from pgkeep.services import manage
from pgkeep.services.artifacts import artifact_for_row
from pgkeep.services.backup import create_backup
from pgkeep.services.restore import RestoreOptions, resolve_backup, resolve_file, restore


def age_keygen(path: Path) -> str:
    """A new identity file made by Debian's age-keygen; returns its public key."""
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    return subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Three identities: two recipients of the backups and a stranger."""
    out = {}
    for name in ("ops", "vault", "stranger"):
        path = tmp_path / f"{name}.txt"
        out[name] = (path, age_keygen(path))
    return out


def test_round_trip_and_the_key_is_needed_only_to_read_contents(
    tmp_path: Path, source_db: DbHandle, empty_db: DbHandle, keys: dict[str, tuple[Path, str]]
) -> None:
    recipients = f"{keys['ops'][1]},{keys['vault'][1]}"
    # The backup host knows only public keys.
    ctx = make_context(tmp_path, source_db.url, age_recipients=recipients)
    try:
        result = create_backup(ctx, include_globals=True)
        row = get_row(ctx, result.id)
        assert result.filename.endswith(".dump.zst.age") and row.encryption == "age"
        assert row.metadata_["encryption"] == {
            "format": "age",
            "recipients": [crypto.fingerprint(keys["ops"][1]), crypto.fingerprint(keys["vault"][1])],
        }
        stored = tmp_path / "backups" / result.filename
        assert stored.read_bytes().startswith(crypto.AGE_MAGIC)
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == row.checksum  # the stored bytes
        globals_file = tmp_path / "backups" / row.metadata_["globals"]["filename"]
        assert globals_file.name.endswith(".globals.sql.zst.age")
        assert globals_file.read_bytes().startswith(crypto.AGE_MAGIC)  # role password hashes too
        manifest = json.loads((tmp_path / "backups" / f"{result.filename}.manifest.json").read_text())
        assert manifest["encryption"] == row.metadata_["encryption"] and manifest["sha256"] == row.checksum

        assert manage.verify_backup(ctx, result.id, "checksum").valid  # no key needed
        with pytest.raises(ConfigError, match="PGKEEP_AGE_IDENTITY_FILE is not set"):
            manage.verify_backup(ctx, result.id, "archive")
    finally:
        ctx.close()

    # Either recipient's key reads it.
    for who in ("ops", "vault"):
        ctx = make_context(tmp_path, source_db.url, age_recipients=recipients, age_identity_file=keys[who][0])
        try:
            assert manage.verify_backup(ctx, result.id).valid
        finally:
            ctx.close()
    ctx = make_context(tmp_path, source_db.url, age_identity_file=keys["vault"][0])
    try:
        restore(ctx, resolve_backup(ctx, result.id), RestoreOptions(target_url=empty_db.url))
        assert diff_fingerprints(fingerprint(source_db.conninfo), fingerprint(empty_db.conninfo)) == []
        artifact = artifact_for_row(get_row(ctx, result.id), ctx.settings)
        assert b"CREATE ROLE" in artifact.decoded_globals(globals_file.read_bytes())
        # An uncatalogued copy of the file is recognised through its encryption.
        outcome = restore(ctx, resolve_file(ctx, stored), RestoreOptions(dry_run=True))
        assert outcome.dry_run and outcome.checksum == row.checksum
    finally:
        ctx.close()


def test_wrong_key_fails_clearly_and_touches_nothing(
    tmp_path: Path, source_db: DbHandle, keys: dict[str, tuple[Path, str]]
) -> None:
    ctx = make_context(tmp_path, source_db.url, age_recipients=keys["ops"][1])
    try:
        result = create_backup(ctx)
    finally:
        ctx.close()
    with psycopg.connect(source_db.conninfo) as conn:
        conn.execute("UPDATE users SET display_name = 'changed' WHERE id <= 5")
    before = fingerprint(source_db.conninfo)
    ctx = make_context(tmp_path, source_db.url, age_identity_file=keys["stranger"][0])
    try:
        with pytest.raises(ConfigError) as caught:
            restore(ctx, resolve_backup(ctx, result.id), RestoreOptions())
        message = str(caught.value)
        assert "PGKEEP_AGE_IDENTITY_FILE" in message and "not one of its recipients" in message
        assert crypto.fingerprint(keys["ops"][1]) in message
        assert keys["stranger"][0].read_text().splitlines()[-1] not in message  # never the private key
        assert fingerprint(source_db.conninfo) == before
        with pytest.raises(ConfigError, match="not one of its recipients"):
            manage.verify_backup(ctx, result.id)
    finally:
        ctx.close()


def test_restore_by_hand_with_age_zstd_and_pg_restore(
    tmp_path: Path, source_db: DbHandle, empty_db: DbHandle, keys: dict[str, tuple[Path, str]]
) -> None:
    key, public = keys["ops"]
    ctx = make_context(tmp_path, source_db.url, age_recipients=public)
    try:
        result = create_backup(ctx)
    finally:
        ctx.close()
    stored = tmp_path / "backups" / result.filename
    # The README's recipe, verbatim but for the paths.
    recipe = (
        f"sha256sum '{stored}' && "
        f"age -d -i '{key}' '{stored}' | zstd -d | "
        f"'{PG15_BIN_DIR}/pg_restore' --no-owner --exit-on-error --dbname='{empty_db.conninfo}'"
    )
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", recipe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == result.checksum  # the catalog's checksum is sha256sum's
    assert diff_fingerprints(fingerprint(source_db.conninfo), fingerprint(empty_db.conninfo)) == []
