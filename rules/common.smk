# Config validation, paths, shared parameters and input functions.
import sys
from pathlib import Path

import yaml
from snakemake.utils import update_config

from blockswap.core.recipe import TrainConfig
from blockswap.workflow import plan

# A profile given with --configfile stands alone (schema defaults fill the rest); only without one is
# the embedded default loaded, so a paper profile never inherits the default's small subsets. --config
# values are merged into either.
if not workflow.overwrite_configfiles:
    embedded = yaml.safe_load(
        (Path(workflow.basedir) / "workflow/config/default.yaml").read_text()
    )
    update_config(embedded, config)
    config.clear()
    config.update(embedded)
validate_profile("../workflow/schemas/config.schema.yaml")

job_shell_prefix()


DATASET = config["dataset"]
TEACHER = config["teacher"]
SEARCH = config["search"]
STUDENT = config["student"]
BASELINES = config["baselines"]
ABLATIONS = config["ablations"]
TEACHER_SEEDS = TEACHER["seeds"]
FIRST_TEACHER = TEACHER_SEEDS[0]  # the ablations' teacher
# The BlockSwap pick's extra seeds under the first teacher (its first run is seeded like that teacher).
REPEAT_SEEDS = [s for s in STUDENT["repeat_seeds"] if s != FIRST_TEACHER]
SCRATCH_SEEDS = list(dict.fromkeys(TEACHER_SEEDS + REPEAT_SEEDS))
SHAPE = {k: DATASET[k] for k in ("in_channels", "num_classes", "image_size")}


_check(plan.check_profile)


wildcard_constraints:
    budget=r"\d+",
    seed=r"\d+",  # keeps teacher{seed}/ from also matching teacher0/seed1/
    i=r"\d+",  # keeps net{i}/ from also matching net0/seed1/


# Only a run that executes jobs needs the data (a dry run, --lint or --report may run where they are not):
# checked once the DAG is built, before the first job.
onstart:
    _check(plan.check_data)


def shape_args():
    return (
        f"--in-channels {DATASET['in_channels']} --num-classes {DATASET['num_classes']} "
        f"--image-size {DATASET['image_size']}"
    )


def data_args():
    d = f"--dataset {DATASET['name']}"
    return d + (f" --data-dir {DATASET['data_dir']}" if DATASET["data_dir"] else "")


def res(kind, key):
    return config["resources"][kind][key]


SINGLE_TYPE_COSTS = plan.single_type_costs(config)


def moonshine_blocks(budget):
    return plan.moonshine_blocks(config, budget, SINGLE_TYPE_COSTS)


def sample_counts(budget):
    return plan.sample_counts(config, budget)


# Input functions of the report rules. They name other rules' outputs (rules.x), which exist only
# once all the rules are read, so Snakemake calls them later, when it builds the DAG.


def density_blocks(budget):
    return plan.density_blocks(config, budget, SINGLE_TYPE_COSTS)


def moonshine_metrics(budget, seed, blocks=None):
    return expand(
        rules.distill_moonshine.output.metrics,
        budget=budget,
        block=moonshine_blocks(budget) if blocks is None else blocks,
        seed=seed,
    )


def student_metrics(wildcards):
    """Every teacher's and student's metrics file, grouped by teacher for the main table."""
    files = []
    for seed in TEACHER_SEEDS:
        files += expand(TEACHER_RULE.output.metrics, seed=seed)
        for budget in SEARCH["budgets"]:
            files += expand(
                rules.distill_blockswap.output.metrics, budget=budget, seed=seed
            )
            files += moonshine_metrics(budget, seed)
            if seed == FIRST_TEACHER:
                files += expand(
                    rules.distill_blockswap_repeat.output.metrics,
                    budget=budget,
                    seed=REPEAT_SEEDS,
                )
        files += expand(
            rules.distill_scaled.output.metrics, model=BASELINES["scaled"], seed=seed
        )
        if BASELINES["mbconv"]:
            files += expand(rules.distill_mbconv.output.metrics, seed=seed)
        files += control_metrics(seed)
    return files


def control_metrics(seed):
    """The controls of one teacher seed's students (baselines.controls); the first teacher's also hold the
    no-teacher runs of the pick's repeat seeds."""
    files = []
    for budget in SEARCH["budgets"]:
        blocks = moonshine_blocks(budget)
        if "kd" in BASELINES["controls"]:
            files += expand(
                rules.distill_moonshine_kd.output.metrics,
                budget=budget,
                block=blocks,
                seed=seed,
            )
        if "scratch" in BASELINES["controls"]:
            files += expand(
                rules.train_blockswap_scratch.output.metrics,
                budget=budget,
                seed=[seed] + (REPEAT_SEEDS if seed == FIRST_TEACHER else []),
            )
            files += expand(
                rules.train_moonshine_scratch.output.metrics,
                budget=budget,
                block=blocks,
                seed=seed,
            )
    return files


def random_net_metrics(wildcards):
    """Every random net's run, then the repeated nets' runs with the other seeds."""
    budgets = ABLATIONS["random_budgets"]
    repeated = range(min(ABLATIONS["random_repeats"], ABLATIONS["random_count"]))
    return expand(
        rules.distill_random_net.output.metrics,
        budget=budgets,
        i=range(ABLATIONS["random_count"]),
    ) + expand(
        rules.distill_random_net_repeat.output.metrics,
        budget=budgets,
        i=repeated,
        seed=[s for s in ABLATIONS["random_repeat_seeds"] if s != FIRST_TEACHER],
    )


