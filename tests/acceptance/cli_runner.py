"""Running the installed ``pgkeep`` command in a subprocess, as a user would.

Each test gets its own catalog, storage directory and working directory (so no
``.env`` of the repository is read), configured through the environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import pgkeep_free_environ, run_on_a_terminal

PGKEEP = Path(sys.executable).parent / "pgkeep"


@dataclass
class Cli:
    """Runs ``pgkeep`` with a fixed environment in ``cwd``."""

    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        assert PGKEEP.is_file(), f"console script missing: {PGKEEP}"
        return [str(PGKEEP), *args]

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**pgkeep_free_environ(), **self.env, **(extra or {})}

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.cwd,
            env=self.environment(env),
            stdin=subprocess.DEVNULL,  # no terminal, as under cron or CI
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_many(self, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
        """Run independent commands at the same time (start-up dominates a short command)."""
        procs = [self.popen(*args) for args in commands]
        results = []
        for args, proc in zip(commands, procs, strict=True):
            out, err = proc.communicate(timeout=120)
            results.append(subprocess.CompletedProcess(self.command(*args), proc.returncode, out, err))
        return results

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.cwd,
            env=self.environment(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run_on_a_terminal(self, *args: str) -> tuple[int, str, str]:
        """Run with stderr on a pseudo-terminal (stdout a pipe): (exit code, stdout, the terminal's bytes)."""
        return run_on_a_terminal(self.command(*args), self.environment({"TERM": "xterm-256color"}), self.cwd)

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        result = self.run(*args, "--json", env=env)
        assert result.returncode == 0, (result.returncode, result.stderr)
        return json.loads(result.stdout)


def assert_one_clear_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The failure is reported as exactly one line on stderr, no traceback, with ``code``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def make_cli(tmp_path: Path, database_url: str) -> Cli:
    """pgkeep with a private catalog and storage under ``tmp_path``."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Cli(
        cwd=work,
        env={
            "DATABASE_URL": database_url,
            "PGKEEP_CATALOG_URL": f"sqlite:///{tmp_path}/catalog.db",
            "PGKEEP_STORAGE_URL": f"file://{tmp_path}/backups",
            "PGKEEP_STATE_DIR": str(tmp_path / "state"),
            "NO_COLOR": "1",
        },
    )
