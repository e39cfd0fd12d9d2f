# The structured stage's config and input functions (rules/structured.smk).
STRUCTURED = config["structured"]


def structured_recipe(crs_wd):
    """The students' recipe with CRS-wd on or off."""
    return TrainConfig.flags({**STUDENT["recipe"], "crs_wd": crs_wd})


def structured_metrics(wildcards):
    """The structured students, then every teacher and BlockSwap/Moonshine student to compare them with."""
    files = expand(
        rules.distill_structured.output.metrics,
        block=STRUCTURED["blocks"],
        seed=TEACHER_SEEDS,
    )
    files += expand(
        rules.distill_structured_repeat.output.metrics,
        block=STRUCTURED["blocks"],
        seed=[s for s in STRUCTURED["repeat_seeds"] if s != FIRST_TEACHER],
    )
    files += expand(
        rules.distill_structured_crs_off.output.metrics,
        block=STRUCTURED["crs_off"],
        seed=TEACHER_SEEDS,
    )
    if STRUCTURED["scratch"]:
        files += expand(
            rules.train_structured_scratch.output.metrics,
            block=STRUCTURED["blocks"],
            seed=TEACHER_SEEDS,
        )
    return files + student_metrics(wildcards)


def structured_outputs():
    return [f"{R}/tables/structured.md"] if STRUCTURED["blocks"] else []