def correlation_scores():
    """{"budget=B,k=K": proxy scores file}; expand lists both in the same order."""
    grid = {"budget": ABLATIONS["random_budgets"], "k": ABLATIONS["minibatches"]}
    return dict(
        zip(
            expand("budget={budget},k={k}", **grid),
            expand(rules.score_random_nets.output, **grid),
        )
    )


def density_metrics(wildcards):
    """Figure 2 at each random-net budget: the random nets, the single-blocktype nets around the budget and
    the Fisher pick of a search at it, all taught by the first teacher (as the random nets are).
    """
    budgets = ABLATIONS["random_budgets"]
    return {
        "random": random_net_metrics(wildcards),
        "single": [
            f
            for b in budgets
            for f in moonshine_metrics(b, FIRST_TEACHER, density_blocks(b))
        ],
        "blockswap": expand(
            rules.distill_blockswap.output.metrics, budget=budgets, seed=FIRST_TEACHER
        ),
    }


def sample_count_metrics(wildcards):
    """The top-of-n students, then the first teacher's BlockSwap students at the same budgets."""
    budgets = ABLATIONS["sample_budgets"]
    files = []
    for budget in budgets:
        files += expand(
            rules.distill_sample_count.output.metrics,
            budget=budget,
            n=sample_counts(budget),
            search=ABLATIONS["sample_seeds"],
        )
    return files + expand(
        rules.distill_blockswap.output.metrics, budget=budgets, seed=FIRST_TEACHER
    )


def claims_metrics(wildcards):
    """Every run the claims compare: the students and controls, random nets, Figure 2's and (c)'s nets."""
    files = student_metrics(wildcards)
    if ABLATIONS["random_count"]:
        files += [f for group in density_metrics(wildcards).values() for f in group]
    files += sample_count_metrics(wildcards) if ABLATIONS["sample_budgets"] else []
    return list(dict.fromkeys(files))


def all_outputs():
    """The profile's targets: its report's tables and figures, then the page that sums them up."""
    return report_outputs() + [f"{R}/RESULTS.md"]


def report_outputs():
    outs = []
    # The detection stage (rules/detection.smk); detection.only: that stage alone (the coco profile).
    if config["detection"]["enabled"]:
        outs.append(f"{R}/tables/detection.md")
        # `detect show` draws torchvision's detectors
        if config["detection"]["backend"] == "torchvision":
            outs.append(f"{R}/figures/detections.png")
        if config["detection"]["only"]:
            return outs
    outs += [f"{R}/tables/claims.md", f"{R}/tables/main.md", f"{R}/tables/main.csv"]
    if ABLATIONS["random_count"] and ABLATIONS["random_budgets"]:
        outs += [
            f"{R}/tables/proxy_correlation.md",
            f"{R}/tables/proxy_zoo.md",
            f"{R}/tables/density.md",
        ]
    if ABLATIONS["sample_budgets"]:
        outs.append(f"{R}/tables/samples.md")
    return outs


def launcher(resource):
    """How a job of resource class `resource` starts blockswap: one process, or N data-parallel ones, N from
    its `processes` (by default one per GPU; set without GPUs, N processes on the CPU). The same command
    runs locally and through SLURM: the plugin runs every job that is not MPI as one `srun -n1` task holding
    all of the job's GPUs (--gpus=N) and CPUs, so torchrun starts the N processes inside that task
    (--standalone: a free port on the job's node), which share its threads; see blockswap.data.distributed.
    (The plugin's MPI jobs, `mpi` + `tasks`, would need `srun` in the command itself, which a local run lacks.)
    """
    n = plan.processes(resource)
    return (
        "blockswap"
        if n == 1
        else f"torchrun --standalone --nproc-per-node {n} -m blockswap"
    )


TRAIN_LAUNCH = launcher(config["resources"]["train"])
LIGHT_RESOURCES = {"mem_mb": res("light", "mem_mb"), "runtime": res("light", "runtime")}
TRAIN_RESOURCES, SCORE_RESOURCES = (
    {key: res(kind, key) for key in ("mem_mb", "runtime", "gpu")}
    for kind in ("train", "score")
)


def labels(**kv):
    return " ".join(f"--label {k}={v}" for k, v in kv.items())


# Report outputs: tables as CSV, LaTeX and Markdown (shown in the HTML report), figures as PNG and PDF.
REPORT = "../workflow/report"


def table_outputs(name, caption, category):
    """CSV, LaTeX and the Markdown table shown in the HTML report."""
    shown = report(
        f"{R}/tables/{name}.md", caption=f"{REPORT}/{caption}", category=category
    )
    return [f"{R}/tables/{name}.csv", f"{R}/tables/{name}.tex", shown]


def figure_outputs(name, caption, category):
    shown = report(
        f"{R}/figures/{name}.png", caption=f"{REPORT}/{caption}", category=category
    )
    return [shown, f"{R}/figures/{name}.pdf"]
