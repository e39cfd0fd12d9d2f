# Stage 3: students distilled from every teacher — BlockSwap's pick and the baselines.


rule distill_blockswap:
    input:
        teacher=f"{R}/teachers/seed{{seed}}/model.pt",
        genotype=f"{R}/search/budget{{budget}}/top{SEARCH['samples']}.json",
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
        **STUDENT_RESOURCES,
    params:
        **STUDENT_PARAMS,
        genotype=lambda w, input: f"--genotype {input.genotype}",
        labels=lambda w: labels(
            method="blockswap", budget=w.budget, teacher_seed=w.seed
        ),
        seed=lambda w: w.seed,
    shell:
        DISTILL


rule distill_moonshine:
    """Moonshine: the teacher with every block one cheap type."""
    input:
        teacher=f"{R}/teachers/seed{{seed}}/model.pt",
    output:
        checkpoint=f"{R}/students/moonshine/budget{{budget}}/{{block}}/teacher{{seed}}/model.pt",
        metrics=f"{R}/students/moonshine/budget{{budget}}/{{block}}/teacher{{seed}}/metrics.json",
    log:
        f"{LOGS}/students/moonshine/budget{{budget}}/{{block}}/teacher{{seed}}.log",
    benchmark:
        f"{BENCH}/students/moonshine/budget{{budget}}/{{block}}/teacher{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        **STUDENT_RESOURCES,
    params:
        **STUDENT_PARAMS,
        genotype=lambda w: f"--model {TEACHER['model']} --block {w.block}",
        labels=lambda w: labels(
            method="moonshine", budget=w.budget, block=w.block, teacher_seed=w.seed
        ),
        seed=lambda w: w.seed,
    shell:
        DISTILL


rule distill_scaled:
    """A depth/width-scaled WRN (all standard blocks) as the student."""
    input:
        teacher=f"{R}/teachers/seed{{seed}}/model.pt",
    output:
        checkpoint=f"{R}/students/scaled/{{model}}/teacher{{seed}}/model.pt",
        metrics=f"{R}/students/scaled/{{model}}/teacher{{seed}}/metrics.json",
    log:
        f"{LOGS}/students/scaled/{{model}}/teacher{{seed}}.log",
    benchmark:
        f"{BENCH}/students/scaled/{{model}}/teacher{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        **STUDENT_RESOURCES,
    params:
        **STUDENT_PARAMS,
        genotype=lambda w: f"--model {w.model}",
        labels=lambda w: labels(method="scaled", model=w.model, teacher_seed=w.seed),
        seed=lambda w: w.seed,
    shell:
        DISTILL


rule distill_mbconv:
    """The teacher architecture with every block an MBConv6 (Table 2's MBConv6 row)."""
    input:
        teacher=f"{R}/teachers/seed{{seed}}/model.pt",
    output:
        checkpoint=f"{R}/students/mbconv/teacher{{seed}}/model.pt",
        metrics=f"{R}/students/mbconv/teacher{{seed}}/metrics.json",
    log:
        f"{LOGS}/students/mbconv/teacher{{seed}}.log",
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        **STUDENT_RESOURCES,
    params:
        **STUDENT_PARAMS,
        genotype=f"--model {TEACHER['model']} --block MBConv6",
        labels=lambda w: labels(method="mbconv", teacher_seed=w.seed),
        seed=lambda w: w.seed,
    shell:
        DISTILL
