# Stage 3: students distilled from every teacher — BlockSwap's pick and the baselines.
# The other distill rules (here and in ablations.smk) are `use rule` variants of distill_blockswap:
# its command, with their own files and params genotype (where the net comes from), labels and seed.
# distill_blockswap has no docstring, as variants without one of their own would inherit it.

FIRST_TEACHER_CHECKPOINT = expand(TEACHER_RULE.output.checkpoint, seed=FIRST_TEACHER)


rule distill_blockswap:
    input:
        teacher=TEACHER_RULE.output.checkpoint,
        genotype=expand(
            rules.select_top.output, n=SEARCH["samples"], allow_missing=True
        ),
    output:
        checkpoint=f"{R}/students/blockswap/budget{{budget}}/teacher{{seed}}/model.pt",
        metrics=f"{R}/students/blockswap/budget{{budget}}/teacher{{seed}}/metrics.json",
    log:
        f"{LOGS}/students/blockswap/budget{{budget}}/teacher{{seed}}.log",
    benchmark:
        f"{BENCH}/students/blockswap/budget{{budget}}/teacher{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        **TRAIN_RESOURCES,
    params:
        recipe=recipe_flags(STUDENT["recipe"]),
        distill=recipe_flags(STUDENT["distillation"]),
        data=data_args(),
        device=config["device"],
        genotype=lambda w, input: f"--genotype {input.genotype}",
        labels=lambda w: labels(
            method="blockswap", budget=w.budget, teacher_seed=w.seed
        ),
        seed=lambda w: w.seed,
    shell:
        TRAIN_LAUNCH
        + " distill {params.genotype} --teacher {input.teacher} {params.data} {params.recipe}"
        " {params.distill} --seed {params.seed} --device {params.device} --threads {threads} {params.labels}"
        " --checkpoint {output.checkpoint} -o {output.metrics} > {log} 2>&1"


use rule distill_blockswap as distill_blockswap_repeat with:
    """The BlockSwap pick distilled from the first teacher again, with another seed (student.repeat_seeds)."""
    input:
        teacher=FIRST_TEACHER_CHECKPOINT,
        genotype=rules.distill_blockswap.input.genotype,
    output:
        checkpoint=f"{R}/students/blockswap/budget{{budget}}/teacher{FIRST_TEACHER}/seed{{seed}}/model.pt",
        metrics=f"{R}/students/blockswap/budget{{budget}}/teacher{FIRST_TEACHER}/seed{{seed}}/metrics.json",
    log:
        f"{LOGS}/students/blockswap/budget{{budget}}/teacher{FIRST_TEACHER}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/students/blockswap/budget{{budget}}/teacher{FIRST_TEACHER}/seed{{seed}}.tsv"
    params:
        labels=lambda w: labels(
            method="blockswap",
            budget=w.budget,
            teacher_seed=FIRST_TEACHER,
            seed=w.seed,
        ),


use rule distill_blockswap as distill_moonshine with:
    """Moonshine: the teacher with every block one cheap type."""
    input:
        teacher=TEACHER_RULE.output.checkpoint,
    output:
        checkpoint=f"{R}/students/moonshine/budget{{budget}}/{{block}}/teacher{{seed}}/model.pt",
        metrics=f"{R}/students/moonshine/budget{{budget}}/{{block}}/teacher{{seed}}/metrics.json",
    log:
        f"{LOGS}/students/moonshine/budget{{budget}}/{{block}}/teacher{{seed}}.log",
    benchmark:
        f"{BENCH}/students/moonshine/budget{{budget}}/{{block}}/teacher{{seed}}.tsv"
    params:
        genotype=lambda w: f"--model {TEACHER['model']} --block {w.block}",
        labels=lambda w: labels(
            method="moonshine", budget=w.budget, block=w.block, teacher_seed=w.seed
        ),


