"""The Snakemake workflow: lint, the paper profiles' DAGs, an end-to-end run of a reduced config,
incremental reruns after one edit, the HTML report, config errors and the conda pins."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from blockswap.core.counting import analytic
from blockswap.core.genotype import Genotype

from conftest import require_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TEST_CONFIG = ROOT / "tests/workflow/config.yaml"


def snakemake(*args, workdir: Path = ROOT, timeout: int = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`cwd`: where it runs (relative --configfile paths and the config's relative paths start there)."""
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def job_stats(text: str) -> dict[str, int]:
    """{rule: job count} of the "Job stats" table Snakemake prints (empty where there is none)."""
    stats = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", text, re.S)
    return {} if not stats else {rule: int(n) for rule, n in (line.split() for line in stats.group(1).splitlines())}


def planned_jobs(*args, workdir: Path = ROOT, cwd: Path | None = None) -> dict[str, int]:
    """{rule: job count} of a dry run (empty when nothing is to be done)."""
    out = snakemake("-n", *args, workdir=workdir, cwd=cwd)
    assert out.returncode == 0, out.stderr + out.stdout
    jobs = job_stats(out.stdout)
    assert jobs or "Nothing to be done" in out.stdout + out.stderr, out.stdout
    return jobs


def write_config(path: Path, **overrides) -> Path:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(config))
    return path


def test_lint_is_clean():
    out = snakemake("--lint", workdir=ROOT)
    assert out.returncode == 0 and "Congratulations" in out.stdout + out.stderr, out.stdout + out.stderr


def test_cifar10_profile_dag():
    jobs = planned_jobs("--configfile", ROOT / "workflow/config/cifar10.yaml")
    # 3 teachers; 6 budgets × (sample, score, pick of 1000); per teacher: 6 BlockSwap students, 10 Moonshine
    # (closest per budget + A4B2 where it fits and differs), 3 scaled WRNs, 1 MBConv6; 3 budgets × 100
    # random nets and 3 × 3 proxy scorings. Figure 2, from the first teacher at the random nets' budgets
    # 200K/400K/800K: 3 more searches and picks, and the single-type nets around each budget: G8B2, A4B2 |
    # DConvG4, A4B2, DConvA16 | DConvG16, A4B2, DConvA4 (8 nets). §4.3 at 404.2K: independent searches of
    # 10 and 100 samples, 3 seeds each, each pick trained.
    assert jobs == {
        "train_teacher": 3, "sample_candidates": 9, "score_candidates": 9, "select_top": 9,
        "distill_blockswap": 21, "distill_moonshine": 38, "distill_scaled": 9, "distill_mbconv": 3,
        "sample_random_nets": 3, "distill_random_net": 300, "score_random_nets": 9,
        "sample_n_candidates": 6, "score_n_candidates": 6, "select_n_top": 6, "distill_sample_count": 6,
        "report_results": 1, "report_correlation": 1, "report_proxy_zoo": 1,
        "report_density": 1, "report_samples": 1, "report_claims": 1,
        "results_page": 1, "all": 1}


def test_imagenet_profile_dag():
    jobs = planned_jobs("--configfile", ROOT / "workflow/config/imagenet.yaml")
    # The pretrained ResNet-34 imported as the teacher; 3.1M and 8.1M searches; ResNet-34-G(N) fits both
    # budgets, G(4) the 8.1M; ResNet-18 and ResNet-18-0.5.
    assert jobs == {"import_teacher": 1, "sample_candidates": 2, "score_candidates": 2, "select_top": 2,
                    "distill_blockswap": 2, "distill_moonshine": 3, "distill_scaled": 2, "report_results": 1,
                    "report_claims": 1, "results_page": 1, "all": 1}


def test_moonshine_profile_dag():
    jobs = planned_jobs("--configfile", ROOT / "workflow/config/moonshine.yaml")
    # 3 teachers; 19 single-blocktype students per teacher, each with AT, with KD and without a teacher;
    # one BlockSwap search at 2.1M whose pick is trained with AT and without a teacher.
    assert jobs == {"train_teacher": 3, "distill_moonshine": 57, "distill_moonshine_kd": 57,
                    "train_moonshine_scratch": 57, "sample_candidates": 1, "score_candidates": 1, "select_top": 1,
                    "distill_blockswap": 3, "train_blockswap_scratch": 3, "report_results": 1, "report_claims": 1,
                    "results_page": 1, "all": 1}


