"""SLURM execution: the profile's resource mapping, and the workflow run through a real SLURM cluster.

* ``test_profile_maps_config_resources_to_sbatch`` (no cluster, no root): for each config profile, the
  resources Snakemake computes per job (a dry run with the SLURM workflow profile) are fed to the SLURM
  plugin's own sbatch builder; threads must become --cpus-per-task, mem_mb --mem, runtime -t and gpu
  --gpus, and the default profile must ask for minutes on CPU while cifar10/imagenet ask for GPUs and hours.
* ``test_toy_workflow_runs_through_slurm``: a 3-rule toy workflow (tests/slurm_smoke) through SLURM.
* ``test_two_process_training_job_runs_through_slurm``: a training job of 2 data-parallel processes on the
  CPU (resources.train.processes) through SLURM: one job, one task, torchrun's 2 gloo ranks inside it,
  ending with the weights tests/test_ddp.py expects of 2 processes.
* ``test_workflow_through_slurm_equals_local_run``: the reduced config tests/workflow/slurm.yaml runs
  locally and through SLURM; every output must match (metrics timing/provenance aside).
* ``test_cancelled_training_job_resumes``: the teacher of that SLURM run is trained again, cancelled with
  scancel after its first epoch, retried by Snakemake (the profile's ``retries``) and must resume, ending
  with the uninterrupted local run's weights and metrics.

The cluster tests are skipped unless running as root with SLURM installed or apt-get available (the
cluster fixture installs slurmctld/slurmd/slurm-client/munge on first use). Select or deselect them
with ``-m slurm`` / ``-m "not slurm"``. The cluster fixture lives in ``tests/conftest_slurm.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import require_fashion_mnist  # noqa: E402
from conftest_slurm import (  # noqa: E402,F401
    REPO,
    SLURM_PROFILE,
    _snakemake_cmd,
    run_snakemake,
    slurm_cluster,
    start_snakemake,
    stop_process_group,
)

SMOKE_SNAKEFILE = REPO / "tests" / "slurm_smoke" / "Snakefile"
SNAKEFILE = REPO / "Snakefile"
SLURM_CONFIG = REPO / "tests" / "workflow" / "slurm.yaml"

# Which resource class (config `resources.<class>`) each rule takes its threads/mem/runtime/gpu from.
RULE_CLASS = {
    "train_teacher": "train", "import_teacher": "score", "distill_blockswap": "train",
    "distill_blockswap_repeat": "train", "distill_moonshine": "train",
    "distill_scaled": "train", "distill_mbconv": "train", "distill_random_net": "train",
    "distill_sample_count": "train", "distill_moonshine_kd": "train", "train_blockswap_scratch": "train",
    "train_moonshine_scratch": "train",
    "score_candidates": "score", "score_random_nets": "score", "score_n_candidates": "score",
    "sample_candidates": "light", "select_top": "light", "sample_random_nets": "light",
    "sample_n_candidates": "light", "select_n_top": "light",
    "report_results": "light", "report_correlation": "light", "report_proxy_zoo": "light", "report_density": "light",
    "report_samples": "light", "report_claims": "light", "results_page": "light",
    "distill_structured": "train", "distill_structured_repeat": "train", "train_structured_scratch": "train",
    "distill_structured_crs_off": "train",
    "report_structured": "light",
    # the detection stage's jobs take detection.resources
    "detect_make_set": "light", "detect_sample": "light", "detect_score": "detect_score",
    "detect_train_blockswap": "detect_train", "detect_train_single": "detect_train", "detect_figure": "light",
    "report_detection": "light",
}
# Metrics fields that differ between two runs of the same job (timings, host, git SHA, resumes).
TIMING_KEYS = ("wall_time_s", "provenance")


# ------------------------------------------------------------------------------------ resource mapping
class _Resources(dict):
    """Snakemake's job.resources as the plugin reads it: .get() and attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _dry_run_jobs(configfile: Path, workdir: Path) -> list[SimpleNamespace]:
    """Every job of a dry run with the SLURM workflow profile: rule, threads and computed resources."""
    # --cores: a dry run defaults to 1 core and caps every job's threads at it; a SLURM run leaves
    # --cores unset and does not cap them, so lift the cap to see the threads sbatch would get.
    cmd = [*_snakemake_cmd(), "-n", "--cores", "1024", "--snakefile", str(SNAKEFILE),
           "--workflow-profile", str(SLURM_PROFILE), "--configfile", str(configfile)]
    proc = subprocess.run(["timeout", "-k", "10", "300", *cmd], cwd=workdir, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    jobs = []
    # A job block: "rule NAME:" then indented fields ("localrule" ones never reach sbatch), then its command.
    for block in re.split(r"\n(?=\S)", out):
        if block.startswith("Shell command: ") and jobs:
            jobs[-1].command = block.removeprefix("Shell command: ").strip()
        head = re.match(r"rule (\w+):\n", block)
        if not head or head.group(1) == "all":  # `all` only collects inputs; it is never submitted
            continue
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)  # omitted when 1
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        resources = _Resources()
        for item in res.group(1).split(", ") if res else []:
            key, _, value = item.partition("=")
            resources[key] = int(value) if value.isdigit() else value
        jobs.append(SimpleNamespace(name=head.group(1), threads=int(threads.group(1)) if threads else 1,
                                    resources=resources, is_group=lambda: False, command=""))
    return jobs


