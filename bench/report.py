"""Medians, ratios, and the Markdown and JSON files."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.memory import MemoryResult
from bench.methods import KINDS, REFERENCES, SIZE_REFERENCES, TARGETS, Method, Sample

MB = 1_000_000


@dataclass
class MethodResult:
    method: Method
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    def median(self, attr: str) -> float | None:
        values = [getattr(s, attr) for s in self.samples if getattr(s, attr) is not None]
        return statistics.median(values) if values else None

    def peak(self, attr: str) -> int | None:
        values = [getattr(s, attr) for s in self.samples if getattr(s, attr) is not None]
        return max(values) if values else None

    def others_load(self) -> float | None:
        """Median number of CPUs other processes kept busy during the runs."""
        loads = [s.others_cpu_s / s.wall_s for s in self.samples if s.wall_s > 0]
        return statistics.median(loads) if loads else None

    def summary(self) -> dict[str, Any]:
        walls = [s.wall_s for s in self.samples]
        return {
            "key": self.method.key,
            "label": self.method.label,
            "kind": self.method.kind,
            "runs": len(self.samples),
            "error": self.error,
            "wall_s_median": self.median("wall_s"),
            "wall_s_min": min(walls) if walls else None,
            "wall_s_max": max(walls) if walls else None,
            "size_bytes_median": self.median("size_bytes"),
            "cpu_s_median": self.median("cpu_s"),
            "server_cpu_s_median": self.median("server_cpu_s"),
            "own_rss_peak": self.peak("own_rss"),
            "tree_rss_peak": self.peak("tree_rss"),
            "others_load_median": self.others_load(),
            "storage_cpu_s_median": self.median("storage_cpu_s"),
            "samples": [asdict(s) for s in self.samples],
        }


def round_ratios(row: MethodResult, base: MethodResult, measure: str) -> list[float]:
    """``row``'s value over ``base``'s within each round, in round order.

    Methods alternate within a round, so the two samples of one round saw the
    same machine; a ratio per round is not moved by drift between rounds the
    way the ratio of the two medians (which may come from different rounds)
    is. Samples are kept in round order and a failed method stops being
    measured, so the i-th samples of both rows come from round i.
    """
    ratios = []
    for mine, theirs in zip(row.samples, base.samples, strict=False):
        value, ref = getattr(mine, measure), getattr(theirs, measure)
        if value is not None and ref:
            ratios.append(value / ref)
    return ratios


def verdict(judged: dict[str, Any]) -> str:
    """How a target line reads: the ratio of the medians, and how the single rounds fell."""
    if judged["ratio"] is None:
        return "not judged (a row failed)"
    text = f"{judged['ratio']:.2f} ({'met' if judged['met'] else 'not met'}"
    rounds = judged["round_ratios"]
    if len(rounds) > 1:
        low, high = f"{min(rounds):.2f}", f"{max(rounds):.2f}"
        spread = f"every round {low}" if low == high else f"per round {low}-{high}"
        text += f"; {spread}, met in {judged['rounds_met']} of {len(rounds)}"
    return text + ")"


@dataclass
class DatasetResult:
    name: str
    description: str
    facts: dict[str, Any]
    methods: list[MethodResult]

    def by_key(self) -> dict[str, MethodResult]:
        return {m.method.key: m for m in self.methods}

    def targets(self) -> list[dict[str, Any]]:
        """Issue 7's targets that this data set's rows can judge (both rows measured)."""
        keyed = self.by_key()
        judged = []
        for target in TARGETS:
            row, base = keyed.get(target.key), keyed.get(target.baseline)
            if row is None or base is None:
                continue
            value, ref = row.median(target.measure), base.median(target.measure)
            ratio = value / ref if value is not None and ref else None
            rounds = round_ratios(row, base, target.measure)
            judged.append(
                {
                    "key": target.key,
                    "baseline": target.baseline,
                    "what": target.what,
                    "measure": target.measure,
                    "at_most": target.at_most,
                    "ratio": ratio,
                    "met": None if ratio is None else ratio <= target.at_most,
                    "round_ratios": rounds,
                    "rounds_met": sum(r <= target.at_most for r in rounds),
                }
            )
        return judged

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "facts": self.facts,
            "methods": [m.summary() for m in self.methods],
            "targets": self.targets(),
        }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None, ref: float | None) -> str:
    if value is None or not ref:
        return "-"
    return f"{value / ref:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


TABLE_TITLES = {
    "backup": "Backups",
    "restore": "Restores",
    "physical": "Physical backups (the whole cluster; compare with each other, not with the logical rows)",
}


def _rss(result: MethodResult) -> str:
    own = result.peak("own_rss")
    if own is not None:
        return f"{own / MB:.0f}"
    tree = result.peak("tree_rss")
    return "-" if tree is None else f"({tree / MB:.0f})"


def dataset_markdown(data: DatasetResult, runs: int) -> str:
    facts = data.facts
    lines = [f"### {data.name}: {data.description}", ""]
    plain = facts.get("plain_dump_bytes")
    lines.append(
        f"Database {facts['database_bytes'] / MB:.0f} MB on disk, plain dump "
        f"{_fmt(plain / MB if plain else None, 0)} MB, loaded in {facts['load_s']} s. Rows: "
        + ", ".join(f"{table} {count:,}" for table, count in facts["rows"].items())
        + "."
    )
    keyed = data.by_key()
    for kind in KINDS:
        rows = [m for m in data.methods if m.method.kind == kind]
        if not rows:
            continue
        refs = REFERENCES[kind]
        ref_walls = [keyed[k].median("wall_s") if k in keyed else None for k, _ in refs]
        size_ref = SIZE_REFERENCES.get(kind)
        head = ["method", f"wall s (median of {runs})", "min-max"] + [h for _, h in refs]
        if size_ref is not None:
            head += ["output MB", size_ref[1]]
        if kind == "backup":
            head += ["plain/output"]
        head += ["client CPU s", "server CPU s", "peak RSS MB", "other load"]
        lines += ["", f"**{TABLE_TITLES[kind]}**", ""]
        if kind == "physical" and facts.get("cluster_bytes"):
            lines += [f"Cluster {facts['cluster_bytes'] / MB:.0f} MB on disk (every database).", ""]
        lines += [
            "| " + " | ".join(_cell(h) for h in head) + " |",
            "|" + "---|" * len(head),
        ]
        for result in rows:
            label = _cell(result.method.label)
            if result.error is not None:
                lines.append(f"| {label} | failed: {_cell(result.error[:200])} |")
                continue
            wall = result.median("wall_s")
            cells = [
                label,
                _fmt(wall),
                f"{_fmt(result.summary()['wall_s_min'])}-{_fmt(result.summary()['wall_s_max'])}",
            ]
            cells += [_ratio(wall, ref) for ref in ref_walls]
            size = result.median("size_bytes")
            if size_ref is not None:
                ref_row = keyed.get(size_ref[0])
                cells += [
                    _fmt(size / MB if size else None, 1),
                    _ratio(size, ref_row.median("size_bytes") if ref_row else None),
                ]
            if kind == "backup":
                cells += [_ratio(plain, size) if size else "-"]
            cells += [
                _fmt(result.median("cpu_s")),
                _fmt(result.median("server_cpu_s")),
                _rss(result),
                _fmt(result.others_load(), 1),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    judged = data.targets()
    if judged:
        lines += ["", "**Against issue 7's targets**", ""]
        for t in judged:
            lines.append(f"- {t['what']}: {verdict(t)}; target at most {t['at_most']:g}")
    lines.append("")
    return "\n".join(lines)


NOTES = """\
- wall s: median of the runs; methods alternate within each round, so drift hits all alike.
- targets: the ratio of the medians, then the ratio within each round (both samples of a
  round ran back to back, so drift between rounds does not move it) and in how many rounds
  the target was met. A target met in some rounds and missed in others is not a verdict.
