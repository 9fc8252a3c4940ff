"""``--memory-check``: does pgkeep's own memory grow with the database?

Issue 7's target: pgkeep's peak RSS does not grow with database size
(two sizes 10x apart: at most 10% more). The realistic data set is loaded
at each size of ``--memory-sizes`` in turn (default 100 and 1000 MB of
text), and pgkeep's default backup, a verify of it (``--level archive``:
every byte read, decompressed and hashed) and a restore into a fresh
database each run once. What is compared is pgkeep's own process's
``VmHWM`` (sampled every 20 ms; pg_dump and pg_restore under it are
not counted): a streaming pipeline's should be the same at any size.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.methods import Env, Sample, all_methods

DEFAULT_SIZES = (100.0, 1000.0)
TINY_SIZES = (1.0, 10.0)
TARGET_AT_MOST = 1.10
# (key, label): the operations measured at every size, in this order.
OPERATIONS = (
    ("backup", "`pgkeep backup` (defaults)"),
    ("verify", "`pgkeep verify` (archive level)"),
    ("restore", "`pgkeep restore` (defaults)"),
)


def parse_sizes(text: str) -> tuple[float, ...]:
    """``"100,1000"`` -> (100.0, 1000.0); at least two positive sizes, ascending."""
    try:
        sizes = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--memory-sizes {text!r}: comma-separated numbers of MB, e.g. 100,1000") from None
    if len(sizes) < 2 or any(s <= 0 for s in sizes) or list(sizes) != sorted(set(sizes)):
        raise ValueError(f"--memory-sizes {text!r}: at least two different positive sizes, smallest first")
    return sizes


@dataclass
class MemoryPoint:
    """The measurements at one data size."""

    size_mb: float
    facts: dict[str, Any]
    samples: dict[str, Sample] = field(default_factory=dict)  # operation -> its one sample
    errors: dict[str, str] = field(default_factory=dict)

    def rss(self, operation: str) -> int | None:
        sample = self.samples.get(operation)
        return sample.own_rss if sample is not None else None


def measure_point(env: Env, point: MemoryPoint) -> None:
    """Back up, verify and restore once on ``env``'s database; failures are recorded, not raised."""
    methods = {m.key: m for m in all_methods()}

    def verify(env: Env) -> Sample:
        backup_id = str(env.artifacts["pgkeep"])
        return env.run([env.pgkeep_stage(["verify", backup_id, "--level", "archive", "--json"])])[1]

    steps = {"backup": methods["pgkeep"].measure, "verify": verify, "restore": methods["pgkeep-restore"].measure}
    for operation, _ in OPERATIONS:
        if operation != "backup" and "pgkeep" not in env.artifacts:
            point.errors[operation] = "the backup failed"
            continue
        try:
            point.samples[operation] = steps[operation](env)
        except Exception as exc:
            point.errors[operation] = f"{type(exc).__name__}: {exc}"


@dataclass
class MemoryResult:
    points: list[MemoryPoint]

    def ratio(self, operation: str) -> float | None:
        """Peak RSS at the largest size over the smallest's."""
        small, large = self.points[0].rss(operation), self.points[-1].rss(operation)
        return large / small if small and large else None

    def worst_ratio(self) -> float | None:
        ratios = [r for op, _ in OPERATIONS if (r := self.ratio(op)) is not None]
        return max(ratios) if ratios else None

    def as_json(self) -> dict[str, Any]:
        return {
            "sizes_mb": [p.size_mb for p in self.points],
            "target_at_most": TARGET_AT_MOST,
            "operations": [
                {
                    "key": op,
                    "label": label,
                    "own_rss": [p.rss(op) for p in self.points],
                    "wall_s": [p.samples[op].wall_s if op in p.samples else None for p in self.points],
                    "errors": [p.errors.get(op) for p in self.points],
                    "ratio": self.ratio(op),
                }
                for op, label in OPERATIONS
            ],
            "points": [
                {
                    "size_mb": p.size_mb,
                    "facts": p.facts,
                    "samples": {op: asdict(s) for op, s in p.samples.items()},
                    "errors": p.errors,
                }
                for p in self.points
            ],
        }

    def markdown(self) -> str:
        mb = 1_000_000
        small, large = self.points[0], self.points[-1]
        lines = [
            "### memory: pgkeep's peak RSS at two data sizes",
            "",
            "The realistic data set at "
            + " and ".join(
                f"{p.size_mb:g} MB of text (database {p.facts['database_bytes'] / mb:.0f} MB, plain dump "
                f"{p.facts.get('plain_dump_bytes', 0) / mb:.0f} MB)"
                for p in self.points
            )
            + "; each operation once per size. Peak RSS: pgkeep's own process (VmHWM), not its children.",
            "",
        ]
        head = ["operation"]
        head += [f"peak RSS MB at {p.size_mb:g} MB" for p in self.points]
        head += [f"wall s at {p.size_mb:g} MB" for p in (small, large)]
        head += [f"RSS {large.size_mb:g} / {small.size_mb:g} MB", f"target (at most {TARGET_AT_MOST:.2f})"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for op, label in OPERATIONS:
            cells = [label]
            for p in self.points:
                rss = p.rss(op)
                cells.append(f"{rss / mb:.0f}" if rss else f"failed: {p.errors.get(op, '?')[:120]}")
            for p in (small, large):
                cells.append(f"{p.samples[op].wall_s:.2f}" if op in p.samples else "-")
            ratio = self.ratio(op)
            cells.append("-" if ratio is None else f"{ratio:.2f}")
            cells.append("-" if ratio is None else ("met" if ratio <= TARGET_AT_MOST else "not met"))
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        rss_all = [r for p in self.points for op, _ in OPERATIONS if (r := p.rss(op))]
        if rss_all:
            lines += [
                "",
                f"Peak RSS over every operation and size: {max(rss_all) / mb:.0f} MB "
                f"(median {statistics.median(rss_all) / mb:.0f} MB; issue 7's target: under 150 MB).",
            ]
        lines.append("")
        return "\n".join(lines)
