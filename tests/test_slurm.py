"""Run a toy workflow through a real single-node SLURM cluster.

Skipped unless running as root with SLURM installed or apt-get available (the
cluster fixture installs slurmctld/slurmd/slurm-client/munge on first use).
Select or deselect with ``-m slurm`` / ``-m "not slurm"``.

The cluster fixture lives in ``tests/conftest_slurm.py`` so that later tests
(running the real blockswap workflow, cancelling a job mid-run with
``slurm_cluster.scancel``) can reuse it.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest_slurm import REPO, run_snakemake, slurm_cluster  # noqa: E402,F401

SMOKE_SNAKEFILE = REPO / "tests" / "slurm_smoke" / "Snakefile"

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_toy_workflow_runs_through_slurm(slurm_cluster, tmp_path):
    before = {j.job_id for j in slurm_cluster.jobs()}

    t0 = time.monotonic()
    proc = run_snakemake(
        slurm_cluster,
        ["--snakefile", str(SMOKE_SNAKEFILE), "--jobs", "4", "--latency-wait", "5"],
        cwd=tmp_path,  # the profile's relative slurm-logdir resolves against this
        timeout=300,
    )
    wall = time.monotonic() - t0
    print(f"\nsnakemake through SLURM took {wall:.1f}s (cluster start-up {slurm_cluster.startup_s:.1f}s)")
    log = proc.stdout
    assert proc.returncode == 0, f"snakemake failed (rc={proc.returncode}; 124/137 = timeout):\n{log[-6000:]}"

    # The workflow's outputs.
    assert (tmp_path / "raw" / "a.txt").read_text() == "hello a\n"
    assert (tmp_path / "raw" / "b.txt").read_text() == "hello b\n"
    assert (tmp_path / "upper" / "a.txt").read_text() == "HELLO A\n"
    assert (tmp_path / "upper" / "b.txt").read_text() == "HELLO B\n"
    assert (tmp_path / "gathered.txt").read_text() == "HELLO A\nHELLO B\n"

    # Every rule ran inside a SLURM job of this cluster ...
    rule_jobs = {
        "write_sample.a": "rule_write_sample_wildcards_a",
        "write_sample.b": "rule_write_sample_wildcards_b",
        "upcase_sample.a": "rule_upcase_sample_wildcards_a",
        "upcase_sample.b": "rule_upcase_sample_wildcards_b",
        "gather": "rule_gather",
    }
    recorded = {}
    for stem in rule_jobs:
        job_id, cluster_name = (tmp_path / "jobs" / f"{stem}.job").read_text().split()
        assert job_id.isdigit(), f"{stem} did not run inside a SLURM job (SLURM_JOB_ID={job_id})"
        assert cluster_name == "blockswap"
        recorded[stem] = job_id
    assert len(set(recorded.values())) == len(rule_jobs), "each rule instance needs its own SLURM job"

    # ... which snakemake reports having submitted ...
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", log))
    assert set(recorded.values()) <= submitted, (recorded, submitted)

    # ... which slurmctld knows as COMPLETED in our partition, named after the rule ...
    new_jobs = {j.job_id: j for j in slurm_cluster.jobs() if j.job_id not in before}
    for stem, job_id in recorded.items():
        job = new_jobs.get(job_id)
        assert job is not None, f"SLURM has no record of job {job_id} ({stem}): {new_jobs}"
        assert job.state == "COMPLETED", job
        assert job.partition == slurm_cluster.partition, job
        assert job.comment == rule_jobs[stem], job

    # ... and whose SLURM log is kept in the profile's log dir:
    # <slurm-logdir>/<rule>/<wildcards>/<jobid>.log
    logdir = tmp_path / "logs" / "slurm"
    for stem, job_id in recorded.items():
        rule, _, wildcard = stem.partition(".")
        path = logdir / f"rule_{rule}" / wildcard / f"{job_id}.log" if wildcard else logdir / f"rule_{rule}" / f"{job_id}.log"
        assert path.is_file(), f"missing SLURM log {path}; have {sorted(logdir.rglob('*.log'))}"