def test_wrn28_structured_profile_dag():
    jobs = planned_jobs("--configfile", ROOT / "workflow/config/wrn28.yaml")
    # 3 WRN-28-10 teachers; 16 substitutions distilled from each and trained without a teacher once per seed,
    # 3 of them again with CRS-wd off; BlockSwap searches at 1.4M/2.4M with one Moonshine student each.
    assert jobs == {"train_teacher": 3, "distill_structured": 48, "train_structured_scratch": 48,
                    "distill_structured_crs_off": 9, "sample_candidates": 2, "score_candidates": 2,
                    "select_top": 2, "distill_blockswap": 6, "distill_moonshine": 6, "report_results": 1,
                    "report_claims": 1, "report_structured": 1, "results_page": 1, "all": 1}
    out = snakemake("-n", "-p", "--configfile", ROOT / "workflow/config/wrn28.yaml")
    commands = [line for line in out.stdout.splitlines() if "--block TensorTrain_0.24 " in line]
    assert sum("--crs-wd True " in c and "--at-beta 1000 " in c and "method=structured " in c for c in commands) == 3
    assert sum("--crs-wd False " in c and "method=structured_crs_off " in c for c in commands) == 3
    assert sum("blockswap train " in c and "method=structured_scratch " in c for c in commands) == 3


def test_default_profile_dag(tmp_path):
    """One teacher and one budget: 12 random nets, the pick with 3 seeds and its no-teacher control with the
    same 3, the closest single types under and over the budget, WRN-10-1 and the closest type without a
    teacher, and one structured substitution (TensorTrain_0.5) distilled with 3 seeds. (The detection stage's jobs:
    tests/test_detection_workflow.py.)"""
    jobs = {rule: n for rule, n in planned_jobs(workdir=tmp_path).items() if "detect" not in rule}
    assert jobs == {"train_teacher": 1, "sample_candidates": 1, "score_candidates": 1, "select_top": 1,
                    "distill_blockswap": 1, "distill_blockswap_repeat": 2, "train_blockswap_scratch": 3,
                    "distill_moonshine": 2, "train_moonshine_scratch": 1, "distill_scaled": 1,
                    "sample_random_nets": 1, "distill_random_net": 12, "score_random_nets": 2,
                    "distill_structured": 1, "distill_structured_repeat": 2, "report_structured": 1,
                    "report_results": 1, "report_correlation": 1, "report_proxy_zoo": 1,
                    "report_density": 1, "report_claims": 1,
                    "results_page": 1, "all": 1}


def test_fmnist_profile_dag():
    """2 teachers × 2 budgets: per teacher a pick, the closest single type (+ the type over 40K for Figure 2,
    first teacher only), WRN-10-1, the KD and no-teacher controls; the pick repeated with seeds 1 and 2 under
    the first teacher (and without a teacher); 24 random nets scored at k = 1/10/100; §4.3 at 40K with
    3 independent searches each of 10 and 100 samples."""
    jobs = planned_jobs("--configfile", ROOT / "workflow/config/fmnist.yaml")
    assert jobs == {"train_teacher": 2, "sample_candidates": 2, "score_candidates": 2, "select_top": 2,
                    "distill_blockswap": 4, "distill_blockswap_repeat": 4, "train_blockswap_scratch": 6,
                    "distill_moonshine": 5, "distill_moonshine_kd": 4, "train_moonshine_scratch": 4,
                    "distill_scaled": 2, "sample_random_nets": 1, "distill_random_net": 24, "score_random_nets": 3,
                    "sample_n_candidates": 6, "score_n_candidates": 6, "select_n_top": 6, "distill_sample_count": 6,
                    "report_results": 1, "report_correlation": 1, "report_proxy_zoo": 1,
                    "report_density": 1, "report_samples": 1,
                    "report_claims": 1, "results_page": 1, "all": 1}


