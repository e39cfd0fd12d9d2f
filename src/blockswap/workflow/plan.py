"""What a workflow profile asks for, decided in the package (no torch), so that rules/common.smk only
wires files together: the cross-key checks the schema cannot express, and the baselines each budget gets.

`check_profile(config)` runs when Snakemake parses the workflow, before any job: every name (dataset,
models, block types, candidate set, proxies), the input shape against the dataset's, every budget against
the feasible range, the structured substitutions against the teacher's widths and the data-parallel
training jobs' processes against their GPUs and batches, each failure one BlockswapError naming the key and
what to write instead.
"""

from __future__ import annotations

from pathlib import Path

from ..core.blocktypes import candidate_set, get_block
from ..core.datadirs import DATASET_SHAPES, locate_fashion_mnist
from ..core.errors import BlockswapError
from ..core.genotype import Genotype
from ..core.registry import unknown_name_message
from ..core.sampling import CostTable
from ..core.scores import PROXY_ALIASES, PROXY_SIGNS
from . import plan_detection

SHAPE_KEYS = ("in_channels", "num_classes", "image_size")


def is_compress_profile(profile: dict) -> bool:
    """A profile of `blockswap compress` jobs (rules/compress.smk: a `compress` section, or the name compress with
    every key left to the schema's defaults), not a paper profile."""
    return "compress" in profile or profile.get("name") == "compress"


def shape(config: dict) -> dict:
    return {k: config["dataset"][k] for k in SHAPE_KEYS}


def _check_names(config: dict) -> None:
    dataset = config["dataset"]
    if dataset["name"] not in DATASET_SHAPES:
        raise BlockswapError(f"dataset.name: {unknown_name_message('dataset', dataset['name'], DATASET_SHAPES)}")
    native = DATASET_SHAPES[dataset["name"]]
    for key in SHAPE_KEYS:
        if native.get(key) is not None and dataset[key] != native[key]:
            raise BlockswapError(f"dataset.{key}: {dataset['name']} has {key} {native[key]}, the profile says "
                                 f"{dataset[key]}; write {key}: {native[key]}")
    for key, names in (("search.proxy", [config["search"]["proxy"]]),
                       ("ablations.proxies", config["ablations"]["proxies"])):
        for name in names:
            if PROXY_ALIASES.get(name, name) not in PROXY_SIGNS:
                raise BlockswapError(f"{key}: {unknown_name_message('proxy', name, PROXY_SIGNS)}")
    try:
        Genotype.uniform(config["teacher"]["model"], "Conv", **shape(config))
    except BlockswapError as e:
        raise BlockswapError(f"teacher.model: {e}") from None
    for model in config["baselines"]["scaled"]:
        try:
            Genotype.uniform(model, "Conv", **shape(config))
        except BlockswapError as e:
            raise BlockswapError(f"baselines.scaled: {e}") from None
    for block in config["baselines"]["moonshine_blocks"]:
        try:
            get_block(block)
        except BlockswapError as e:
            raise BlockswapError(f"baselines.moonshine_blocks: {e}") from None
    try:
        candidate_set(config["search"]["candidates"])
    except BlockswapError as e:
        raise BlockswapError(f"search.candidates: {e}") from None


def _check_budgets(config: dict) -> None:
    search, ablations = config["search"], config["ablations"]
    model = config["teacher"]["model"]
    table = CostTable.build(model, search["candidates"], search["metric"], **shape(config))
    lo, hi = table.feasible_range
    for key, budgets in (("search.budgets", search["budgets"]),
                         ("ablations.random_budgets", ablations["random_budgets"])):
        for b in budgets:
            if not lo < b < hi:
                raise BlockswapError(f"{key}: budget {b:,} is outside the feasible range {lo:,}–{hi:,} "
                                     f"{search['metric']} of {model}")
    for b in ablations["sample_budgets"]:
        if b not in search["budgets"]:
            raise BlockswapError(f"ablations.sample_budgets: {b} is not one of search.budgets")


