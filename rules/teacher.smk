# Stage 1: one teacher per seed: trained here, or (teacher.pretrained) weights trained elsewhere, checked and
# tested. Either way its files are the same, so the students' rules name TEACHER_RULE and do not change.

TEACHER_FILES = run_files("teachers/seed{seed}")

if TEACHER["pretrained"]:

    rule import_teacher:
        """The pretrained teacher (teacher.pretrained, e.g. torchvision's ResNet-34), checked against
        teacher.model and tested, as the checkpoint a trained teacher would be."""
        output:
            **TEACHER_FILES.output,
        log:
            TEACHER_FILES.log,
        benchmark:
            TEACHER_FILES.benchmark
        conda:
            CONDA_ENV
        threads: res("score", "threads")
        resources:
            **SCORE_RESOURCES,
        params:
            # Not an input: a dry run needs no weights; `onstart` checks the file before any job runs.
            weights=TEACHER["pretrained"],
            model=TEACHER["model"],
            data=data_args(),
            test_subset=TrainConfig.flags(
                {"test_subset": TEACHER["recipe"].get("test_subset")}
            ),
            device=config["device"],
        shell:
            "blockswap import-weights --weights {params.weights} --model {params.model} {params.data}"
            " {params.test_subset} --device {params.device} --threads {threads} --label method=teacher"
            " --label model={params.model} --label teacher_seed={wildcards.seed}"
            " --checkpoint {output.checkpoint} -o {output.metrics} > {log} 2>&1"

    TEACHER_RULE = rules.import_teacher

else:

    rule train_teacher:
        output:
            **TEACHER_FILES.output,
        log:
            TEACHER_FILES.log,
        benchmark:
            TEACHER_FILES.benchmark
        conda:
            CONDA_ENV
        threads: res("train", "threads")
        resources:
            **TRAIN_RESOURCES,
        params:
            model=TEACHER["model"],
            recipe=TrainConfig.flags(TEACHER["recipe"]),
            data=data_args(),
            device=config["device"],
        shell:
            TRAIN_LAUNCH
            + " train --model {params.model} {params.data} {params.recipe} --seed {wildcards.seed}"
            " --device {params.device} --threads {threads} --label method=teacher --label model={params.model}"
            " --label teacher_seed={wildcards.seed} --checkpoint {output.checkpoint} -o {output.metrics}"
            " > {log} 2>&1"

    TEACHER_RULE = rules.train_teacher