def test_table1_profile_dag():
    """Table 1 on the CPU: 100 random nets at 40K, the first 10 trained again with seeds 1 and 2, every proxy at
    k = 1/10/100, and the Fisher pick of one search at the same budget - no other students."""
    jobs = planned_jobs("--configfile", ROOT / "workflow/config/table1.yaml")
    assert jobs == {"train_teacher": 1, "sample_candidates": 1, "score_candidates": 1, "select_top": 1,
                    "distill_blockswap": 1, "sample_random_nets": 1, "distill_random_net": 100,
                    "distill_random_net_repeat": 20, "score_random_nets": 3, "report_results": 1,
                    "report_correlation": 1, "report_proxy_zoo": 1, "report_density": 1, "report_claims": 1,
                    "results_page": 1, "all": 1}
    out = snakemake("-n", "-p", "--configfile", ROOT / "workflow/config/table1.yaml")
    repeats = re.findall(r"--index (\d+) .*?--seed (\d+) .*?--label net=\1 --label teacher_seed=0 --label seed=\2",
                         out.stdout)
    assert sorted(repeats) == sorted((str(i), str(s)) for i in range(10) for s in (1, 2))


def test_proxies_score_on_the_students_training_batch(tmp_path):
    """BlockSwap §3.3: the proxies' minibatch is the training batch - the default profile's students train at 16."""
    out = snakemake("-n", "-p", workdir=tmp_path)
    scores = [line for line in out.stdout.splitlines() if "blockswap score " in line]
    assert scores and all("--batch-size 16 " in line for line in scores), scores[:1]
    students = yaml.safe_load((ROOT / "workflow/config/default.yaml").read_text())["student"]["recipe"]
    assert students["batch_size"] == 16 and students["lr_unit"] == "iteration"


@pytest.mark.parametrize("overrides,message", [
    ({"search.bugdets": [1000]}, "bugdets"),
    ({"search.budgets": [10_000_000]}, "search.budgets: budget 10,000,000 is outside the feasible range"),
    ({"teacher.model": "wrn-11-1"}, "depth must be 6n\\+4"),
    ({"device": "tpu"}, "tpu"),
    ({"ablations.proxies": ["fisher", "zenn"]}, r"ablations.proxies: unknown proxy 'zenn'. Did you mean 'zen'.*meco"),
    ({"ablations.sample_budgets": [30000]}, "sample_budgets: 30000 is not one of search.budgets"),
    ({"teacher.pretrained": "w.pth", "teacher.seeds": [0, 1]}, "teacher.pretrained: one weights file is one teacher"),
    ({"structured.blocks": ["Generic_2"]}, "structured.blocks: block type 'Generic_2': s must be a number in"),
    ({"resources.score": {"processes": 2}}, "resources.score.processes: only training jobs"),
    ({"resources.train": {"gpu": 4, "threads": 4, "processes": 2}}, "resources.train.processes: 2 processes for 4"),
    ({"resources.train": {"threads": 4, "processes": 3}}, "student.recipe.batch_size: 64 does not divide among the 3"),
    ({"resources.train": {"threads": 2, "processes": 2}, "student.recipe.sync_bn": True}, "sync_bn needs CUDA"),
])
def test_config_mistakes_are_named(tmp_path, overrides, message):
    out = snakemake("-n", "--configfile", write_config(tmp_path / "bad.yaml", **overrides), workdir=tmp_path)
    assert out.returncode != 0
    assert re.search(message, out.stderr + out.stdout), out.stderr[-2000:]