def _check_structured(config: dict) -> None:
    """structured.blocks and .crs_off: structured substitutions valid at every block of the teacher's model."""
    section = config["structured"]
    for key in ("blocks", "crs_off"):
        for name in section[key]:
            try:
                if get_block(name).substitution is None:
                    raise BlockswapError(f"{name!r} is not a structured substitution (Sep, Generic_s, Shuffle_g, "
                                         "SepHashed_s, TensorTrain_s, Tucker_s, ACDC_L)")
                Genotype.uniform(config["teacher"]["model"], name, **shape(config))
            except BlockswapError as e:
                raise BlockswapError(f"structured.{key}: {e}") from None
    stray = [n for n in section["crs_off"] if n not in section["blocks"]]
    if stray:
        raise BlockswapError(f"structured.crs_off: {stray[0]!r} is not in structured.blocks, whose students it is "
                             "compared with")
    if section["crs_off"] and not section["crs_wd"]:
        raise BlockswapError("structured.crs_off retrains students with CRS-wd off, but structured.crs_wd is false "
                             "already; set crs_wd: true or crs_off: []")


def processes(resource: dict) -> int:
    """Processes of one training job of a resource class: `processes`, else one per GPU (at least one)."""
    return resource["processes"] or max(1, resource["gpu"])


def _check_processes(config: dict) -> None:
    """Data-parallel training: only the training classes run several processes, on GPUs one per GPU, with at
    least a thread each, each recipe's batch split evenly among them, SyncBN not on the CPU (the job itself
    would refuse a bad batch or SyncBN, but only after waiting for its turn on the cluster)."""
    detection = config["detection"]
    trainings = {"resources.train": config["resources"]["train"],
                 "detection.resources.train": detection["resources"]["train"]}
    others = {f"resources.{k}": v for k, v in config["resources"].items() if k != "train"}
    others.update({f"detection.resources.{k}": v for k, v in detection["resources"].items() if k != "train"})
    for key, resource in others.items():
        if (resource["processes"] or 1) > 1:
            raise BlockswapError(f"{key}.processes: only training jobs (resources.train, detection.resources.train) "
                                 "run several processes")
    for key, resource in trainings.items():
        n = processes(resource)
        if resource["gpu"] and n != resource["gpu"]:
            raise BlockswapError(f"{key}.processes: {n} processes for {resource['gpu']} GPUs; each process takes "
                                 "one GPU, so leave it null (one per GPU)")
        if resource["threads"] < n:
            raise BlockswapError(f"{key}.threads: {resource['threads']} for {n} processes; the processes share the "
                                 f"job's threads, so give it at least {n}")
    cpu = config["device"] == "cpu"
    recipes = {"student.recipe": (config["student"]["recipe"], "resources.train")}
    if not config["teacher"]["pretrained"]:
        recipes["teacher.recipe"] = (config["teacher"]["recipe"], "resources.train")
    if detection["enabled"]:
        recipes["detection.recipe"] = (detection["recipe"], "detection.resources.train")
        if detection["norm"] == "syncbn" and cpu and processes(trainings["detection.resources.train"]) > 1:
            raise BlockswapError("detection.norm: syncbn needs CUDA with several processes (torch's SyncBatchNorm "
                                 "does not run on the CPU); use bn, gn or frozen_bn with device: cpu")
    for key, (recipe, where) in recipes.items():
        n = processes(trainings[where])
        if recipe["batch_size"] % n:
            raise BlockswapError(f"{key}.batch_size: {recipe['batch_size']} does not divide among the {n} processes "
                                 f"of {where}")
        if recipe.get("sync_bn") and n > 1 and cpu:
            raise BlockswapError(f"{key}.sync_bn needs CUDA (torch's SyncBatchNorm does not run on the CPU); "
                                 "leave it false with device: cpu")


def scoring_batch(config: dict) -> int:
    """The proxies' minibatch size: search.batch_size, else the students' training batch (BlockSwap §3.3: Fisher
    potential on one minibatch of the training batch size, 128 on CIFAR-10)."""
    return config["search"]["batch_size"] or config["student"]["recipe"]["batch_size"]


