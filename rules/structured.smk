# Stage 3b: structured substitutions (deficient-efficient: Gray et al. 2019): the teacher's model with every block one
# substitution, distilled with AT from every teacher (`use rule distill_blockswap`), trained without a teacher
# (`use rule train_blockswap_scratch`), and, for structured.crs_off, distilled again with CRS-wd off.
# Their table and Pareto figures put them beside the teachers, BlockSwap and Moonshine students.
# Its config and input functions are in structured_common.smk.


DISTILL_STRUCTURED_FILES = run_files("students/structured/{block}/teacher{seed}")


use rule distill_blockswap as distill_structured with:
    """A structured substitution in every block, taught with AT by each teacher."""
    input:
        teacher=TEACHER_RULE.output.checkpoint,
    output:
        **DISTILL_STRUCTURED_FILES.output,
    log:
        DISTILL_STRUCTURED_FILES.log,
    benchmark:
        DISTILL_STRUCTURED_FILES.benchmark
    params:
        recipe=structured_recipe(STRUCTURED["crs_wd"]),
        genotype=lambda w: f"--model {TEACHER['model']} --block {w.block}",
        labels=lambda w: labels(method="structured", block=w.block, teacher_seed=w.seed),


DISTILL_STRUCTURED_CRS_OFF_FILES = run_files(
    "students/structured_crs_off/{block}/teacher{seed}"
)


use rule distill_structured as distill_structured_crs_off with:
    """The CRS-wd ablation: the same student with the plain weight decay on every tensor."""
    output:
        **DISTILL_STRUCTURED_CRS_OFF_FILES.output,
    log:
        DISTILL_STRUCTURED_CRS_OFF_FILES.log,
    benchmark:
        DISTILL_STRUCTURED_CRS_OFF_FILES.benchmark
    params:
        recipe=structured_recipe(False),
        labels=lambda w: labels(
            method="structured_crs_off", block=w.block, teacher_seed=w.seed
        ),


DISTILL_STRUCTURED_REPEAT_FILES = run_files(
    f"students/structured/{{block}}/teacher{FIRST_TEACHER}/seed{{seed}}"
)


use rule distill_structured as distill_structured_repeat with:
    """The same student distilled from the first teacher again, with another seed (structured.repeat_seeds)."""
    input:
        teacher=FIRST_TEACHER_CHECKPOINT,
    output:
        **DISTILL_STRUCTURED_REPEAT_FILES.output,
    log:
        DISTILL_STRUCTURED_REPEAT_FILES.log,
    benchmark:
        DISTILL_STRUCTURED_REPEAT_FILES.benchmark
    params:
        labels=lambda w: labels(
            method="structured",
            block=w.block,
            teacher_seed=FIRST_TEACHER,
            seed=w.seed,
        ),


TRAIN_STRUCTURED_SCRATCH_FILES = run_files(
    "students/structured_scratch/{block}/seed{seed}"
)


use rule train_blockswap_scratch as train_structured_scratch with:
    """A structured substitution in every block, trained on the data alone."""
    input:
        [],
    output:
        **TRAIN_STRUCTURED_SCRATCH_FILES.output,
    log:
        TRAIN_STRUCTURED_SCRATCH_FILES.log,
    benchmark:
        TRAIN_STRUCTURED_SCRATCH_FILES.benchmark
    params:
        recipe=structured_recipe(STRUCTURED["crs_wd"]),
        genotype=lambda w: f"--model {TEACHER['model']} --block {w.block}",
        labels=lambda w: labels(method="structured_scratch", block=w.block, seed=w.seed),


rule report_structured:
    input:
        structured_metrics,
    output:
        table=table_outputs("structured", "structured.rst", "Structured"),
        figure=figure_outputs(
            "structured_pareto_params", "structured.rst", "Structured"
        ),
        figure_ops=figure_outputs(
            "structured_pareto_ops", "structured.rst", "Structured"
        ),
    log:
        f"{LOGS}/report/structured.log",
    conda:
        CONDA_ENV
    resources:
        **LIGHT_RESOURCES,
    params:
        paper=config["paper"],
    shell:
        "blockswap report results --metrics {input} --paper {params.paper} --table {output.table}"
        " --figure pareto_params {output.figure} --figure pareto_ops {output.figure_ops} > {log} 2>&1"
