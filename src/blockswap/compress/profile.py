"""The compress profile's dry-run check (rules/compress.smk): what every job of it would refuse, before any job."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..core.datadirs import DATASET_SHAPES
from ..core.errors import BlockswapError
from ..core.genotype import Genotype
from ..core.recipe import DISTILL_DEFAULTS, TrainConfig
from .job import budget_table, check_budget, check_distillation, check_method, resolve_budget
from .teacher import teacher_genotype

MEASURE = "measure"  # a profile's latency_table: the workflow measures one before the jobs


def check_profile(section: dict, data: str | None, teacher: str | None):
    """The compress profile's `compress` section (rules/compress.smk) at the workflow's dry run: what every job of
    it would refuse, checked as `check_inputs` checks one job, so that no job starts on an impossible config - but
    without its work: the folder's shape from its class folders and first image, the teacher's from its tensors,
    no test of the teacher, the job's machine not yet known. `data`, `teacher`: their paths, None where embedded
    (Fashion-MNIST written as a folder; teacher_model trained on it). Each failure one BlockswapError naming the
    key. Returns the teacher's genotype (its model and input shape, which a measured latency table needs); with
    latency_table `measure`, the budgets wait for the table (each job checks its own)."""
    from types import SimpleNamespace

    from ..data.datasets import folder_shape

    with _key("compress.recipe"):
        config = TrainConfig.from_dict({**DISTILL_DEFAULTS, **section["recipe"], "dataset": "folder"})
        check_distillation(config)
    metric, methods = section["metric"], section["methods"]
    with _key("compress.methods"):
        for method in methods:
            check_method(metric, method)
    with _key("compress.data"):
        shape = folder_shape(data) if data else DATASET_SHAPES["fashion-mnist"]
    if teacher:
        with _key("compress.teacher"):
            genotype = teacher_genotype(Path(teacher), SimpleNamespace(**shape))[0]
    else:
        with _key("compress.teacher_recipe"):
            TrainConfig.from_dict(section["teacher_recipe"])
        with _key("compress.teacher_model"):
            genotype = Genotype.uniform(section["teacher_model"], "Conv", **shape)
    with _key("compress.round_to"):
        if section["round_to"] and methods == ["blockswap"]:
            raise BlockswapError("rounds pruned channel counts, and the profile prunes nothing (methods: blockswap)")
    if section["latency_table"] == MEASURE and metric == "latency":
        return genotype
    with _key("compress.latency_table"):
        table = budget_table(section["latency_table"], metric, genotype, None, section["threads"])
    strictest = "blockswap" if "blockswap" in methods else methods[0]  # pruning's one check, and the sampler's
    with _key("compress.budgets"):
        for budget in section["budgets"]:
            check_budget(genotype, resolve_budget(budget, genotype, metric, table), metric, strictest, table,
                         config.seed)
    return genotype


@contextlib.contextmanager
def _key(key: str):
    """A BlockswapError inside as one naming the profile's `key`."""
    try:
        yield
    except BlockswapError as e:
        raise BlockswapError(f"{key}: {e}") from None
