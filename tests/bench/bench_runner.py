"""Running ``python -m bench`` as the test suite's smoke runs do (timings are never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600  # generous: a shared CI machine can be slow; the runs take from half a minute to 2 minutes


def run_bench(out: Path, *args: str) -> Path:
    """``python -m bench ARGS --out OUT`` from the repository root; fails the test on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"python -m bench {' '.join(args)} failed:\n{result.stderr[-4000:]}"
    return out
