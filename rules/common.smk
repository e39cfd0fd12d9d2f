# Config validation, paths, shared parameters and input functions.
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate

from blockswap import plan
from blockswap.errors import BlockswapError


def _refuse(message):
    """A profile mistake: one line on stderr and exit status 2 before any job, as the CLI does."""
    print(f"blockswap workflow: invalid configuration: {message}", file=sys.stderr)
    sys.exit(2)


# A profile given with --configfile stands alone (schema defaults fill the rest); only without one is
# the embedded default loaded, so a paper profile never inherits the default's small subsets.
if not config:
    config.update(
        yaml.safe_load(
            (Path(workflow.basedir) / "workflow/config/default.yaml").read_text()
        )
    )
try:  # the schema fills in defaults too
    validate(config, "../workflow/schemas/config.schema.yaml")
except WorkflowError as e:  # one line naming the key, not the whole schema
    why = e.__context__  # the jsonschema ValidationError
    if not hasattr(why, "json_path"):
        raise
    _refuse(f"{why.json_path.lstrip('$.') or 'top level'}: {why.message}")

R = config["results_dir"] or f"results/{config['name']}"
LOGS = f"{R}/logs"
BENCH = f"{R}/benchmarks"
# Jobs call `blockswap` from the environment running Snakemake (e.g. .venv/bin), with no activation
# needed; with --sdm conda the job's own environment comes first on PATH.
CONDA_ENV = "../envs/blockswap.yaml"  # for --sdm conda: the same pins as pyproject.toml
shell.prefix(f'export PATH="{Path(sys.executable).parent}:$PATH"; ')

DATASET = config["dataset"]
TEACHER = config["teacher"]
SEARCH = config["search"]
STUDENT = config["student"]
BASELINES = config["baselines"]
ABLATIONS = config["ablations"]
TEACHER_SEEDS = TEACHER["seeds"]
SHAPE = {k: DATASET[k] for k in ("in_channels", "num_classes", "image_size")}


def _check(check):
    try:
        check(config)
    except BlockswapError as e:
        _refuse(e)


_check(plan.check_profile)


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


def recipe_args(recipe):
    """Command-line flags of a training recipe (only what that job uses, so edits rerun only it)."""
    args = [
        f"--epochs {recipe['epochs']}",
        f"--batch-size {recipe['batch_size']}",
        f"--lr {recipe['lr']}",
        f"--momentum {recipe['momentum']}",
        f"--weight-decay {recipe['weight_decay']}",
        f"--schedule {recipe['schedule']}",
        f"--cutout {recipe['cutout']}",
    ]
    if recipe["schedule"] == "step":
        args += [
            f"--milestones {','.join(map(str, recipe['milestones']))}",
            f"--gamma {recipe['gamma']}",
        ]
    if recipe["train_subset"]:
        args.append(f"--subset {recipe['train_subset']}")
    if recipe["test_subset"]:
        args.append(f"--test-subset {recipe['test_subset']}")
    return " ".join(args)


def distill_args():
    d = STUDENT["distillation"]
    return f"--at-beta {d['at_beta']} --kd-alpha {d['kd_alpha']} --kd-temperature {d['kd_temperature']}"


def res(kind, key):
    return config["resources"][kind][key]


SINGLE_TYPE_COSTS = plan.single_type_costs(config)


def moonshine_blocks(budget):
    return plan.moonshine_blocks(config, budget, SINGLE_TYPE_COSTS)


def sample_counts(budget):
    return plan.sample_counts(config, budget)


def student_metrics():
    """Every trained student's metrics file, grouped for the main table."""
    files = []
    for seed in TEACHER_SEEDS:
        files.append(f"{R}/teachers/seed{seed}/metrics.json")
        for budget in SEARCH["budgets"]:
            files.append(
                f"{R}/students/blockswap/budget{budget}/teacher{seed}/metrics.json"
            )
            files += [
                f"{R}/students/moonshine/budget{budget}/{block}/teacher{seed}/metrics.json"
                for block in moonshine_blocks(budget)
            ]
        files += [
            f"{R}/students/scaled/{m}/teacher{seed}/metrics.json"
            for m in BASELINES["scaled"]
        ]
        if BASELINES["mbconv"]:
            files.append(f"{R}/students/mbconv/teacher{seed}/metrics.json")
    return files


def random_net_metrics(budget):
    count = ABLATIONS["random_count"]
    return [
        f"{R}/ablations/random/budget{budget}/net{i}/metrics.json" for i in range(count)
    ]


def all_outputs():
    outs = [f"{R}/tables/main.md", f"{R}/tables/main.csv"]
    if ABLATIONS["random_count"] and ABLATIONS["random_budgets"]:
        outs += [f"{R}/tables/proxy_correlation.md", f"{R}/tables/density.md"]
    if ABLATIONS["sample_budgets"]:
        outs.append(f"{R}/tables/samples.md")
    return outs


# Every student is distilled the same way; rules differ only in where the genotype comes from.
STUDENT_PARAMS = {
    "recipe": recipe_args(STUDENT["recipe"]),
    "distill": distill_args(),
    "data": data_args(),
    "device": config["device"],
}
LIGHT_RESOURCES = {"mem_mb": res("light", "mem_mb"), "runtime": res("light", "runtime")}
STUDENT_RESOURCES = {
    "mem_mb": res("train", "mem_mb"),
    "runtime": res("train", "runtime"),
    "gpu": res("train", "gpu"),
}
DISTILL = (
    "blockswap distill {params.genotype} --teacher {input.teacher} {params.data} {params.recipe}"
    " {params.distill} --seed {params.seed} --device {params.device} --threads {threads} {params.labels}"
    " --checkpoint {output.checkpoint} -o {output.metrics} > {log} 2>&1"
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


def correlation_scores():
    return {
        f"budget={b},k={k}": f"{R}/ablations/random/budget{b}/proxies_k{k}.csv"
        for b in ABLATIONS["random_budgets"]
        for k in ABLATIONS["minibatches"]
    }
