"""RESULTS.md, the page a run writes about itself: every number on it comes from the run's files."""

import json
import os
import re

import pytest

from blockswap.cli import main
from blockswap.report import page

SHA = "deadbeef" * 5  # no digits, so none of the page's numbers can hide in it
CLAIMS = """**Claims of the paper, tested (Holm over 2 tests)**

| claim | setting | estimate [95% CI] | p (Holm) | verdict |
|:---|:---|---:|---:|:---|
| Fisher ρ < 0 | budget 40,000, k=1 | -0.41 [-0.62, -0.17] | 0.003 (0.006) | supported |
| mixed beats single | budget 40,000 | -1.27 [-2.90, +0.36] | 0.093 (0.093) | inconclusive |

- noise floor: sd 0.84 points over 3 seeds (2 df)
"""
MAIN = """**Main results (test error %, mean ± sd over seeds)**

| method | params | error |
|:---|---:|---:|
| teacher | 174,778 | 9.82 ± 0.11 |
| blockswap | 39,512 | 16.01 ± 0.55 |
"""
JOBS = {"teachers/seed0.tsv": (612.5, 1180.25), "students/blockswap/seed0.tsv": (301.75, 290.5)}


@pytest.fixture
def run(tmp_path):
    r = tmp_path / "results" / "default"
    (r / "tables").mkdir(parents=True)
    (r / "tables/claims.md").write_text(CLAIMS)
    (r / "tables/main.md").write_text(MAIN)
    (r / "tables/density.md").write_text("**Density**\n\n| a |\n|---:|\n| 7.5 |\n")
    (r / "figures").mkdir()
    (r / "figures/pareto_params.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for i, threads in enumerate((1, 2)):
        (r / f"students/s{i}").mkdir(parents=True)
        (r / f"students/s{i}/metrics.json").write_text(json.dumps(
            {"test_error": 16.01, "provenance": {"git_sha": SHA, "threads": threads, "host": "node-a"}}))
    end = 1_800_000_000.0
    for name, (wall, cpu) in JOBS.items():
        path = r / "benchmarks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{wall}\t0:00:00\t100.0\t{cpu}\n")
        os.utime(path, (end, end))
        end += 60
    return r


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)}


def test_every_number_on_the_page_comes_from_the_runs_files(run):
    text = page.render(run, "default", machine="test machine")
    wall = sum(w for w, _ in JOBS.values())
    cpu = sum(c for _, c in JOBS.values())
    elapsed = 1_800_000_060.0 - (1_800_000_000.0 - 612.5)  # the first job's start to the last one's end
    computed = (f"{len(JOBS)} {page._duration(wall)} {page._duration(cpu)} {page._duration(elapsed)} "
                f"2 of 2 result files, threads 1, 2")
    sources = CLAIMS + MAIN + (run / "tables/density.md").read_text() + computed
    assert numbers(text.replace(str(run), "")) <= numbers(sources)
    # and the tables are there whole, the figure linked, the facts filled in
    assert CLAIMS.strip() in text and MAIN.strip() in text and "`tables/density.md`" in text
    assert "![pareto_params](figures/pareto_params.png)" in text
    assert f"| commit | `{SHA}` (2 of 2 result files) |" in text
    assert "| threads per job | 1, 2 |" in text and "jobs ran on node-a" in text
    assert f"| benchmarked jobs | 2: {page._duration(914.25)} of wall time, {page._duration(1470.75)} of CPU" in text
    assert page._duration(914.25) == "15 min 14 s (914 s)"


def test_the_command_writes_the_page_and_its_docs_copy(run, tmp_path, capsys):
    docs = tmp_path / "docs" / "results"
    docs.mkdir(parents=True)
    assert main(["results-page", str(run), "--docs", str(docs)]) == 0
    assert (run / "RESULTS.md").read_text().startswith("# Results: the default profile")
    copy = (docs / "default.md").read_text()
    assert "![pareto_params](default/figures/pareto_params.png)" in copy
    assert (docs / "default/figures/pareto_params.png").read_bytes() == b"\x89PNG\r\n\x1a\n"


def test_a_folder_without_tables_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["results-page", str(tmp_path / "empty")]) == 2
    assert "no report tables there" in capsys.readouterr().err
    assert not (tmp_path / "empty/RESULTS.md").exists()
