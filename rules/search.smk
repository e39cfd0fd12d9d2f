# Stage 2: BlockSwap's search per budget: sample candidates, score them, pick the best.


rule sample_candidates:
    output:
        f"{R}/search/budget{{budget}}/candidates.jsonl",
    log:
        f"{LOGS}/search/budget{{budget}}/sample.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        model=TEACHER["model"],
        shape=shape_args(),
        samples=SEARCH["samples"],
        tolerance=SEARCH["tolerance"],
        metric=SEARCH["metric"],
        candidates=SEARCH["candidates"],
        sampler=SEARCH["sampler"],
        seed=SEARCH["seed"],
    shell:
        "blockswap sample --model {params.model} --budget {wildcards.budget} {params.shape}"
        " --samples {params.samples} --tolerance {params.tolerance} --metric {params.metric}"
        " --candidates {params.candidates} --sampler {params.sampler} --seed {params.seed}"
        " -o {output} > {log} 2>&1"


rule score_candidates:
    input:
        rules.sample_candidates.output,
    output:
        f"{R}/search/budget{{budget}}/scores.csv",
    log:
        f"{LOGS}/search/budget{{budget}}/score.log",
    benchmark:
        f"{BENCH}/search/budget{{budget}}/score.tsv"
    conda:
        CONDA_ENV
    threads: res("score", "threads")
    resources:
        **SCORE_RESOURCES,
    params:
        proxy=SEARCH["proxy"],
        data=data_args(),
        batch_size=plan.scoring_batch(config),
        minibatches=1,  # the search ranks after one minibatch
        seed=SEARCH["seed"],
        device=config["device"],
        timings="",  # or "--timings": each proxy's seconds per candidate
    shell:
        "blockswap score {input} --proxy {params.proxy} {params.data} --batch-size {params.batch_size}"
        " --minibatches {params.minibatches} --seed {params.seed} --device {params.device}"
        " --threads {threads} {params.timings} -o {output} > {log} 2>&1"


rule select_top:
    """The best-scored candidate among the first n samples (n = all for the main search)."""
    input:
        candidates=rules.sample_candidates.output,
        scores=rules.score_candidates.output,
    output:
        f"{R}/search/budget{{budget}}/top{{n}}.json",
    log:
        f"{LOGS}/search/budget{{budget}}/top{{n}}.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        proxy=SEARCH["proxy"],
    shell:
        "blockswap select {input.candidates} {input.scores} --proxy {params.proxy} --first {wildcards.n}"
        " -o {output} > {log} 2>&1"
