"""Reusable pytest fixture and helpers for tests that need a real SLURM cluster.

The fixture ``slurm_cluster`` starts a single-node SLURM cluster on 127.0.0.1
with ``workflow/scripts/slurm_cluster.sh`` (installing the Debian packages on
first use) and stops it at the end of the session, even if tests fail. If a
cluster from that script was already running before the session, it is reused
and left running.

This file is deliberately *not* ``conftest.py``, so pytest does not load it by
itself. A test module that wants the cluster imports the fixture by name::

    from conftest_slurm import slurm_cluster, run_snakemake  # noqa: F401

    @pytest.mark.slurm
    def test_something(slurm_cluster, tmp_path):
        proc = run_snakemake(slurm_cluster, ["--snakefile", ..., "--directory", ...],
                             cwd=tmp_path)
        jobs = slurm_cluster.jobs()          # every job the cluster has seen
        slurm_cluster.scancel(jobs[0].job_id)

``start_snakemake`` starts the same command in the background (its own
session, output to a file) for tests that act on jobs while snakemake runs;
``stop_process_group`` ends it and its children.

(pytest's default "prepend" import mode puts ``tests/`` on ``sys.path``, so
``conftest_slurm`` is importable from any module there.) The fixture is
session-scoped and ``start``/``stop`` are idempotent, so several modules may
import it; the cluster is started once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / "workflow" / "scripts" / "slurm_cluster.sh"
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
ETC_SLURM_CONF = Path("/etc/slurm/slurm.conf")

#: Bound on `slurm_cluster.sh start` (apt install on first use + start-up).
START_TIMEOUT_S = 900
#: Bound on `slurm_cluster.sh stop`.
STOP_TIMEOUT_S = 120


def _snakemake_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("snakemake")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "snakemake"]


def slurm_unavailable_reason() -> str | None:
    """Why a real SLURM cluster cannot be started here, or None if it can."""
    if sys.platform != "linux":
        return "SLURM test cluster needs Linux"
    if os.geteuid() != 0:
        return "SLURM test cluster needs root (it installs packages and starts munged/slurmctld/slurmd)"
    installed = all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "munged"))
    if not installed and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is unavailable to install it"
    if not shutil.which("timeout"):
        return "coreutils `timeout` is missing"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed"
    return None


@dataclass
class SlurmJob:
    job_id: str
    partition: str
    name: str  # snakemake puts its run UUID here
    state: str
    comment: str  # snakemake puts "rule_<rule>_wildcards_<...>" here


@dataclass
class SlurmCluster:
    state_dir: Path
    conf: Path
    partition: str
    startup_s: float
    reused: bool
    script: Path = CLUSTER_SCRIPT
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command (squeue, scancel, sinfo, ...) against this cluster."""
        return subprocess.run(
            list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )

    def jobs(self) -> list[SlurmJob]:
        """All jobs slurmctld still remembers (running, pending and finished < MinJobAge)."""
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i|%P|%j|%T|%k").stdout
        jobs = []
        for line in out.splitlines():
            parts = line.strip().split("|", 4)
            if len(parts) == 5:
                jobs.append(SlurmJob(*parts))
        return sorted(jobs, key=lambda j: int(j.job_id) if j.job_id.isdigit() else 0)

    def wait_for_job(self, predicate, timeout: float = 120, poll: float = 0.5) -> SlurmJob:
        """Wait (bounded) until some job satisfies ``predicate(job)``; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for job in self.jobs():
                if predicate(job):
                    return job
            time.sleep(poll)
        raise TimeoutError(f"no SLURM job matched within {timeout}s; jobs: {self.jobs()}")

    def scancel(self, job_id: str) -> None:
        self.run("scancel", str(job_id))


def _script(action: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["timeout", "-k", "10", str(int(timeout)), "bash", str(CLUSTER_SCRIPT), action],
        env=env, capture_output=True, text=True,
    )


def _parse_exports(stdout: str) -> dict[str, str]:
    exports = {}
    for line in stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            exports[key.strip()] = value.strip()
    return exports


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node SLURM cluster; stopped at session end (unless reused)."""
    reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(reason)

    env = dict(os.environ)
    state_dir = Path(env.get("SLURM_STATE_DIR", "/tmp/blockswap-slurm"))
    our_conf = state_dir / "slurm.conf"
    if (ETC_SLURM_CONF.exists() or ETC_SLURM_CONF.is_symlink()) and not (
        ETC_SLURM_CONF.is_symlink() and os.readlink(ETC_SLURM_CONF) == str(our_conf)
    ):
        pytest.skip(f"{ETC_SLURM_CONF} belongs to another SLURM installation; not starting a test cluster")

    status = _script("status", env, 30)
    reused = status.returncode == 0

    t0 = time.monotonic()
    started = _script("start", env, START_TIMEOUT_S)
    startup_s = time.monotonic() - t0
    try:
        if started.returncode != 0:
            pytest.fail(
                f"slurm_cluster.sh start failed (rc={started.returncode}):\n"
                f"{started.stdout}\n{started.stderr}"
            )
        exports = _parse_exports(started.stdout)
        env.update(exports)
        cluster = SlurmCluster(
            state_dir=state_dir,
            conf=Path(exports["SLURM_CONF"]),
            partition=exports["SLURM_PARTITION"],
            startup_s=startup_s,
            reused=reused,
            env=env,
        )
        print(f"\nSLURM cluster {'reused' if reused else 'started'} in {startup_s:.1f}s "
              f"(partition {cluster.partition}, conf {cluster.conf})")
        yield cluster
    finally:
        if not reused:
            stopped = _script("stop", dict(os.environ), STOP_TIMEOUT_S)
            if stopped.returncode != 0:
                print(f"slurm_cluster.sh stop failed (rc={stopped.returncode}):\n{stopped.stderr}",
                      file=sys.stderr)