def _sbatch_call(job) -> str:
    """The sbatch command line the SLURM plugin would submit for `job` (without --wrap)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    params = {"run_uuid": "uuid", "slurm_logfile": "log/%j.log", "comment_str": f"rule_{job.name}",
              "account": "", "partition": "", "workdir": "/work"}
    return get_submit_command(job, params) + set_gres_string(job)


def _flag(call: str, pattern: str) -> str | None:
    m = re.search(pattern, call)
    return m.group(1) if m else None


def _check_launch(job, resources: dict) -> None:
    """A training job whose class asks for several processes (by default one per GPU) runs them under torchrun
    inside the job's one srun task, which holds all its GPUs; every other job runs `blockswap` itself."""
    from blockswap.workflow.plan import processes

    if job.command == "None":  # a report rule that runs Python (`run:`), no command of its own
        assert RULE_CLASS[job.name] == "light", job.name
        return
    n = processes(resources["train"]) if RULE_CLASS[job.name] == "train" else 1
    want = f"torchrun --standalone --nproc-per-node {n} -m blockswap " if n > 1 else "blockswap "
    assert job.command.startswith(want), (job.name, job.command)


def _profile_resources(configfile: Path) -> dict:
    """The profile's resource classes, the schema's defaults filled in; the detection stage's as detect_*."""
    from snakemake.utils import validate

    config = yaml.safe_load(configfile.read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    return {**config["resources"], **{f"detect_{k}": v for k, v in config["detection"]["resources"].items()}}


def _check_sbatch_call(call: str, rule: str, resources: dict) -> None:
    """The sbatch flags of one job match the config's resources for the rule's class."""
    want = resources[RULE_CLASS[rule]]
    assert _flag(call, r"--cpus-per-task=(\d+)") == str(want["threads"]), (rule, call)
    assert _flag(call, r" -t '?(\d+)'?") == str(want["runtime"]), (rule, call)
    gpus = _flag(call, r"--gpus=(\S+)")
    assert gpus == (str(want["gpu"]) if want.get("gpu") else None), (rule, call)
    assert "--gres" not in call, (rule, call)
    if RULE_CLASS[rule] != "light":  # light rules leave memory to Snakemake's default
        assert _flag(call, r"--mem (\d+)") == str(want["mem_mb"]), (rule, call)


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["default", "cifar10", "imagenet"])
def test_profile_maps_config_resources_to_sbatch(profile, tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    configfile = REPO / "workflow" / "config" / f"{profile}.yaml"
    resources = _profile_resources(configfile)
    jobs = _dry_run_jobs(configfile, tmp_path)
    assert jobs, "the dry run listed no jobs"
    assert {j.name for j in jobs} <= set(RULE_CLASS), "a rule without a known resource class"
    calls = {}
    for job in jobs:
        call = _sbatch_call(job)
        _check_sbatch_call(call, job.name, resources)
        _check_launch(job, resources)
        calls.setdefault(RULE_CLASS[job.name], []).append(call)

    runtimes = {cls: [int(_flag(c, r" -t '?(\d+)'?")) for c in cs] for cls, cs in calls.items()}
    if profile == "default":  # minutes on the CPU
        assert not any("--gpus" in c for cs in calls.values() for c in cs)
        assert max(max(r) for r in runtimes.values()) <= 60
    else:  # GPUs and hours for everything that trains or scores
        for cls in ("train", "score"):
            assert all("--gpus=" in c for c in calls[cls]), cls
            assert min(runtimes[cls]) >= 120, cls
        assert min(runtimes["train"]) >= 24 * 60
        assert not any("--gpus" in c for c in calls["light"])
    if profile == "imagenet":  # 4 GPUs a training job, and 4 processes: the import of the pretrained teacher
        # and the scoring take one GPU
        trains = [j for j in jobs if RULE_CLASS[j.name] == "train"]
        assert trains and all(j.command.startswith("torchrun --standalone --nproc-per-node 4 ") for j in trains)
        assert all("--gpus=4" in _sbatch_call(j) for j in trains)
        assert [j.name for j in jobs if j.name.endswith("_teacher")] == ["import_teacher"]


# ------------------------------------------------------------------------------------------ toy workflow
@pytest.mark.slurm
@pytest.mark.slow
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
        folder = logdir / f"rule_{rule}" / wildcard if wildcard else logdir / f"rule_{rule}"
        path = folder / f"{job_id}.log"
        assert path.is_file(), f"missing SLURM log {path}; have {sorted(logdir.rglob('*.log'))}"


# ------------------------------------------------------------------------ a data-parallel training job
@pytest.mark.slurm
@pytest.mark.slow
def test_two_process_training_job_runs_through_slurm(slurm_cluster, tmp_path):
    """A teacher of resources.train {processes: 2} on the CPU: one SLURM job whose one task runs torchrun with
    2 gloo ranks - the command path of a GPU profile's training job (imagenet: 4 GPUs, 4 processes), with the
    process count given instead of taken from the GPUs. The ranks train test_ddp's run (its settings, its
    model and seed), so the weights must be those of test_ddp's one-process reference with per-rank BatchNorm.
    """
    from blockswap.training.checkpoint import load_model
    from test_ddp import SETTINGS, TOLERANCE, _max_difference, _per_rank_bn_reference

    data_dir = str(require_fashion_mnist())
    config = yaml.safe_load(SLURM_CONFIG.read_text())
    config.update(name="slurm-ddp", results_dir="results/slurm-ddp")
    config["dataset"]["data_dir"] = data_dir
    recipe = {key: SETTINGS[key] for key in ("epochs", "batch_size", "subset", "test_subset")}
    config["teacher"].update(model="wrn-10-1", seeds=[0], recipe=recipe)
    # The 2 processes share the job's 2 threads: one each, as test_ddp's processes and its reference.
    config["resources"]["train"] = {"threads": 2, "processes": 2, "mem_mb": 3000, "runtime": 10}
    configfile = tmp_path / "ddp.yaml"
    configfile.write_text(yaml.safe_dump(config))
    teacher = Path("results/slurm-ddp/teachers/seed0")

    before = {j.job_id for j in slurm_cluster.jobs()}
    t0 = time.monotonic()
    # --verbose: the plugin logs the sbatch call at debug level. Only the teacher is asked for.
    proc = run_snakemake(slurm_cluster, ["--snakefile", str(SNAKEFILE), "--configfile", str(configfile), "--jobs", "1",
                                         "--latency-wait", "5", "--verbose", str(teacher / "metrics.json")],
                         cwd=tmp_path, timeout=300)
    wall = time.monotonic() - t0
    log = proc.stdout
    assert proc.returncode == 0, f"snakemake failed (rc={proc.returncode}; 124/137 = timeout):\n{log[-8000:]}"

    # One SLURM job with one task holding the job's 2 CPUs, in which torchrun started the 2 processes.
    jobs = [j for j in slurm_cluster.jobs() if j.job_id not in before]
    assert [(j.comment.startswith("rule_train_teacher"), j.state) for j in jobs] == [(True, "COMPLETED")], jobs
    calls = re.findall(r"sbatch call: (sbatch .*)", log)
    assert len(calls) == 1 and "--gpus" not in calls[0], calls
    assert _flag(calls[0], r"--ntasks=(\d+)") == "1" and _flag(calls[0], r"--cpus-per-task=(\d+)") == "2", calls
    assert "torchrun --standalone --nproc-per-node 2 -m blockswap train --model wrn-10-1 " in log

    metrics = json.loads((tmp_path / teacher / "metrics.json").read_text())
    assert metrics["provenance"]["world_size"] == 2 and metrics["provenance"]["threads"] == 1
    assert metrics["train_examples"] == 128 and metrics["provenance"]["config"]["batch_size"] == 32
    net, _ = load_model(tmp_path / teacher / "model.pt")
    difference = _max_difference(net.state_dict(), _per_rank_bn_reference(data_dir, 2))
    print(f"\n2-process training job through SLURM: {wall:.1f}s; max weight difference from test_ddp's "
          f"reference {difference:.2e}")
    assert difference < TOLERANCE, difference


# ------------------------------------------------------------------------- the real workflow, reduced
def _results(workdir: Path) -> Path:
    return workdir / yaml.safe_load(SLURM_CONFIG.read_text())["results_dir"]


def _workflow_args() -> list[str]:
    # Same Snakefile and config file for both runs; each runs in its own working directory.
    return ["--snakefile", str(SNAKEFILE), "--configfile", str(SLURM_CONFIG)]


def _comparable_metrics(path: Path) -> str:
    """A metrics JSON without the fields that differ between runs, as canonical text (NaN-safe)."""
    metrics = json.loads(path.read_text())
    for key in TIMING_KEYS:
        metrics.pop(key)
    for epoch in metrics["epochs"]:
        epoch.pop("seconds")
    return json.dumps(metrics, sort_keys=True, indent=1)


def _weights(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_weights(a: Path, b: Path) -> None:
    import torch

    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys(), (a, b)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{b}: {key} differs from {a}"


def _outputs(results: Path) -> set[str]:
    """Result files, relative; logs and benchmarks (timings) left out."""
    return {str(p.relative_to(results)) for p in results.rglob("*")
            if p.is_file() and p.relative_to(results).parts[0] not in ("logs", "benchmarks")}


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    """The reduced config run locally (1 thread per job, the reference) and through SLURM.

    Both run at once: the SLURM run mostly waits on job start-up and status polling, so the local
    run costs little wall time beside it (and its results do not depend on the CPU load).
    Returns (local workdir, SLURM workdir, snakemake's log of the SLURM run, {job id: SLURM job}).
    """
    require_fashion_mnist()
    local, remote = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("slurm")
    before = {j.job_id for j in slurm_cluster.jobs()}
    t0 = time.monotonic()
    with open(local / "snakemake.log", "w") as out:
        local_proc = subprocess.Popen(
            ["timeout", "-k", "10", "400", *_snakemake_cmd(), "--cores", "2", *_workflow_args()],
            cwd=local, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # --verbose: the plugin logs every "sbatch call: ..." at debug level.
        proc = run_snakemake(slurm_cluster, [*_workflow_args(), "--jobs", "8", "--latency-wait", "5", "--verbose"],
                             cwd=remote, timeout=400)
        slurm_wall = time.monotonic() - t0
        local_rc = local_proc.wait(timeout=420)  # bounded by its own `timeout` already
    finally:
        stop_process_group(local_proc)
    log = proc.stdout
    (remote / "snakemake.log").write_text(log)
    assert local_rc == 0, f"local run failed (rc={local_rc}):\n{(local / 'snakemake.log').read_text()[-6000:]}"
    assert proc.returncode == 0, f"SLURM run failed (rc={proc.returncode}; 124/137 = timeout):\n{log[-8000:]}"
    jobs = {j.job_id: j for j in slurm_cluster.jobs() if j.job_id not in before}
    print(f"\n{SLURM_CONFIG.name}: SLURM run {slurm_wall:.1f}s ({len(jobs)} SLURM jobs), "
          f"local run beside it, both done after {time.monotonic() - t0:.1f}s")
    return local, remote, log, jobs


@pytest.mark.slurm
@pytest.mark.slow
def test_workflow_through_slurm_equals_local_run(slurm_cluster, runs):
    local_dir, workdir, log, jobs = runs
    local, remote = _results(local_dir), _results(workdir)

    # Every job went through sbatch, ran in our partition and completed; one SLURM job per rule instance.
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == len(set(submitted)) == len(jobs), (submitted, jobs)
    assert all(j.state == "COMPLETED" and j.partition == slurm_cluster.partition for j in jobs.values()), jobs
    rules = sorted(re.match(r"rule_([a-z_]+?)(?:_wildcards_.*)?$", j.comment).group(1) for j in jobs.values())
    assert rules == sorted([
        "train_teacher", "sample_candidates", "score_candidates", "select_top", "distill_blockswap",
        "distill_moonshine", "distill_moonshine", "sample_random_nets", "distill_random_net", "distill_random_net",
        "score_random_nets", "report_results", "report_correlation", "report_proxy_zoo", "report_density",
        "report_claims", "results_page"]), rules

    # The sbatch calls carry the config's resources (threads -> --cpus-per-task, no GPU on CPU).
    resources = yaml.safe_load(SLURM_CONFIG.read_text())["resources"]
    calls = [c.split(" --wrap=")[0] for c in re.findall(r"sbatch call: (sbatch .*)", log)]
    assert len(calls) == len(jobs), calls
    for call in calls:
        rule = re.match(r"'?rule_([a-z_]+?)(?:_wildcards_\S*?)?'?$", _flag(call, r"--comment (\S+)")).group(1)
        _check_sbatch_call(call, rule, resources)
        assert f"-p {slurm_cluster.partition}" in call or f"-p '{slurm_cluster.partition}'" in call, call

    # The same files, and the same results.
    assert _outputs(remote) == _outputs(local)
    names = _outputs(local)
    metrics = sorted(n for n in names if n.endswith("metrics.json"))
    assert len(metrics) == 6, metrics  # teacher, BlockSwap, 2 Moonshine, 2 random nets
    for name in metrics:
        assert _comparable_metrics(remote / name) == _comparable_metrics(local / name), name
    for name in sorted(n for n in names if n.endswith("model.pt")):
        _assert_same_weights(local / name, remote / name)
    exact = sorted(n for n in names if re.search(r"(candidates\.jsonl|nets\.jsonl|scores\.csv|proxies_k\d+\.csv"
                                                  r"|top\d+\.json|tables/.*\.csv)$", n))
    assert {"search/budget20000/candidates.jsonl", "search/budget20000/scores.csv",
            "search/budget20000/top4.json", "tables/main.csv"} <= set(exact)
    for name in exact:
        assert (remote / name).read_bytes() == (local / name).read_bytes(), name
    for table in ("main", "proxy_correlation", "density"):
        for ext in ("csv", "md", "tex"):
            assert (remote / "tables" / f"{table}.{ext}").stat().st_size > 0


@pytest.mark.slurm
@pytest.mark.slow
def test_cancelled_training_job_resumes(slurm_cluster, runs, tmp_path):
    """scancel a training job mid-run: Snakemake resubmits it and it resumes from its resume file."""
    local_dir, workdir = runs[:2]
    remote = _results(workdir)
    teacher = remote / "teachers" / "seed0"
    target = teacher / "metrics.json"
    resume = teacher / "model.pt.resume"
    for name in ("model.pt", "metrics.json"):
        (teacher / name).unlink()
    assert not resume.exists()

    before = {j.job_id for j in slurm_cluster.jobs()}
    log = tmp_path / "snakemake.log"
    t0 = time.monotonic()
    # Only the teacher is out of date for this target; retries come from the profile (2).
    proc = start_snakemake(slurm_cluster, [*_workflow_args(), "--jobs", "2", "--latency-wait", "5",
                                           str(target.relative_to(workdir))],
                           cwd=workdir, log=log, timeout=300)
    try:
        first = slurm_cluster.wait_for_job(
            lambda j: j.job_id not in before and j.comment.startswith("rule_train_teacher")
            and j.state == "RUNNING", timeout=120)
        # Bounded wait for the end of the first epoch (the resume file), while the job still runs.
        deadline = time.monotonic() + 120
        while not resume.exists():
            assert proc.poll() is None, f"snakemake ended early:\n{log.read_text()[-6000:]}"
            assert time.monotonic() < deadline, "no resume file within 120 s"
            time.sleep(0.2)
        cancelled_at = time.monotonic() - t0
        slurm_cluster.scancel(first.job_id)
        try:
            rc = proc.wait(timeout=330)  # timeout -k 10 300 ends it before this
        except subprocess.TimeoutExpired:
            rc = None
    finally:
        stop_process_group(proc)
    out = log.read_text()
    wall = time.monotonic() - t0
    assert rc == 0, f"snakemake did not finish the cancelled job (rc={rc}; 124/137 = timeout):\n{out[-8000:]}"

    # The cancelled SLURM job, then a resubmission (Snakemake's retry) that completed.
    teacher_jobs = [j for j in slurm_cluster.jobs()
                    if j.job_id not in before and j.comment.startswith("rule_train_teacher")]
    states = [(j.job_id, j.state) for j in teacher_jobs]
    # The profile's show-failed-logs prints the cancelled attempt's training log (informational:
    # SIGKILL after KillWait would leave no such line, and the last epoch's resume file still works).
    stopped = re.search(r"stopped by SIG\w+ in epoch \d+ after \d+ steps", out)
    print(f"\ncancel/resume: cancelled job {first.job_id} {cancelled_at:.1f}s after start "
          f"({stopped.group(0) if stopped else 'no graceful stop logged'}); teacher jobs {states}; "
          f"{wall:.1f}s in all")
    assert [s for _, s in states] == ["CANCELLED", "COMPLETED"], states
    assert teacher_jobs[0].job_id == first.job_id
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert submitted == [j.job_id for j in teacher_jobs], (submitted, states)
    assert re.search(rf"SLURM-job '{first.job_id}' failed, SLURM status is: 'CANCELLED'", out), out[-6000:]
    assert "1 of 1 steps (100%) done" in out

    # It resumed rather than started over, and ended where the uninterrupted local run did.
    assert not resume.exists(), "the resume file is deleted once training is complete"
    metrics = json.loads(target.read_text())
    assert metrics["provenance"]["resumes"] >= 1, metrics["provenance"]
    assert "resuming from" in (remote / "logs" / "teachers" / "seed0.log").read_text()
    local = _results(local_dir) / "teachers" / "seed0"
    assert _comparable_metrics(target) == _comparable_metrics(local / "metrics.json")
    _assert_same_weights(local / "model.pt", teacher / "model.pt")
