"""Where a finished workflow run spent its time: the rules' `benchmark:` files summed by stage.

    .venv/bin/python benchmarks/workflow.py [results/default]

One row per stage (the first two folders under benchmarks/, e.g. ablations/random or students/blockswap):
jobs, wall seconds summed over jobs, CPU seconds (user + system), mean wall per job and peak memory. Jobs
run in parallel, so the sum of wall seconds exceeds the run's wall time by about the number of cores used.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path


def stage_of(tsv: Path, root: Path) -> str:
    parts = tsv.relative_to(root).parts
    return parts[0] if parts[0] == "teachers" else "/".join(parts[:2])


def summarise(results: Path) -> list[tuple[str, int, float, float, float]]:
    root = results / "benchmarks"
    totals = defaultdict(lambda: [0, 0.0, 0.0, 0.0])  # jobs, wall s, cpu s, peak MB
    for tsv in sorted(root.rglob("*.tsv")):
        with tsv.open() as f:
            row = list(csv.DictReader(f, delimiter="\t"))[-1]  # the last repeat
        t = totals[stage_of(tsv, root)]
        t[0] += 1
        t[1] += float(row["s"])
        t[2] += float(row["cpu_time"])
        t[3] = max(t[3], float(row["max_rss"]))
    return sorted(((k, *v) for k, v in totals.items()), key=lambda r: -r[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="?", default="results/default", type=Path)
    results = parser.parse_args().results
    rows = summarise(results)
    if not rows:
        raise SystemExit(f"no benchmark files under {results / 'benchmarks'}: run the workflow first")
    print(f"{'stage':32s} {'jobs':>4s} {'wall s':>8s} {'CPU s':>8s} {'s/job':>6s} {'peak MB':>8s}")
    for stage, jobs, wall, cpu, peak in rows:
        print(f"{stage:32s} {jobs:4d} {wall:8.0f} {cpu:8.0f} {wall / jobs:6.1f} {peak:8.0f}")
    print(f"{'total':32s} {sum(r[1] for r in rows):4d} {sum(r[2] for r in rows):8.0f} "
          f"{sum(r[3] for r in rows):8.0f}")


if __name__ == "__main__":
    main()
