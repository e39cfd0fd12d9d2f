# The compress profile: a user's network compressed at each budget by each method and seed (`blockswap
# compress`: search or prune, then the same distillation), and the table that sets them side by side.
from pathlib import Path

from blockswap.compress import check_profile
from blockswap.recipe import TrainConfig

validate_profile("../workflow/schemas/compress.schema.yaml")
C = config["compress"]
R = config["results_dir"] or f"results/{config['name']}"
DATA = f"{R}/data/fashion-mnist" if C["data"] == "embedded" else C["data"]
TEACHER = f"{R}/teacher/model.pt" if C["teacher"] == "embedded" else C["teacher"]
for key, path in (("data", DATA), ("teacher", TEACHER)):
    if C[key] != "embedded" and not Path(path).exists():
        _refuse(f"compress.{key}: {path} does not exist")
# What every job would refuse (a recipe, metric, teacher or budget it cannot run), refused now, before any job.
_check(
    lambda config: check_profile(
        config["compress"],
        data=None if C["data"] == "embedded" else DATA,
        teacher=None if C["teacher"] == "embedded" else TEACHER,
    )
)
job_shell_prefix()


rule compress_table:
    input:
        expand(
            f"{R}/{{method}}/budget{{budget}}/seed{{seed}}/report.json",
            method=C["methods"],
            budget=[
                int(b) if float(b).is_integer() else b for b in C["budgets"]
            ],  # 2e6 as 2000000
            seed=C["seeds"],
        ),
    output:
        table=f"{R}/table.md",
        figure=f"{R}/pareto.png",
    log:
        f"{R}/logs/table.log",
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
        f"{R}/logs/results_page.log",
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
    output:
        f"{R}/{{method}}/budget{{budget}}/seed{{seed}}/report.json",
    log:
        f"{R}/logs/{{method}}/budget{{budget}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/{{method}}/budget{{budget}}/seed{{seed}}.tsv"
    threads: C["threads"]
    params:
        recipe=TrainConfig.flags(C["recipe"]),
        latency=f"--latency-table {C['latency_table']}" if C["latency_table"] else "",
    shell:
        "blockswap compress --teacher {input.teacher} --data {input.data} --budget {wildcards.budget}"
        " --method {wildcards.method} --metric {C[metric]} {params.latency} --samples {C[samples]}"
        " --seed {wildcards.seed} {params.recipe} --threads {threads} --quiet -o $(dirname {output})"
        " > {log} 2>&1"


if C["data"] == "embedded":

    rule compress_embedded_data:
        """Fashion-MNIST written as an image folder."""
        output:
            directory(DATA),
        log:
            f"{R}/logs/data.log",
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
            f"{R}/logs/teacher.log",
        threads: C["threads"]
        params:
            recipe=TrainConfig.flags(C["teacher_recipe"]),
        shell:
            "blockswap train --model {C[teacher_model]} --dataset folder --data-dir {input} {params.recipe}"
            " --threads {threads} --quiet --checkpoint {output.checkpoint} -o {output.metrics} > {log} 2>&1"
