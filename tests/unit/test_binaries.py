"""Finding client binaries whose major version fits the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import PG15_BIN_DIR, write_script
from pgkeep.errors import ClientVersionError, ExitCode
from pgkeep.pgtools.binaries import find_tool, tool_version


def fake_bin_dir(root: Path, version_line: str, name: str = "pg_dump") -> Path:
    write_script(root / name, f'echo "{version_line}"\n')
    return root


def test_version_is_read_from_the_binary(tmp_path: Path) -> None:
    d = fake_bin_dir(tmp_path, "pg_dump (PostgreSQL) 14.1")
    assert tool_version(d / "pg_dump") == ("14.1", 14)
    d2 = fake_bin_dir(tmp_path / "deb", "pg_dump (PostgreSQL) 17.2 (Debian 17.2-1.pgdg120+1)")
    assert tool_version(d2 / "pg_dump") == ("17.2", 17)


def test_configured_dir_with_a_new_enough_tool_is_used(tmp_path: Path) -> None:
    d = fake_bin_dir(tmp_path, "pg_dump (PostgreSQL) 14.1")
    tool = find_tool("pg_dump", 14, d)
    assert (tool.path, tool.version, tool.major) == (d / "pg_dump", "14.1", 14)
    assert find_tool("pg_dump", 12, d).version == "14.1"


def test_configured_dir_too_old_names_both_versions_and_the_fix(tmp_path: Path) -> None:
    d = fake_bin_dir(tmp_path, "pg_dump (PostgreSQL) 14.1")
    with pytest.raises(ClientVersionError) as info:
        find_tool("pg_dump", 15, d)
    text = str(info.value)
    assert "PostgreSQL 15" in text
    assert "14.1" in text
    assert "PGKEEP_PG_BIN_DIR" in text
    assert info.value.exit_code is ExitCode.CONFIG


def test_configured_dir_is_never_replaced_by_another(tmp_path: Path) -> None:
    # A usable pg_dump 15 exists on this machine; an explicit empty dir must still fail.
    assert (PG15_BIN_DIR / "pg_dump").exists()
    with pytest.raises(ClientVersionError, match=str(tmp_path)):
        find_tool("pg_dump", 15, tmp_path)


def test_configured_dir_with_unparsable_output_fails(tmp_path: Path) -> None:
    d = fake_bin_dir(tmp_path, "pg_dump version unknown")
    with pytest.raises(ClientVersionError, match="not usable"):
        find_tool("pg_dump", 15, d)


def test_system_tools_are_found_by_server_major() -> None:
    tool = find_tool("pg_dump", 15)
    assert tool.path == PG15_BIN_DIR / "pg_dump"
    assert tool.major == 15 and tool.version.startswith("15.")
    assert find_tool("pg_restore", 15).path == PG15_BIN_DIR / "pg_restore"


def test_no_tool_new_enough_on_the_machine() -> None:
    with pytest.raises(ClientVersionError) as info:
        find_tool("pg_dump", 99)
    text = str(info.value)
    assert "PostgreSQL 99" in text
    assert "postgresql-client-99" in text
