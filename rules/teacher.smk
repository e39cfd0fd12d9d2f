# Stage 1: one teacher per seed.


rule train_teacher:
    output:
        checkpoint=f"{R}/teachers/seed{{seed}}/model.pt",
        metrics=f"{R}/teachers/seed{{seed}}/metrics.json",
    log:
        f"{LOGS}/teachers/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/teachers/seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        **TRAIN_RESOURCES,
    params:
        model=TEACHER["model"],
        recipe=recipe_flags(TEACHER["recipe"]),
        data=data_args(),
        device=config["device"],
    shell:
        "blockswap train --model {params.model} {params.data} {params.recipe} --seed {wildcards.seed}"
        " --device {params.device} --threads {threads} --label method=teacher --label model={params.model}"
        " --label teacher_seed={wildcards.seed} --checkpoint {output.checkpoint} -o {output.metrics}"
        " > {log} 2>&1"
