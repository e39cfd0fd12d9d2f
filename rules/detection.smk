# Stage 6: detection transfer (BlockSwap §7, Table 4), when detection.enabled. A BlockSwap search for a
# detection backbone at a params budget, ranked by Fisher through the detector's loss on detection images;
# its pick and the single-type G(N) backbone each trained in the detector and evaluated with COCOeval.
# The data: the COCO files the profile names (checked in onstart, like the paper datasets), or the
# embedded set built here from Fashion-MNIST.


include: "detection_common.smk"


rule detect_make_set:
    """The embedded detection set: Fashion-MNIST garments on canvases, written as COCO."""
    output:
        directory(f"{DET}/set"),
    log:
        f"{LOGS}/detection/make_set.log",
    benchmark:
        f"{BENCH}/detection/make_set.tsv"
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        sizes=options(
            {k: v for k, v in DETECTION["embedded"].items() if k != "data_dir"}
        ),
        data_dir=options({"data_dir": plan_detection.items_dir(config)}),
    shell:
        "blockswap detect make-set {params.sizes} {params.data_dir} -o {output} > {log} 2>&1"


rule detect_sample:
    output:
        f"{DET}/search/candidates.jsonl",
    log:
        f"{LOGS}/detection/sample.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        model=DETECTION["model"],
        budget=plan_detection.budget(config),
        samples=DETECTION["samples"],
        tolerance=SEARCH["tolerance"],
        candidates=SEARCH["candidates"],
        sampler=SEARCH["sampler"],
        seed=DETECTION["seed"],
    shell:
        "blockswap sample --model {params.model} --budget {params.budget} --metric params"
        " --samples {params.samples} --tolerance {params.tolerance} --candidates {params.candidates}"
        " --sampler {params.sampler} --seed {params.seed} -o {output} > {log} 2>&1"


rule detect_score:
    """Fisher through the detector's loss on one minibatch of training images; the top-ranked is the pick."""
    input:
        candidates=rules.detect_sample.output,
        data=detection_set,
    output:
        scores=f"{DET}/search/scores.csv",
        pick=f"{DET}/search/pick.json",
    log:
        f"{LOGS}/detection/score.log",
    benchmark:
        f"{BENCH}/detection/score.tsv"
    conda:
        CONDA_ENV
    threads: DETECTION["resources"]["score"]["threads"]
    resources:
        **DET_RESOURCES["score"],
    params:
        data="--images {} --annotations {}".format(*detection_files("train")),
        detector=detector_args(),
        batch_size=DETECTION["score_batch_size"] or DETECTION["recipe"]["batch_size"],
        seed=DETECTION["seed"],
        device=config["device"],
    shell:
        "blockswap detect score {input.candidates} {params.data} {params.detector}"
        " --batch-size {params.batch_size} --seed {params.seed} --device {params.device} --threads {threads}"
        " --quiet -o {output.scores} --best {output.pick} > {log} 2>&1"


DETECT_BLOCKSWAP_FILES = run_files("detection/blockswap")


rule detect_train_blockswap:
    input:
        genotype=rules.detect_score.output.pick,
        data=detection_set,
        mmdet_config=mmdet_config,
    output:
        **DETECT_BLOCKSWAP_FILES.output,
    log:
        DETECT_BLOCKSWAP_FILES.log,
    benchmark:
        DETECT_BLOCKSWAP_FILES.benchmark
    conda:
        CONDA_ENV
    threads: DETECTION["resources"]["train"]["threads"]
    resources:
        **DET_RESOURCES["train"],
    params:
        genotype=lambda w, input: f"--genotype {input.genotype}",
        data=detection_data_args("train", "val"),
        detector=train_detector_args(),
        recipe=DetectTrainConfig.flags(DETECTION["recipe"]),
        device=config["device"],
        labels=labels(method="blockswap", budget=plan_detection.budget(config)),
        launch=DET_TRAIN_LAUNCH,
    shell:
        "{params.launch} detect train {params.genotype} {params.data} {params.detector} {params.recipe}"
        " --device {params.device} --threads {threads} --quiet {params.labels}"
        " --checkpoint {output.checkpoint} -o {output.metrics} > {log} 2>&1"


DETECT_SINGLE_FILES = run_files("detection/moonshine/{block}")


use rule detect_train_blockswap as detect_train_single with:
    """The single-type backbone (every block detection.single_block; DConv: ResNet-34-G(N))."""
    input:
        data=detection_set,
        mmdet_config=mmdet_config,
    output:
        **DETECT_SINGLE_FILES.output,
    log:
        DETECT_SINGLE_FILES.log,
    benchmark:
        DETECT_SINGLE_FILES.benchmark
    params:
        genotype=lambda w: f"--model {DETECTION['model']} --block {w.block}",
        labels=lambda w: labels(method="moonshine", block=w.block),


rule detect_figure:
    """Predicted boxes and masks of both backbones beside the ground truth on the first validation images
    (torchvision backend)."""
    input:
        data=detection_set,
        blockswap_model=rules.detect_train_blockswap.output.checkpoint,
        single_model=expand(
            rules.detect_train_single.output.checkpoint,
            block=DETECTION["single_block"],
        ),
    output:
        figure=figure_outputs("detections", "detections.rst", "Detection"),
    log:
        f"{LOGS}/detection/figure.log",
    benchmark:
        f"{BENCH}/detection/figure.tsv"
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        data="--images {} --annotations {}".format(*detection_files("val")),
        images=DETECTION["figure_images"],
        threshold=DETECTION["score_threshold"],
        top=DETECTION["figure_top"],
        single=f"{DETECTION['model']}-{DETECTION['single_block']}",
    shell:
        "blockswap detect show --model BlockSwap={input.blockswap_model} --model {params.single}={input.single_model}"
        " {params.data} --count {params.images} --score-threshold {params.threshold} --top {params.top}"
        " --threads 1 -o {output.figure} > {log} 2>&1"


rule report_detection:
    """Table 4: box (and mask) AP of both backbones, with the paper's numbers beside ours on the coco profile."""
    input:
        unpack(detection_metrics),
    output:
        table=table_outputs("detection", "detection.rst", "Detection"),
    log:
        f"{LOGS}/report/detection.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        paper=config["paper"],
    shell:
        "blockswap report detection --metrics {input} --paper {params.paper} --table {output.table} > {log} 2>&1"
