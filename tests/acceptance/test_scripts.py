"""scripts/backup.sh and scripts/restore.sh: the spec's interface, awkward passwords, .env parsing."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import DbHandle
from pgkeep.fingerprint import fingerprint

REPO = Path(__file__).resolve().parents[2]
BACKUP_SH = REPO / "scripts" / "backup.sh"
RESTORE_SH = REPO / "scripts" / "restore.sh"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGKEEP_", "DATABASE_URL", "BACKUP_DIR"))}
    env["PGKEEP"] = str(Path(sys.executable).parent / "pgkeep")
    return env


@pytest.mark.parametrize("quote", ["", '"', "'"])
def test_backup_script_reads_env_file_with_awkward_password(tmp_path: Path, source_db: DbHandle, quote: str) -> None:
    # The URL carries the percent-encoded awkward password; the .env value is
    # unquoted, double- or single-quoted as dotenv files allow.
    (tmp_path / ".env").write_text(
        f"# comment line\nDATABASE_URL={quote}{source_db.url}{quote}\nBACKUP_DIR={quote}./my backups{quote}\n"
    )
    run = subprocess.run(
        ["bash", str(BACKUP_SH), "pre_migration"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "Starting pre_migration backup" in run.stdout
    assert "Backup completed!" in run.stdout
    file_line = re.search(r"File: (.+)", run.stdout)
    size_line = re.search(r"Size: (\d+) bytes", run.stdout)
    checksum_line = re.search(r"Checksum: ([0-9a-f]{64})", run.stdout)
    assert file_line and size_line and checksum_line, run.stdout
    path = Path(file_line.group(1).strip())
    assert path.parent == (tmp_path / "my backups").resolve()
    assert re.fullmatch(
        rf"{source_db.name}-backup-pre_migration-\d{{4}}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{{3}}Z\.dump\.zst", path.name
    )
    assert path.stat().st_size == int(size_line.group(1))
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == checksum_line.group(1)


def test_restore_script_dry_run_then_typed_yes(tmp_path: Path, source_db: DbHandle, empty_db: DbHandle) -> None:
    (tmp_path / ".env").write_text(f"DATABASE_URL='{source_db.url}'\n")
    env = _env(tmp_path)
    backup = subprocess.run(
        ["bash", str(BACKUP_SH)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert backup.returncode == 0, backup.stderr
    path = re.search(r"File: (.+)", backup.stdout).group(1).strip()  # type: ignore[union-attr]
    expected = fingerprint(source_db.conninfo)

    # Restore into the empty database: point .env at it.
    (tmp_path / ".env").write_text(f'DATABASE_URL="{empty_db.url}"\n')
    dry = subprocess.run(
        ["bash", str(RESTORE_SH), path, "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert dry.returncode == 0, dry.stderr
    assert "Checksum:" in dry.stdout and "Backup file is valid" in dry.stdout
    assert "Dry run" in dry.stdout
    assert fingerprint(empty_db.conninfo) == {}

    def without_a_terminal(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(RESTORE_SH), path, *args],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )

    # No terminal and no --yes: refused, nothing changed.
    refused = without_a_terminal()
    assert refused.returncode == 7, refused.stdout + refused.stderr
    assert fingerprint(empty_db.conninfo) == {}

    # On a terminal, typing "yes" restores.
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            ["bash", str(RESTORE_SH), path],
            cwd=tmp_path,
            env=env,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(master, b"yes\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, out + err
    assert "restored successfully" in out
    assert fingerprint(empty_db.conninfo) == expected

    # Automation confirms in advance, as the refusal's hint says.
    assert "--yes" in refused.stderr
    confirmed = without_a_terminal("--yes")
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert "restored successfully" in confirmed.stdout
    assert fingerprint(empty_db.conninfo) == expected


def test_restore_script_usage_and_missing_file(tmp_path: Path) -> None:
    env = _env(tmp_path)
    usage = subprocess.run(["bash", str(RESTORE_SH)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert usage.returncode == 2 and "Usage" in usage.stdout
    missing = subprocess.run(
        ["bash", str(RESTORE_SH), "nope.sql.gz"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert missing.returncode == 3 and "not found" in missing.stdout