def check_profile(config: dict) -> None:
    """Every cross-key check of a schema-validated profile; raises BlockswapError naming the key."""
    _check_names(config)
    _check_budgets(config)
    if config["teacher"].get("pretrained") and len(config["teacher"]["seeds"]) > 1:
        raise BlockswapError(f"teacher.pretrained: one weights file is one teacher, but teacher.seeds lists "
                             f"{len(config['teacher']['seeds'])}; give one seed")
    plan_detection.check(config)
    _check_structured(config)
    _check_processes(config)


def check_data(config: dict) -> None:
    """The dataset's files can be found (Fashion-MNIST; the paper datasets are checked by their jobs), the
    pretrained teacher's weights file exists, and the detection stage's data (the COCO files named, or
    Fashion-MNIST for the embedded set)."""
    plan_detection.check_data(config)
    pretrained = config["teacher"].get("pretrained")
    if pretrained and not Path(pretrained).is_file():
        raise BlockswapError(f"teacher.pretrained: {pretrained} not found; on a machine with internet run python -c "
                             "\"import torch, torchvision; torch.save(torchvision.models.resnet34(weights="
                             f"'IMAGENET1K_V1').state_dict(), 'resnet34.pth')\" and copy the file to {pretrained}")
    if config["dataset"]["name"] == "fashion-mnist" and not config["detection"]["only"]:
        try:
            locate_fashion_mnist(config["dataset"]["data_dir"])
        except BlockswapError as e:
            raise BlockswapError(f"dataset: {e}") from None


def single_type_costs(config: dict) -> dict[str, int]:
    """{block type: cost} of the teacher with every block that type (types valid at every block)."""
    from ..core.counting import analytic

    search, baselines = config["search"], config["baselines"]
    counts = {}
    for name in dict.fromkeys(candidate_set(search["candidates"]) + baselines["moonshine_blocks"]):
        try:
            g = Genotype.uniform(config["teacher"]["model"], name, **shape(config))
        except BlockswapError:
            continue  # not valid at every block of this model
        counts[name] = getattr(analytic(g), search["metric"])
    return counts


def moonshine_blocks(config: dict, budget: int, costs: dict[str, int] | None = None) -> list[str]:
    """Single-blocktype students at `budget`: the closest type under it, plus the configured ones that fit."""
    costs = single_type_costs(config) if costs is None else costs
    baselines = config["baselines"]
    fits = budget * (1 + config["search"]["tolerance"])
    chosen = [n for n in baselines["moonshine_blocks"] if n in costs and costs[n] <= fits]
    under = {n: c for n, c in costs.items() if c <= budget}
    if baselines["moonshine_closest"] and under:
        chosen.insert(0, max(under, key=under.get))
    return list(dict.fromkeys(chosen))


def density_blocks(config: dict, budget: int, costs: dict[str, int] | None = None) -> list[str]:
    """Figure 2's single-blocktype nets at a random-net budget: the closest type under the budget and the
    closest over it (the paper's own example, all-BG(2,4) = A4B2 at 200K, is 7% over), and the
    configured Moonshine types that fit."""
    costs = single_type_costs(config) if costs is None else costs
    over = {n: c for n, c in costs.items() if c > budget}
    closest_over = [min(over, key=over.get)] if over and config["baselines"]["moonshine_closest"] else []
    return list(dict.fromkeys(moonshine_blocks(config, budget, costs) + closest_over))


def sample_search_seed(n: int, search: int) -> int:
    """The sampling and scoring seed of ablation (c)'s search `search` of `n` samples: distinct for every
    (n, search), so the searches at different n share no samples (a seed shared across n would make the
    smaller search a prefix of the larger one). Distinct as long as search seeds stay below 1000."""
    return 1_000_000 + 1000 * int(n) + int(search)


def sample_counts(config: dict, budget: int) -> list[int]:
    """Sample counts of ablation (c) at `budget`, below the full search (which is the last point)."""
    ablations = config["ablations"]
    if budget not in ablations["sample_budgets"]:
        return []
    return sorted(n for n in ablations["sample_counts"] if n < config["search"]["samples"])
