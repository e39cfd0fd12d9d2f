# Stage 4: the papers' ablations.
#   (a) proxies vs trained error of random nets (Table 1)   (b) density of their errors (Figure 2)
#   (c) error of the top-ranked candidate after n samples (§4.3)
# Ablation nets learn from the first teacher with the students' recipe.

FIRST_TEACHER = TEACHER_SEEDS[0]


rule sample_random_nets:
    output:
        f"{R}/ablations/random/budget{{budget}}/nets.jsonl",
    log:
        f"{LOGS}/ablations/random/budget{{budget}}/sample.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        model=TEACHER["model"],
        shape=shape_args(),
        nets=ABLATIONS["random_count"],
        tolerance=SEARCH["tolerance"],
        metric=SEARCH["metric"],
        candidates=SEARCH["candidates"],
        sampler=SEARCH["sampler"],
        seed=ABLATIONS["random_seed"],
    shell:
        "blockswap sample --model {params.model} --budget {wildcards.budget} {params.shape}"
        " --samples {params.nets} --tolerance {params.tolerance} --metric {params.metric}"
        " --candidates {params.candidates} --sampler {params.sampler} --seed {params.seed}"
        " -o {output} > {log} 2>&1"


rule distill_random_net:
    input:
        teacher=f"{R}/teachers/seed{FIRST_TEACHER}/model.pt",
        nets=f"{R}/ablations/random/budget{{budget}}/nets.jsonl",
    output:
        checkpoint=f"{R}/ablations/random/budget{{budget}}/net{{i}}/model.pt",
        metrics=f"{R}/ablations/random/budget{{budget}}/net{{i}}/metrics.json",
    log:
        f"{LOGS}/ablations/random/budget{{budget}}/net{{i}}.log",
    benchmark:
        f"{BENCH}/ablations/random/budget{{budget}}/net{{i}}.tsv"
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        **STUDENT_RESOURCES,
    params:
        **STUDENT_PARAMS,
        genotype=lambda w, input: f"--genotype {input.nets} --index {w.i}",
        labels=lambda w: labels(
            method="random", budget=w.budget, net=w.i, teacher_seed=FIRST_TEACHER
        ),
        seed=FIRST_TEACHER,
    shell:
        DISTILL


rule score_random_nets:
    """Every proxy of every random net after k minibatches, from random initialisation."""
    input:
        f"{R}/ablations/random/budget{{budget}}/nets.jsonl",
    output:
        f"{R}/ablations/random/budget{{budget}}/proxies_k{{k}}.csv",
    log:
        f"{LOGS}/ablations/random/budget{{budget}}/proxies_k{{k}}.log",
    benchmark:
        f"{BENCH}/ablations/random/budget{{budget}}/proxies_k{{k}}.tsv"
    conda:
        CONDA_ENV
    threads: res("score", "threads")
    resources:
        mem_mb=res("score", "mem_mb"),
        runtime=res("score", "runtime"),
        gpu=res("score", "gpu"),
    params:
        proxies=",".join(ABLATIONS["proxies"]),
        data=data_args(),
        batch_size=SEARCH["batch_size"],
        seed=SEARCH["seed"],
        device=config["device"],
    shell:
        "blockswap score {input} --proxy {params.proxies} {params.data} --batch-size {params.batch_size}"
        " --minibatches {wildcards.k} --seed {params.seed} --device {params.device} --threads {threads}"
        " -o {output} > {log} 2>&1"


rule distill_sample_count:
    """(c) The top-ranked of the first n candidates, distilled from the first teacher."""
    input:
        teacher=f"{R}/teachers/seed{FIRST_TEACHER}/model.pt",
        genotype=f"{R}/search/budget{{budget}}/top{{n}}.json",
    output:
        checkpoint=f"{R}/ablations/samples/budget{{budget}}/n{{n}}/model.pt",
        metrics=f"{R}/ablations/samples/budget{{budget}}/n{{n}}/metrics.json",
    log:
        f"{LOGS}/ablations/samples/budget{{budget}}/n{{n}}.log",
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        **STUDENT_RESOURCES,
    params:
        **STUDENT_PARAMS,
        genotype=lambda w, input: f"--genotype {input.genotype}",
        labels=lambda w: labels(
            method="samples", budget=w.budget, samples=w.n, teacher_seed=FIRST_TEACHER
        ),
        seed=FIRST_TEACHER,
    shell:
        DISTILL