def _training_commands(config: Path, workdir: Path) -> list[str]:
    out = snakemake("-n", "-p", "--configfile", config, workdir=workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = (line.removeprefix("Shell command: ") for line in out.stdout.splitlines())
    return sorted(line for line in lines if re.search(r"blockswap (train|distill) ", line))


@pytest.mark.slow
def test_sync_bn_reaches_the_command_only_when_true(tmp_path):
    """sync_bn came after results existed: false or absent, every training command is what it was without it (so
    Snakemake reruns nothing); true, each one carries --sync-bn True. The same for data-parallel jobs."""
    absent = _training_commands(write_config(tmp_path / "absent.yaml"), tmp_path)  # written as the others are
    off = {f"{who}.recipe.sync_bn": False for who in ("teacher", "student")}
    on = {f"{who}.recipe.sync_bn": True for who in ("teacher", "student")}
    assert absent and not any("--sync-bn" in c for c in absent)
    assert _training_commands(write_config(tmp_path / "off.yaml", **off), tmp_path) == absent
    synced = _training_commands(write_config(tmp_path / "on.yaml", **on), tmp_path)
    assert all("--sync-bn True " in c for c in synced)
    assert sorted(c.replace(" --sync-bn True", "") for c in synced) == absent
    gpus = {"resources.train": {"threads": 8, "gpu": 2}, "device": "cuda"}
    parallel = _training_commands(write_config(tmp_path / "gpus.yaml", **gpus, **on), tmp_path)
    assert parallel and all(c.startswith("torchrun --standalone --nproc-per-node 2 -m blockswap ") and
                            "--sync-bn True " in c for c in parallel)


def constraints() -> dict[str, str]:
    """{normalised name: version} of envs/constraints.txt for this interpreter: exact pins only, each one
    either for every environment or under a marker (a release that needs a newer Python than some hosts')."""
    pins = {}
    for line in (ROOT / "envs/constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{line}: constraints.txt holds exact pins only"
        if req.marker is None or req.marker.evaluate():
            pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def test_every_dependency_range_holds_its_pinned_version():
    """pyproject.toml's ranges (and its extras', but for mmdet's, built apart) admit the versions of
    envs/constraints.txt, the environment that `make install` gives, and each range's lower bound was tested:
    it is no newer than the pin."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pins = constraints()
    for spec in project["dependencies"] + [r for name, reqs in extras.items() if name != "mmdet" for r in reqs]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in envs/constraints.txt"
        assert req.specifier.contains(pins[name]), f"{spec} excludes the pinned {pins[name]}"
        lower = [s.version for s in req.specifier if s.operator == ">="]
        assert lower and Version(lower[0]) <= Version(pins[name]), f"{spec}: no tested lower bound"


def test_conda_env_carries_the_same_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = constraints()
    names = [Requirement(r).name for r in project["dependencies"]]
    expected = {f"{name}=={pins[canonicalize_name(name)]}" for name in names}
    env = yaml.safe_load((ROOT / "envs/blockswap.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {p for p in pip if "==" in p} == expected


# --- an end-to-end run of the reduced config ------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    require_fashion_mnist()
    workdir = tmp_path_factory.mktemp("workflow")
    config = write_config(workdir / "config.yaml")
    out = snakemake("--cores", 2, "--configfile", config, workdir=workdir, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir, config


@pytest.mark.slow
def test_end_to_end_outputs(finished_run):
    workdir, _ = finished_run
    r = workdir / "results/test"
    candidates = [json.loads(line) for line in (r / "search/budget20000/candidates.jsonl").read_text().splitlines()]
    assert len(candidates) == 8 and all(19_500 < c["params"] < 20_500 for c in candidates)
    scores = (r / "search/budget20000/scores.csv").read_text().splitlines()
    assert scores[0].startswith("id,params,ops,fisher") and len(scores) == 9
    top = json.loads((r / "search/budget20000/top8.json").read_text())
    best_id = scores[1].split(",")[0]
    assert next(c for c in candidates if c["id"] == best_id)["blocks"] == top["blocks"]

    teacher = json.loads((r / "teachers/seed0/metrics.json").read_text())
    expected = analytic(Genotype.uniform("wrn-10-1", "Conv", in_channels=1, num_classes=10, image_size=28))
    assert teacher["labels"]["method"] == "teacher" and teacher["params"] == expected.params
    for key in ("config", "seed", "blockswap_version", "git_sha", "device", "wall_time_s"):
        assert key in teacher["provenance"]
    student = json.loads((r / "students/blockswap/budget20000/teacher0/metrics.json").read_text())
    assert student["genotype"]["blocks"] == top["blocks"] and student["teacher"] is not None
    repeat = json.loads((r / "students/blockswap/budget20000/teacher0/seed1/metrics.json").read_text())
    assert repeat["genotype"]["blocks"] == top["blocks"] and repeat["provenance"]["seed"] == 1
    assert repeat["labels"] == {"method": "blockswap", "budget": "20000", "teacher_seed": "0", "seed": "1"}

    main = (r / "tables/main.csv").read_text().splitlines()
    assert len(main) == 4  # header + teacher, BlockSwap and the Moonshine student
    structured = json.loads((r / "students/structured/TensorTrain_0.5/teacher0/metrics.json").read_text())
    assert structured["genotype"]["blocks"] == ["TensorTrain_0.5"] * 3 and structured["crs_ratio"] < 1
    assert structured["weight_decay_groups"][0]["name"] == "compressed"
    rows = (r / "tables/structured.csv").read_text().splitlines()
    assert len(rows) == 5 and sum(",TensorTrain_0.5," in row for row in rows) == 1  # + teacher, BlockSwap, Moonshine
    for name in ("claims", "main", "proxy_correlation", "proxy_zoo", "density", "samples", "structured"):
        for ext in ("csv", "md", "tex"):
            assert (r / f"tables/{name}.{ext}").stat().st_size > 0
    for fig in ("pareto_params", "pareto_ops", "fisher_vs_error", "proxy_zoo", "density", "samples",
                "structured_pareto_params"):
        assert (r / f"figures/{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (r / f"figures/{fig}.pdf").read_bytes()[:4] == b"%PDF"
    errors = [float(v) for line in main[1:] for v in re.findall(r",(\d+\.\d+),", line)]
    assert errors and all(0 <= e <= 100 for e in errors)
    benchmarks = list((r / "benchmarks").rglob("*.tsv"))
    assert benchmarks and all("max_rss" in b.read_text().splitlines()[0] for b in benchmarks)


@pytest.mark.slow
def test_incremental_reruns_touch_only_what_changed(finished_run, tmp_path):
    workdir, config = finished_run
    assert planned_jobs("--configfile", config, workdir=workdir) == {}
    edits = {
        # a new minibatch count: one more proxy scoring per random-net budget, and the table
        "ablations.minibatches": ([1, 3], {"score_random_nets": 1, "report_correlation": 1, "report_proxy_zoo": 1,
                                           "report_claims": 1, "results_page": 1, "all": 1}),
        # a second teacher seed: its teacher and its students; ablations stay on the first teacher
        "teacher.seeds": ([0, 1], {"train_teacher": 1, "distill_blockswap": 1, "distill_moonshine": 1,
                                   "distill_structured": 1, "report_results": 1, "report_claims": 1,
                                   "report_structured": 1, "results_page": 1, "all": 1}),
        # one more ablation (c) point: an independent search, pick and student per search seed (2)
        "ablations.sample_counts": ([3, 5], {"sample_n_candidates": 2, "score_n_candidates": 2,
                                             "select_n_top": 2, "distill_sample_count": 2, "report_samples": 1,
                                             "report_claims": 1, "results_page": 1, "all": 1}),
        # a setting at its default that was not in the schema when the results were made: nothing
        "student.recipe.sync_bn": (False, {}),
    }
    for key, (value, expected) in edits.items():
        edited = write_config(tmp_path / f"{key}.yaml", **{key: value})
        assert planned_jobs("--configfile", edited, workdir=workdir) == expected, key


@pytest.mark.slow
def test_html_report(finished_run):
    workdir, config = finished_run
    out = snakemake("--configfile", config, "--report", workdir / "report.html", workdir=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    html = (workdir / "report.html").read_text(errors="replace")
    for name in ("pareto_params.png", "fisher_vs_error.png", "density.png", "samples.png", "main.md"):
        assert name in html


def test_config_values_merge_into_the_embedded_default(tmp_path):
    """`snakemake --config key=...` without --configfile changes that key of the default profile, nothing else."""
    default = yaml.safe_load((ROOT / "workflow/config/default.yaml").read_text())["ablations"]
    plain = planned_jobs(workdir=tmp_path)
    changed = planned_jobs("--config", "ablations={random_count: 20}", workdir=tmp_path)
    assert plain["distill_random_net"] == default["random_count"] * len(default["random_budgets"])
    assert changed["distill_random_net"] == 20 * len(default["random_budgets"])
    assert {k: v for k, v in changed.items() if "random" not in k and k not in ("all", "total")} == {
        k: v for k, v in plain.items() if "random" not in k and k not in ("all", "total")}
