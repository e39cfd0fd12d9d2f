"""A compress job before any work: its inputs checked (the method, the distillation, the budget and its latency
table, the folder), its identity in job.json, a folder of another job refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

from ..core.counting import analytic, units
from ..core.errors import BlockswapError
from ..core.files import read_json, write_json
from ..core.recipe import differences
from ..core.sampling import CostTable, sample_table
from .teacher import teacher_file, teacher_genotype

METHODS = ("blockswap", "prune-magnitude", "prune-taylor")


def budget_cost(genotype, metric: str, latency_table: dict | None) -> float:
    from ..nn.latency import predict

    return predict(latency_table, genotype) if metric == "latency" else getattr(analytic(genotype), metric)


def resolve_budget(budget: float | str, genotype, metric: str, table: dict | None) -> float:
    """A budget in the metric's unit: itself, or a fraction of the teacher's cost ("0.7x")."""
    if not isinstance(budget, str):
        return float(budget)
    return fraction_of_teacher(budget) * budget_cost(genotype, metric, table)


def fraction_of_teacher(budget: str) -> float:
    """0.7 of "0.7x"; a fraction not in (0, 1) is refused (the teacher itself is not compressed)."""
    try:
        fraction = float(budget.strip().lower().removesuffix("x")) if budget.strip().lower().endswith("x") else -1
    except ValueError:
        fraction = -1
    if not 0 < fraction < 1:
        raise BlockswapError(f"budget {budget!r}: a fraction of the teacher's cost is a number between 0 and 1 "
                             "followed by x (0.7x: 70% of the teacher's)")
    return fraction


def check_job(out: Path, job: dict) -> None:
    """Refuse a folder that holds another job's results (or anything but a job); writes nothing (`start_job`)."""
    saved = out / "job.json"
    if saved.exists():
        diffs = differences(read_json(saved, "job file"), job)
        if diffs:
            raise BlockswapError(f"{out} holds another job's results ({'; '.join(diffs[:3])}); give another "
                                 "-o, or delete the folder to start afresh")
    elif out.is_dir() and any(out.iterdir()):
        raise BlockswapError(f"{out} is not empty and holds no compress job; give an empty or new folder")


def start_job(out: Path, job: dict) -> None:
    """Start this job (job.json) or continue it."""
    if not (out / "job.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "job.json", job)


class JobInputs(NamedTuple):
    """What `check_inputs` found: the teacher's file, genotype and weights, the training set, the device, the
    latency table and BlockSwap's cost table (None where unused), and `config` with the teacher's --normalize."""
    weights: Path
    genotype: Any
    state_dict: dict
    train_set: Any
    device: Any
    table: dict | None
    costs: Any
    config: Any
    budget: float


def check_inputs(teacher: str, data_dir: str, budget: float | str, config, metric: str, method: str,
                 latency_table: str | None):
    """Everything a user can get wrong, before any work: (teacher file, its genotype and state dict, the
    training set, the device, the latency table or None, BlockSwap's cost table or None, `config` with the
    teacher's --normalize where the user gave none)."""
    from ..data.datasets import load_dataset, stratified_subset
    from ..training.engine import Precision, resolve_device

    check_method(metric, method)
    check_distillation(config)
    device = resolve_device(config.device)
    Precision.for_run(config, device)  # amp and channels-last: CUDA only
    train_set = load_dataset("folder", data_dir, "train")
    if config.subset is not None:  # a subset larger than the folder is refused now, not after the teacher's test
        stratified_subset(train_set.labels, config.subset, config.subset_seed)
    examples = config.subset or len(train_set)
    if examples < config.batch_size:
        raise BlockswapError(f"{data_dir}/train: {examples} training images, fewer than a batch (--batch-size "
                             f"{config.batch_size}); give --batch-size {examples} or less, or more images")
    load_dataset("folder", data_dir, "test", config.test_subset, config.subset_seed)  # DIR/val: the same classes
    weights = teacher_file(teacher)
    genotype, state_dict, normalize = teacher_genotype(weights, train_set)
    # The student learns from the teacher's view of the images: both get the teacher's preprocessing.
    config = dataclasses.replace(config, normalize=config.normalize or normalize)
    train_set = load_dataset("folder", data_dir, "train", normalize=config.normalize)
    table = budget_table(latency_table, metric, genotype, device, job_threads(config))
    budget = resolve_budget(budget, genotype, metric, table)
    costs = check_budget(genotype, budget, metric, method, table, config.seed)
    return JobInputs(weights, genotype, state_dict, train_set, device, table, costs, config, budget)


def check_method(metric: str, method: str) -> None:
    """The method known and, for pruning, Torch-Pruning installed."""
    if method not in METHODS:
        raise BlockswapError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if method != "blockswap":
        from .pruning import torch_pruning

        torch_pruning()  # installed, or one line saying how


def check_distillation(config) -> None:
    if not config.uses_at:
        raise BlockswapError("compress distils the student with attention transfer: give --at-beta > 0")


def budget_table(latency_table: str | None, metric: str, genotype, device, threads: int) -> dict | None:
    """The latency table a latency budget is counted in (None for params and MACs): given, and measured for the
    teacher's model and input shape, on `device` at `threads` (device None: whichever the table was measured on,
    at `threads` if a CPU - the workflow's dry run, before the job's machine is known)."""
    from ..nn.latency import SHAPE_KEYS, load_table

    if metric != "latency":
        return None
    if latency_table is None:
        raise BlockswapError(f"--metric latency needs --latency-table FILE: measure one for {genotype.model} on "
                             f"the job's device with `blockswap latency-table --model {genotype.model} --image-size "
                             f"{genotype.image_size} --in-channels {genotype.in_channels} --num-classes "
                             f"{genotype.num_classes} --threads {threads}"
                             + (f" --device {device.type}`" if device is not None else "`"))
    return load_table(latency_table, device, model=genotype.model, threads=threads,
                      shape={key: getattr(genotype, key) for key in SHAPE_KEYS})


def check_budget(genotype, budget: float, metric: str, method: str, table: dict | None, seed: int):
    """A budget some student reaches: below the teacher's cost and, for BlockSwap, within the range its
    substitutions span (the sampler's cost table, returned; None for pruning)."""
    from ..nn.latency import cost_table

    full = budget_cost(genotype, metric, table)
    if budget >= full:
        raise BlockswapError(f"budget {budget:,.0f} {units(metric)} is not below the teacher's {full:,.0f}: "
                             "nothing to compress")
    if method != "blockswap":
        return None
    costs = cost_table(table) if table else CostTable.build(
        genotype.model, None, metric, genotype.in_channels, genotype.num_classes, genotype.image_size)
    sample_table(costs, budget, 1, seed)  # refuses a budget no substitution reaches, in one line
    return costs


def job_threads(config) -> int:
    """The intra-op threads the job runs at: --threads, else the CPUs this process may use (as `train`)."""
    from ..training.runner import available_cpus

    return config.threads or available_cpus()
