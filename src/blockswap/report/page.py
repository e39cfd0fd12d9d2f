"""A profile's results page, written by the run itself: `results/<profile>/RESULTS.md`.

The page holds the report's tables as the report wrote them (the claims and main tables whole, the others
linked), its figures, and what the run was: the commit its result files record (their provenance), the
machine, the thread counts of its jobs, and the wall and CPU time of the jobs the workflow benchmarked
(`results/<profile>/benchmarks/**/*.tsv`, Snakemake's `s` and `cpu_time` columns). Every number on the page
is copied from those files or summed from them; none is typed in. `copy_to_docs` puts the page, with its
figures, into the documentation (`docs/results/<profile>.md`).
"""

from __future__ import annotations

import csv
import json
import platform
import shutil
from collections import Counter
from pathlib import Path

from ..core.errors import BlockswapError
from ..core.files import git_sha, write_text

SHOWN = ("claims", "main", "structured", "detection")  # tables shown whole, in this order; the others linked
COMPRESS_TABLE = "table.md"  # the compress profile's one table (`blockswap compress-table`), beside pareto.png
PAGE = "RESULTS.md"


def cpu_model() -> str:
    """This machine's CPU model as /proc/cpuinfo names it, and how many CPUs there are."""
    import os

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs"


def _provenances(results: Path) -> list[dict]:
    found = []
    for path in sorted(results.rglob("metrics.json")) + sorted(results.rglob("report.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        prov = record.get("provenance") if isinstance(record, dict) else None
        if isinstance(prov, dict):
            found.append(prov)
    return found


def benchmarks(results: Path) -> dict:
    """The benchmarked jobs' time: {"jobs", "wall_s", "cpu_s", "elapsed_s"}. wall and CPU are summed over the
    jobs; elapsed runs from the first job's start (its file's time less its seconds) to the last one's end."""
    jobs, wall, cpu, starts, ends = 0, 0.0, 0.0, [], []
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        for row in rows:
            try:
                seconds, cpu_time = float(row["s"]), float(row.get("cpu_time") or 0)
            except (KeyError, ValueError):
                continue
            jobs += 1
            wall += seconds
            cpu += cpu_time
            ends.append(path.stat().st_mtime)
            starts.append(ends[-1] - seconds)
    return {"jobs": jobs, "wall_s": wall, "cpu_s": cpu, "elapsed_s": max(ends) - min(starts) if jobs else 0.0}


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    return (f"{h} h {rest // 60} min" if h else f"{rest // 60} min {rest % 60} s") + f" ({seconds:,} s)"


def facts(results: Path, machine: str | None = None) -> dict:
    """What the run was, from its own files (see the module's docstring)."""
    provs = _provenances(results)
    shas = Counter(p.get("git_sha") for p in provs if p.get("git_sha"))
    threads = sorted({p.get("threads", p.get("config", {}).get("threads")) for p in provs} - {None})
    hosts = sorted({p["host"] for p in provs if p.get("host")})
    return {"commits": shas.most_common() or [(git_sha() or "unknown", 0)], "result_files": len(provs),
            "machine": machine or cpu_model(), "hosts": hosts, "threads": threads, **benchmarks(results)}


def _table_text(path: Path) -> str:
    """A report's Markdown table as the report wrote it: its caption, the table, its notes."""
    return path.read_text().strip() + "\n"


def render(results: Path, profile: str, machine: str | None = None, links: str = "") -> str:
    """RESULTS.md of `results` (a profile's results folder). `links`: what goes before the folder's own paths
    in links and images (the docs' copy puts its figures elsewhere)."""
    tables = results / "tables"
    f = facts(results, machine)
    commit, count = f["commits"][0]
    others = ", ".join(f"`{sha[:12]}` ({n})" for sha, n in f["commits"][1:])
    lines = [f"# Results: the {profile} profile", "",
             f"Written by the run itself (`blockswap results-page`) from its files in `{results}`: nothing on this "
             "page is typed in, and rerunning the profile writes it again.", "",
             "| | |", "|---|---|",
             f"| commit | `{commit}`" + (f" ({count} of {f['result_files']} result files)" if count else " (no result "
                                          "file records one: the checkout writing this page)")
             + (f"; also {others}" if others else "") + " |",
             f"| machine | {f['machine']}" + (f"; jobs ran on {', '.join(f['hosts'])}" if f["hosts"] else "") + " |",
             f"| threads per job | {', '.join(map(str, f['threads'])) or 'not recorded'} |"]
    if f["jobs"]:
        lines += [f"| benchmarked jobs | {f['jobs']}: {_duration(f['wall_s'])} of wall time, "
                  f"{_duration(f['cpu_s'])} of CPU time, summed over the jobs |",
                  f"| elapsed | {_duration(f['elapsed_s'])}, from the first benchmarked job's start to the last "
                  "one's end |"]
    else:
        lines.append("| benchmarked jobs | none recorded |")
    lines.append("")
    shown = [tables / f"{name}.md" for name in SHOWN if (tables / f"{name}.md").is_file()]
    shown += [results / COMPRESS_TABLE] if (results / COMPRESS_TABLE).is_file() else []
    if not shown:
        raise BlockswapError(f"{results}: no report tables there (tables/claims.md, tables/main.md, "
                             f"{COMPRESS_TABLE}, …); run the profile's report first")
    for path in shown:
        title = path.stem if path.name != COMPRESS_TABLE else "compress"
        lines += [f"## {title.capitalize()}", "", _table_text(path)]
    others = sorted(p for p in tables.glob("*.md") if p not in shown) if tables.is_dir() else []
    if others:
        lines += ["## Other tables", ""] + [f"- `{p.relative_to(results)}` (also .csv and .tex)" for p in others] + [""]
    figures = sorted((results / "figures").glob("*.png")) + sorted(results.glob("*.png"))
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({links}{p.relative_to(results).as_posix()})" for p in figures] + [""]
    return "\n".join(lines)


def write_page(results: Path, profile: str, output: Path | None = None) -> Path:
    output = output or results / PAGE
    write_text(output, render(results, profile))
    return output


def copy_to_docs(results: Path, profile: str, docs: Path) -> Path:
    """docs/<profile>.md and its figures in docs/<profile>/, the links pointing there."""
    figures = sorted((results / "figures").glob("*.png")) + sorted(results.glob("*.png"))
    for path in figures:
        target = docs / profile / path.relative_to(results)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    page = docs / f"{profile}.md"
    write_text(page, render(results, profile, links=f"{profile}/"))
    return page