use rule distill_blockswap as distill_scaled with:
    """A depth/width-scaled WRN (all standard blocks) as the student."""
    input:
        teacher=TEACHER_RULE.output.checkpoint,
    output:
        checkpoint=f"{R}/students/scaled/{{model}}/teacher{{seed}}/model.pt",
        metrics=f"{R}/students/scaled/{{model}}/teacher{{seed}}/metrics.json",
    log:
        f"{LOGS}/students/scaled/{{model}}/teacher{{seed}}.log",
    benchmark:
        f"{BENCH}/students/scaled/{{model}}/teacher{{seed}}.tsv"
    params:
        genotype=lambda w: f"--model {w.model}",
        labels=lambda w: labels(method="scaled", model=w.model, teacher_seed=w.seed),


use rule distill_blockswap as distill_mbconv with:
    """The teacher architecture with every block an MBConv6 (Table 2's MBConv6 row)."""
    input:
        teacher=TEACHER_RULE.output.checkpoint,
    output:
        checkpoint=f"{R}/students/mbconv/teacher{{seed}}/model.pt",
        metrics=f"{R}/students/mbconv/teacher{{seed}}/metrics.json",
    log:
        f"{LOGS}/students/mbconv/teacher{{seed}}.log",
    benchmark:
        f"{BENCH}/students/mbconv/teacher{{seed}}.tsv"
    params:
        genotype=f"--model {TEACHER['model']} --block MBConv6",
        labels=lambda w: labels(method="mbconv", teacher_seed=w.seed),


# Controls (baselines.controls): the same students with KD instead of AT, or without a teacher.
use rule distill_moonshine as distill_moonshine_kd with:
    output:
        checkpoint=f"{R}/students/moonshine_kd/budget{{budget}}/{{block}}/teacher{{seed}}/model.pt",
        metrics=f"{R}/students/moonshine_kd/budget{{budget}}/{{block}}/teacher{{seed}}/metrics.json",
    log:
        f"{LOGS}/students/moonshine_kd/budget{{budget}}/{{block}}/teacher{{seed}}.log",
    benchmark:
        f"{BENCH}/students/moonshine_kd/budget{{budget}}/{{block}}/teacher{{seed}}.tsv"
    params:
        distill=recipe_flags({"at_beta": 0, **BASELINES["kd"]}),
        labels=lambda w: labels(
            method="moonshine_kd", budget=w.budget, block=w.block, teacher_seed=w.seed
        ),


rule train_blockswap_scratch:
    """The BlockSwap pick trained on the data alone, one run per teacher seed."""
    input:
        genotype=rules.distill_blockswap.input.genotype,
    output:
        checkpoint=f"{R}/students/blockswap_scratch/budget{{budget}}/seed{{seed}}/model.pt",
        metrics=f"{R}/students/blockswap_scratch/budget{{budget}}/seed{{seed}}/metrics.json",
    log:
        f"{LOGS}/students/blockswap_scratch/budget{{budget}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/students/blockswap_scratch/budget{{budget}}/seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        **TRAIN_RESOURCES,
    params:
        recipe=recipe_flags(STUDENT["recipe"]),
        data=data_args(),
        device=config["device"],
        genotype=lambda w, input: f"--genotype {input.genotype}",
        labels=lambda w: labels(
            method="blockswap_scratch", budget=w.budget, seed=w.seed
        ),
    shell:
        TRAIN_LAUNCH
        + " train {params.genotype} {params.data} {params.recipe} --seed {wildcards.seed}"
        " --device {params.device} --threads {threads} {params.labels}"
        " --checkpoint {output.checkpoint} -o {output.metrics} > {log} 2>&1"


use rule train_blockswap_scratch as train_moonshine_scratch with:
    """A Moonshine student trained on the data alone."""
    input:
        [],
    output:
        checkpoint=f"{R}/students/moonshine_scratch/budget{{budget}}/{{block}}/seed{{seed}}/model.pt",
        metrics=f"{R}/students/moonshine_scratch/budget{{budget}}/{{block}}/seed{{seed}}/metrics.json",
    log:
        f"{LOGS}/students/moonshine_scratch/budget{{budget}}/{{block}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/students/moonshine_scratch/budget{{budget}}/{{block}}/seed{{seed}}.tsv"
    params:
        genotype=lambda w: f"--model {TEACHER['model']} --block {w.block}",
        labels=lambda w: labels(
            method="moonshine_scratch", budget=w.budget, block=w.block, seed=w.seed
        ),
