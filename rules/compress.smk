# The compress profile: a user's network compressed at each budget by each method and seed (`blockswap
# compress`: search or prune, then the same distillation), and the table that sets them side by side.
from pathlib import Path

from blockswap.compress.profile import MEASURE, check_profile
from blockswap.core.recipe import TrainConfig

validate_profile("../workflow/schemas/compress.schema.yaml")
C = config["compress"]
TRAIN_RESOURCES, LIGHT_RESOURCES = C["resources"]["train"], C["resources"]["light"]
DATA = f"{R}/data/fashion-mnist" if C["data"] == "embedded" else C["data"]
TEACHER = f"{R}/teacher/model.pt" if C["teacher"] == "embedded" else C["teacher"]
for key, path in (("data", DATA), ("teacher", TEACHER)):
    if C[key] != "embedded" and not Path(path).exists():
        _refuse(f"compress.{key}: {path} does not exist")
# What every job would refuse (a recipe, metric, teacher or budget it cannot run), refused now, before any job.
TEACHER_GENOTYPE = _check(
    lambda config: check_profile(
        config["compress"],
        data=None if C["data"] == "embedded" else DATA,
        teacher=None if C["teacher"] == "embedded" else TEACHER,
    )
)
MEASURED = C["metric"] == "latency" and C["latency_table"] == MEASURE
LATENCY_TABLE = f"{R}/latency_table.json" if MEASURED else C["latency_table"]
job_shell_prefix()


rule compress_table:
    input:
        expand(
            f"{R}/{{method}}/budget{{budget}}/seed{{seed}}/report.json",
            method=C["methods"],
            budget=[
                int(b) if not isinstance(b, str) and float(b).is_integer() else b
                for b in C["budgets"]
            ],  # 2e6 as 2000000, 0.7x as it is
            seed=C["seeds"],
        ),
    output:
        table=f"{R}/table.md",
        figure=f"{R}/pareto.png",
    log:
        f"{LOGS}/table.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    shell:
        "blockswap compress-table {input} -o {output.table} --figure {output.figure} > {log} 2>&1"


rule compress_results_page:
    """RESULTS.md: the table and figure with the run's commit, machine, threads and time (`blockswap
    results-page`)."""
    input:
        rules.compress_table.output,
    output:
        f"{R}/RESULTS.md",
    log:
        f"{LOGS}/results_page.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        results=lambda w, output: output[0].rsplit("/", 1)[0],  # the folder RESULTS.md sums up
        profile=config["name"],
    shell:
        "blockswap results-page {params.results} --profile {params.profile} -o {output} > {log} 2>&1"


rule compress_student:
    """One student: `blockswap compress` into its own folder (an interrupted job resumes there)."""
    input:
        data=DATA,
        teacher=TEACHER,
        latency_table=LATENCY_TABLE if MEASURED else [],
    output:
        f"{R}/{{method}}/budget{{budget}}/seed{{seed}}/report.json",
    log:
        f"{LOGS}/{{method}}/budget{{budget}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/{{method}}/budget{{budget}}/seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: C["threads"]
    resources:
        **TRAIN_RESOURCES,
    params:
        metric=C["metric"],
        samples=C["samples"],
        recipe=TrainConfig.flags(C["recipe"]),
        latency=f"--latency-table {LATENCY_TABLE}" if C["latency_table"] else "",
        round_to=lambda w: (
            f"--round-to {C['round_to']}"
            if C["round_to"] and w.method != "blockswap"
            else ""
        ),
    shell:
        "blockswap compress --teacher {input.teacher} --data {input.data} --budget {wildcards.budget}"
        " --method {wildcards.method} --metric {params.metric} {params.latency} {params.round_to}"
        " --samples {params.samples}"
        " --seed {wildcards.seed} {params.recipe} --threads {threads} --quiet -o $(dirname {output})"
        " > {log} 2>&1"


if C["data"] == "embedded":

    rule compress_embedded_data:
        """Fashion-MNIST written as an image folder."""
        output:
            directory(DATA),
        log:
            f"{LOGS}/data.log",
        conda:
            CONDA_ENV
        resources:
            **LIGHT_RESOURCES,
        shell:
            "blockswap data folder fashion-mnist --dest {output} > {log} 2>&1"


if C["teacher"] == "embedded":

    rule compress_embedded_teacher:
        """The teacher trained on the folder (compress.teacher_model, compress.teacher_recipe)."""
        input:
            DATA,
        output:
            checkpoint=TEACHER,
            metrics=f"{R}/teacher/metrics.json",
        log:
            f"{LOGS}/teacher.log",
        benchmark:
            f"{BENCH}/teacher.tsv"
        conda:
            CONDA_ENV
        threads: C["threads"]
        resources:
            **TRAIN_RESOURCES,
        params:
            model=C["teacher_model"],
            recipe=TrainConfig.flags(C["teacher_recipe"]),
        shell:
            "blockswap train --model {params.model} --dataset folder --data-dir {input} {params.recipe}"
            " --threads {threads} --quiet --checkpoint {output.checkpoint} -o {output.metrics} > {log} 2>&1"


if MEASURED:

    rule compress_latency_table:
        """The latency table of the teacher's model on this machine, at the jobs' threads (`blockswap
        latency-table`): the budgets' unit. Measured alone (all cores held), as timings want.
        """
        output:
            LATENCY_TABLE,
        log:
            f"{LOGS}/latency_table.log",
        conda:
            CONDA_ENV
        threads: workflow.cores
        resources:
            **LIGHT_RESOURCES,
        params:
            threads=C["threads"],
            shape=lambda w: (
                f"--model {TEACHER_GENOTYPE.model} --in-channels {TEACHER_GENOTYPE.in_channels}"
                f" --num-classes {TEACHER_GENOTYPE.num_classes} --image-size {TEACHER_GENOTYPE.image_size}"
            ),
        shell:
            "blockswap latency-table {params.shape} --threads {params.threads} --quiet -o {output} > {log} 2>&1"
