# Stage 3: students distilled from every teacher — BlockSwap's pick and the baselines.
# The other distill rules (here and in ablations.smk) are `use rule` variants of distill_blockswap:
# its command, with their own files and params genotype (where the net comes from), labels and seed.
# distill_blockswap has no docstring, as variants without one of their own would inherit it.

FIRST_TEACHER_CHECKPOINT = expand(TEACHER_RULE.output.checkpoint, seed=FIRST_TEACHER)


DISTILL_BLOCKSWAP_FILES = run_files("students/blockswap/budget{budget}/teacher{seed}")


rule distill_blockswap:
    input:
        teacher=TEACHER_RULE.output.checkpoint,
        genotype=expand(
            rules.select_top.output, n=SEARCH["samples"], allow_missing=True
        ),
    output:
        **DISTILL_BLOCKSWAP_FILES.output,
    log:
        DISTILL_BLOCKSWAP_FILES.log,
    benchmark:
        DISTILL_BLOCKSWAP_FILES.benchmark
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        **TRAIN_RESOURCES,
    params:
        recipe=TrainConfig.flags(STUDENT["recipe"]),
        distill=TrainConfig.flags(STUDENT["distillation"]),
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


DISTILL_BLOCKSWAP_REPEAT_FILES = run_files(
    f"students/blockswap/budget{{budget}}/teacher{FIRST_TEACHER}/seed{{seed}}"
)


use rule distill_blockswap as distill_blockswap_repeat with:
    """The BlockSwap pick distilled from the first teacher again, with another seed (student.repeat_seeds)."""
    input:
        teacher=FIRST_TEACHER_CHECKPOINT,
        genotype=rules.distill_blockswap.input.genotype,
    output:
        **DISTILL_BLOCKSWAP_REPEAT_FILES.output,
    log:
        DISTILL_BLOCKSWAP_REPEAT_FILES.log,
    benchmark:
        DISTILL_BLOCKSWAP_REPEAT_FILES.benchmark
    params:
        labels=lambda w: labels(
            method="blockswap",
            budget=w.budget,
            teacher_seed=FIRST_TEACHER,
            seed=w.seed,
        ),


DISTILL_MOONSHINE_FILES = run_files(
    "students/moonshine/budget{budget}/{block}/teacher{seed}"
)


use rule distill_blockswap as distill_moonshine with:
    """Moonshine: the teacher with every block one cheap type."""
    input:
        teacher=TEACHER_RULE.output.checkpoint,
    output:
        **DISTILL_MOONSHINE_FILES.output,
    log:
        DISTILL_MOONSHINE_FILES.log,
    benchmark:
        DISTILL_MOONSHINE_FILES.benchmark
    params:
        genotype=lambda w: f"--model {TEACHER['model']} --block {w.block}",
        labels=lambda w: labels(
            method="moonshine", budget=w.budget, block=w.block, teacher_seed=w.seed
        ),


DISTILL_SCALED_FILES = run_files("students/scaled/{model}/teacher{seed}")


use rule distill_blockswap as distill_scaled with:
    """A depth/width-scaled WRN (all standard blocks) as the student."""
    input:
        teacher=TEACHER_RULE.output.checkpoint,
    output:
        **DISTILL_SCALED_FILES.output,
    log:
        DISTILL_SCALED_FILES.log,
    benchmark:
        DISTILL_SCALED_FILES.benchmark
    params:
        genotype=lambda w: f"--model {w.model}",
        labels=lambda w: labels(method="scaled", model=w.model, teacher_seed=w.seed),


DISTILL_MBCONV_FILES = run_files("students/mbconv/teacher{seed}")


use rule distill_blockswap as distill_mbconv with:
    """The teacher architecture with every block an MBConv6 (Table 2's MBConv6 row)."""
    input:
        teacher=TEACHER_RULE.output.checkpoint,
    output:
        **DISTILL_MBCONV_FILES.output,
    log:
        DISTILL_MBCONV_FILES.log,
    benchmark:
        DISTILL_MBCONV_FILES.benchmark
    params:
        genotype=f"--model {TEACHER['model']} --block MBConv6",
        labels=lambda w: labels(method="mbconv", teacher_seed=w.seed),


DISTILL_MOONSHINE_KD_FILES = run_files(
    "students/moonshine_kd/budget{budget}/{block}/teacher{seed}"
)


# Controls (baselines.controls): the same students with KD instead of AT, or without a teacher.
use rule distill_moonshine as distill_moonshine_kd with:
    output:
        **DISTILL_MOONSHINE_KD_FILES.output,
    log:
        DISTILL_MOONSHINE_KD_FILES.log,
    benchmark:
        DISTILL_MOONSHINE_KD_FILES.benchmark
    params:
        distill=TrainConfig.flags({"at_beta": 0, **BASELINES["kd"]}),
        labels=lambda w: labels(
            method="moonshine_kd", budget=w.budget, block=w.block, teacher_seed=w.seed
        ),


TRAIN_BLOCKSWAP_SCRATCH_FILES = run_files(
    "students/blockswap_scratch/budget{budget}/seed{seed}"
)


rule train_blockswap_scratch:
    """The BlockSwap pick trained on the data alone, one run per teacher seed."""
    input:
        genotype=rules.distill_blockswap.input.genotype,
    output:
        **TRAIN_BLOCKSWAP_SCRATCH_FILES.output,
    log:
        TRAIN_BLOCKSWAP_SCRATCH_FILES.log,
    benchmark:
        TRAIN_BLOCKSWAP_SCRATCH_FILES.benchmark
    conda:
        CONDA_ENV
    threads: res("train", "threads")
    resources:
        **TRAIN_RESOURCES,
    params:
        recipe=TrainConfig.flags(STUDENT["recipe"]),
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


TRAIN_MOONSHINE_SCRATCH_FILES = run_files(
    "students/moonshine_scratch/budget{budget}/{block}/seed{seed}"
)


use rule train_blockswap_scratch as train_moonshine_scratch with:
    """A Moonshine student trained on the data alone."""
    input:
        [],
    output:
        **TRAIN_MOONSHINE_SCRATCH_FILES.output,
    log:
        TRAIN_MOONSHINE_SCRATCH_FILES.log,
    benchmark:
        TRAIN_MOONSHINE_SCRATCH_FILES.benchmark
    params:
        genotype=lambda w: f"--model {TEACHER['model']} --block {w.block}",
        labels=lambda w: labels(
            method="moonshine_scratch", budget=w.budget, block=w.block, seed=w.seed
        ),