- vs columns: the median wall time divided by the reference row's (backups: the floor
  `pg_dump -Fp > /dev/null` and the spec's `pg_dump -Fp | gzip -9`; restores:
  `pg_restore -j N` of the `-Fc` dump and the spec's `gunzip | psql`; physical backups:
  pgBackRest's full backup).
- size vs: output size over the reference's (the spec pipeline's; pgBackRest's repository
  size for physical backups); plain/output: compression ratio against the plain dump.
- S3 rows: pgkeep's S3 client against SeaweedFS on loopback, data on the same disk as the
  local rows; SeaweedFS's own CPU is in the JSON (`storage_cpu_s`), not in other load.
- Physical backups: each tool runs with its own archive_command (`pgkeep wal-push` into a
  local archive, `pgbackrest archive-push`), since both wait for the backup's WAL to be
  archived; between physical measurements the cluster archives to `/bin/true`, so logical
  restores are not slowed by an archiver. Server CPU includes the archive_command runs.
- client CPU s: user+system time of the client process tree (wait4 on each process of
  the pipeline; includes pg_dump under pgkeep). server CPU s: every PostgreSQL process.
- peak RSS MB: for pgkeep rows, pgkeep's own Python process (VmHWM, sampled every 20 ms);
  in parentheses for the others, the largest client process (VmHWM, pg_dump's workers and
  pgBackRest's processes included).
- other load: CPUs kept busy by processes outside the benchmark during the runs (median;
  from /proc/stat minus the client and server CPU). Above ~0.2 the machine was shared
  and wall times are longer than they would be on a quiet machine; CPU times are not.
- Restores go into a fresh empty database each time, dropped afterwards.
"""


def header_markdown(meta: dict[str, Any]) -> str:
    m, v, s = meta["machine"], meta["versions"], meta["settings"]
    server = ", ".join(f"{k}={val}" for k, val in meta["server_settings"].items())
    return "\n".join(
        [
            f"Measured {meta['date']} on {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, "
            f"Linux {m['kernel']}.",
            "",
            f"Versions: PostgreSQL server {v['postgresql_server']}, {v['pg_dump']}, "
            f"pgkeep {v['pgkeep']}, Python {v['python']}, zstandard {v['zstandard']} "
            f"(decompression: {v.get('zstd_decompression', 'zstandard')}), "
            f"psycopg {v['psycopg']}, {v['gzip']}, {v.get('pgbackrest', 'pgBackRest: not recorded')}.",
            "",
            f"Settings: `python -m bench {s['command_line']}` (repeat {s['repeat']}, jobs N = "
            f"{s['jobs']}). Benchmark cluster: {server}.",
            "",
        ]
    )


def write_reports(
    out: Path, meta: dict[str, Any], datasets: list[DatasetResult], memory: MemoryResult | None = None
) -> list[Path]:
    """Write <date>-<dataset>.md (and -memory.md), latest.md, <date>.json and latest.json; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    day = meta["date"][:10]
    runs = meta["settings"]["repeat"]
    head = header_markdown(meta)
    written: list[Path] = []
    sections = []
    for data in datasets:
        section = dataset_markdown(data, runs)
        sections.append(section)
        path = out / f"{day}-{data.name}.md"
        path.write_text(f"# pgkeep benchmark: {data.name}\n\n{head}\n{section}\n{NOTES}")
        written.append(path)
    if memory is not None:
        section = memory.markdown()
        sections.append(section)
        path = out / f"{day}-memory.md"
        path.write_text(f"# pgkeep benchmark: memory\n\n{head}\n{section}")
        written.append(path)
    latest = out / "latest.md"
    latest.write_text("# pgkeep benchmark\n\n" + head + "\n" + "\n".join(sections) + "\n" + NOTES)
    written.append(latest)
    payload = {
        **meta,
        "datasets": [d.as_json() for d in datasets],
        "memory": memory.as_json() if memory is not None else None,
    }
    for name in (f"{day}.json", "latest.json"):
        path = out / name
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        written.append(path)
    return written


def write_section(out: Path, name: str, date: str, markdown: str, payload: dict[str, Any]) -> list[Path]:
    """A report of its own (e.g. ``--api``): <date>-<name>.md/.json and <name>-latest.md/.json.

    Kept apart from latest.md/latest.json, so running one section does not
    overwrite the backup/restore report.
    """
    out.mkdir(parents=True, exist_ok=True)
    day = date[:10]
    written: list[Path] = []
    for stem in (f"{day}-{name}", f"{name}-latest"):
        md, js = out / f"{stem}.md", out / f"{stem}.json"
        md.write_text(markdown)
        js.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        written += [md, js]
    return written