def snakemake_command(
    args: list[str],
    *,
    timeout: int = 300,
    profile: Path = SLURM_PROFILE,
    fast_polling: bool = True,
) -> list[str]:
    """`timeout -k 10 <timeout> snakemake --executor slurm --workflow-profile <profile> ... <args>`.

    Without accounting a hung status query would make snakemake wait forever
    (and ignore SIGTERM), hence the hard bound. ``fast_polling`` shortens the
    profile's status-check intervals for tests.
    """
    cmd = ["timeout", "-k", "10", str(timeout), *_snakemake_cmd(),
           "--executor", "slurm", "--workflow-profile", str(profile)]
    if fast_polling:
        cmd += ["--slurm-init-seconds-before-status-checks", "2",
                "--seconds-between-status-checks", "2"]
    return cmd + list(args)


def run_snakemake(
    cluster: SlurmCluster,
    args: list[str],
    *,
    cwd: Path,
    timeout: int = 300,
    profile: Path = SLURM_PROFILE,
    fast_polling: bool = True,
) -> subprocess.CompletedProcess:
    """Run snakemake through SLURM with the workflow profile (see ``snakemake_command``).

    stdout and stderr are merged.
    """
    cmd = snakemake_command(args, timeout=timeout, profile=profile, fast_polling=fast_polling)
    return subprocess.run(
        cmd, cwd=cwd, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def start_snakemake(
    cluster: SlurmCluster,
    args: list[str],
    *,
    cwd: Path,
    log: Path,
    timeout: int = 300,
    profile: Path = SLURM_PROFILE,
    fast_polling: bool = True,
) -> subprocess.Popen:
    """Start snakemake through SLURM in the background; stdout+stderr go to ``log``.

    It runs in its own session so that ``stop_process_group`` can end it and
    everything it started (and nothing else).
    """
    cmd = snakemake_command(args, timeout=timeout, profile=profile, fast_polling=fast_polling)
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=cwd, env=cluster.env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_process_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """End a process from ``start_snakemake`` and its children: SIGTERM, then SIGKILL after ``grace`` s."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
