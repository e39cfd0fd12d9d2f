"""Compress a user's network: a trained teacher and an image folder in, a distilled student under a params,
MACs or latency budget out, with a model card.

The teacher is a torchvision ResNet-18/34/50/101 or Wide ResNet-50-2 state dict (a file, or the name of one whose
weights are in torch's hub cache) or a blockswap checkpoint (any registered model: WRNs, ResNets); the folder is
DIR/train/<class>/* and DIR/val/<class>/*. A budget is a number of the metric's unit, or a fraction of the
teacher's own cost ("0.7x": 70% of its params, MACs, or its latency as the table predicts it - the same figure
for every method, on any machine). The student is made by `method`:
  blockswap        the paper's search: `samples` mixed-block candidates in the budget, ranked by Fisher potential
                   on one minibatch, the best kept (BlockSwap §3);
  prune-magnitude  the teacher pruned to the budget by Torch-Pruning, channels ranked by L2 norm (`pruning`; a
                   latency budget met by timing the pruned nets; channel counts a multiple of `round_to`);
  prune-taylor     the same, ranked by first-order Taylor importance.
Whatever made it, the student is then trained the same way - the same recipe, steps and seed, attention
transfer from the teacher where the student's attention points pair with the teacher's (the registry's nets,
pruned or substituted, keep them), knowledge distillation otherwise - so that a comparison isolates the
method. Each stage writes into OUTDIR atomically and is skipped when done, so an interrupted job resumes
(the training mid-epoch, from its resume file) and says which stages it skips; job.json holds the job's
identity, and a folder that holds another job's results is refused. A finished job (report.json written) run
again does nothing and says so. The wall time of interrupted attempts is kept in wall_time.json, so that the
report's wall_time_s is the job's total.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from .counting import units
from .errors import BlockswapError
from .files import provenance, read_json, write_json, write_text
from .recipe import RUN_ONLY, differences

METHODS = ("blockswap", "prune-magnitude", "prune-taylor")
TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "wide_resnet50_2")  # torchvision's and ours
Z95 = 1.959964  # the normal quantile of a two-sided 95% interval
ALPHA = 0.05  # a table's verdicts: a difference is shown where its Holm-adjusted p is below this
KD_ALPHA = 0.9  # KD's mix when the student has no attention points to pair: (1-α)·CE + α·KD (Hinton et al.)


def wilson_interval(errors: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of an error rate errors/n, in percent."""
    p, z2 = errors / n, Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return 100 * (centre - half), 100 * (centre + half)


def torchvision_model(state_dict: dict, path) -> str:
    """Which registered ResNet a torchvision state dict is, from its tensor names and layer1's first 3×3; one line
    naming the supported ones if none is (ResNet-152, a ResNeXt's grouped 3×3s, a Wide ResNet-101-2)."""
    found = state_layout(state_dict)
    known = {registered_layout(name): name for name in TORCHVISION_RESNETS}
    if found in known:
        return known[found]
    blocks, depth, conv = found
    grouped = f", its 3×3s grouped ({conv[0] // conv[1]} groups, as a ResNeXt's)" if conv and conv[0] != conv[1] else ""
    raise BlockswapError(f"{path} is a torchvision ResNet of {blocks} blocks that the registry lacks (blocks per stage "
                         f"{depth}, layer1's 3×3 {conv[0] if conv else '?'} wide{grouped}); compress takes "
                         f"{', '.join(f'{n} {describe_layout(registered_layout(n))}' for n in TORCHVISION_RESNETS)} - "
                         "or a blockswap checkpoint")


def state_layout(state_dict: dict) -> tuple:
    """(blocks: "basic" or "bottleneck", blocks per stage, layer1's first 3×3 as (out, in per group)) of a
    torchvision ResNet state dict."""
    blocks = "bottleneck" if any(k.endswith("conv3.weight") for k in state_dict) else "basic"
    depth = tuple(len({k.split(".")[1] for k in state_dict if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    conv = state_dict.get("layer1.0.conv2.weight")
    return blocks, depth, None if conv is None else tuple(conv.shape[:2])


def registered_layout(name: str) -> tuple:
    """`state_layout` of the registered ResNet `name` with every block `Conv`, from its architecture."""
    from .arch import get_architecture

    arch = get_architecture(name)
    first = arch.slots(arch.default_image_size)[0]
    width = first.width or first.cout
    return arch.blocks_word, tuple(n for n, _, _ in arch.stages), (width, width)


def describe_layout(layout: tuple) -> str:
    return f"({layout[0]}, {'-'.join(map(str, layout[1]))}, {layout[2][0]} wide)"


def teacher_file(teacher: str) -> Path:
    """The teacher's weights file: `teacher` itself, or a torchvision name's weights in torch's hub cache."""
    if Path(teacher).is_file():
        return Path(teacher)
    if teacher in TORCHVISION_RESNETS:
        import torch
        from torchvision.models import get_model_weights

        url = get_model_weights(teacher).DEFAULT.url
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if not path.is_file():
            raise BlockswapError(f"--teacher {teacher}: its weights are not in {path.parent}; download {url} "
                                 "there, or pass the weights file")
        return path
    raise BlockswapError(f"--teacher {teacher}: no such file, and not a torchvision name "
                         f"({', '.join(TORCHVISION_RESNETS)})")


def teacher_genotype(path: Path, dataset):
    """The teacher's genotype, shaped for `dataset`, its state dict and the --normalize it was trained with
    (`teacher_normalize`); refuses weights that do not fit the genotype or the folder's classes."""
    from .genotype import Genotype
    from .models import create_model
    from .pretrained import check_fits, read_weights

    state_dict, genotype, record = read_weights(path)
    if genotype is None:  # a torchvision state dict
        fc = state_dict.get("fc.weight")
        genotype = Genotype.uniform(torchvision_model(state_dict, path), "Conv",
                                    in_channels=dataset.in_channels, image_size=dataset.image_size,
                                    num_classes=dataset.num_classes if fc is None else fc.shape[0])
    if genotype.num_classes != dataset.num_classes:
        raise BlockswapError(f"{path} has {genotype.num_classes} outputs, the folder {dataset.num_classes} classes; "
                             "the teacher must be trained on these classes (one output per class folder)")
    if (genotype.in_channels, genotype.image_size) != (dataset.in_channels, dataset.image_size):
        raise BlockswapError(f"{path} takes {genotype.in_channels}×{genotype.image_size}² images, the folder holds "
                             f"{dataset.in_channels}×{dataset.image_size}²")
    check_fits(state_dict, create_model(genotype), path, f"{genotype.model} {genotype.id}")
    return genotype, state_dict, teacher_normalize(record)


def teacher_normalize(record: dict | None) -> str | None:
    """The --normalize a teacher was trained with: torchvision's ImageNet mean and std for a torchvision state
    dict (`record` None: torchvision's models are trained so, and users train theirs as its reference scripts
    do); for a blockswap checkpoint the mean and std its metrics record, else (a checkpoint from before they were
    recorded) its config's --normalize, else its dataset's own - None for a folder, which is what `load_dataset`
    gives it by default."""
    from .data import DATASET_STATISTICS
    from .imagefolder import normalize_spec

    if record is None:
        return "imagenet"
    recorded = (record.get("metrics") or {}).get("preprocess")
    if recorded:
        return normalize_spec(recorded["mean"], recorded["std"])
    config = record.get("config") or {}
    if config.get("normalize"):
        return config["normalize"]
    stats = DATASET_STATISTICS.get(config.get("dataset"))
    return normalize_spec(*stats) if stats else None


def check_beats_chance(metrics: dict, classes: int, path, preprocess) -> None:
    """Refuse a teacher whose tested error cannot be told from chance, 1 - 1/classes: its 95% Wilson interval
    reaches it (or lies above it). Such a teacher mostly sees inputs unlike its training's - another mean and std,
    or its classes in another order - and a student distilled from it learns nothing. In a rehearsal (tiny,
    barely trained teachers) it is only said."""
    n, error = metrics["test_examples"], metrics["test_top1_error"]
    low, high = wilson_interval(round(error * n / 100), n)
    chance = 100 * (1 - 1 / classes)
    if high < chance:
        return
    message = (f"teacher {path}: its test error {error:.2f}% (95% interval {low:.1f}-{high:.1f}%, {n} images) "
               f"cannot be told from chance ({chance:.2f}% for {classes} classes); it was most likely trained with "
               f"other preprocessing than {preprocess.describe()} - give the teacher's with --normalize imagenet, "
               "folder or MEAN:STD (or its classes are in another order than the folder's sorted class folders)")
    from .report.figures import rehearsal

    if not rehearsal():
        raise BlockswapError(message)
    print(f"rehearsal, not refused: {message}", file=sys.stderr)


def budget_cost(genotype, metric: str, latency_table: dict | None) -> float:
    from .counting import analytic
    from .latency import predict

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
    import dataclasses

    from .data import load_dataset, stratified_subset
    from .engine import Precision, resolve_device

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
    from .latency import SHAPE_KEYS, load_table

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
    from .latency import cost_table
    from .sampling import CostTable, sample_table

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

    from .data import folder_shape
    from .datadirs import DATASET_SHAPES
    from .genotype import Genotype
    from .recipe import DISTILL_DEFAULTS, TrainConfig

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


def job_threads(config) -> int:
    """The intra-op threads the job runs at: --threads, else the CPUs this process may use (as `train`)."""
    from .runner import available_cpus

    return config.threads or available_cpus()


def compress(teacher: str, data_dir: str, budget: float | str, out: str | os.PathLike, *, config,
             metric: str = "params", method: str = "blockswap", samples: int = 100, latency_table: str | None = None,
             round_to: int | None = None, log=print) -> dict:
    """The whole job (see the module's docstring); `config` is the student's `TrainConfig` (dataset "folder",
    AT on; without --normalize, the teacher's own, `teacher_normalize`). Returns the report, also written to
    OUTDIR/report.json and OUTDIR/model_card.md.

    The teacher is tested before job.json is written: a teacher that cannot be told from chance
    (`check_beats_chance`) is refused with nothing written, not even the job's folder."""
    from .checkpoint import weights_sha256

    started, out = time.perf_counter(), Path(out)
    if round_to is not None and method == "blockswap":
        raise BlockswapError("--round-to rounds pruned channel counts; BlockSwap keeps the teacher's widths")
    inputs = check_inputs(teacher, data_dir, budget, config, metric, method, latency_table)
    given, budget, config = budget, inputs.budget, inputs.config
    job = {"teacher": str(inputs.weights), "teacher_sha256": weights_sha256(inputs.state_dict),
           "data_dir": str(Path(data_dir).resolve()), "budget": budget, "metric": metric, "method": method,
           "budget_given": given if isinstance(given, str) else None, "round_to": round_to,
           "samples": samples if method == "blockswap" else None, "latency_table": latency_table,
           "recipe": {k: v for k, v in config.to_dict().items() if k not in RUN_ONLY},  # threads may change
           "preprocess": inputs.train_set.preprocess.to_dict()}  # the inputs both networks are tested on
    check_job(out, job)
    if (out / "report.json").exists():
        log(f"{out}: the job is finished (report.json, model_card.md); nothing to do")
        return read_json(out / "report.json", "compress report")
    earlier = read_json(out / WALL_TIME, "wall time file")["seconds"] if (out / WALL_TIME).exists() else 0.0
    try:
        return _stages(out, job, inputs, config, data_dir, log, lambda: earlier + time.perf_counter() - started)
    except BaseException:  # interrupted (or failed): this attempt's time counts towards the job's
        if (out / "job.json").exists():  # a job refused before it started leaves nothing behind
            write_json(out / WALL_TIME, {"seconds": earlier + time.perf_counter() - started})
        raise


WALL_TIME = "wall_time.json"  # the seconds of a job's earlier, interrupted attempts


def _stages(out: Path, job: dict, inputs: JobInputs, config, data_dir: str, log, elapsed) -> dict:
    """The job's stages, each skipped (and said so) when an earlier attempt finished it."""
    from .data import first_batches
    from .deploy import export
    from .runner import resolve_threads
    from .train import train

    resolve_threads(config.threads)  # also where training is skipped: the report's latency at the job's threads
    teacher_ckpt = _teacher(out, job, inputs, config, data_dir, log)
    batch = first_batches(inputs.train_set, config.batch_size, config.seed)[0]
    student, init = _architecture(out, job, inputs, teacher_ckpt, config, batch, log)

    # 3. Distillation (resumes from student/model.pt.resume after an interruption).
    student_ckpt = out / "student" / "model.pt"
    config, distillation = distillation_for(config, student, init, teacher_ckpt)
    if student_ckpt.exists():
        log(f"distillation: done already ({student_ckpt}), skipped")
    else:  # train says where it resumes (epoch, step) when an earlier attempt left a resume file
        log(f"distilling the student: {distillation}")
        train(config, student, out_checkpoint=student_ckpt, metrics_path=out / "student" / "metrics.json",
              teacher=str(teacher_ckpt), labels={"method": job["method"], "budget": str(job["budget"])}, init=init)

    # 4. The files a deployment needs, beside the student's checkpoint (`deploy`; skipped when done).
    exported = export(out / "student", inputs.train_set, data_dir, config, log)

    # 5. The report and model card; the report last: its presence marks the job finished.
    log("report: measuring both networks' latency")
    report = _report(out, job, student, inputs.genotype, inputs.device, inputs.table, config.seed)
    report["distillation"] = distillation
    report["export"] = exported
    report["preprocess"] = job["preprocess"]
    report["wall_time_s"] = elapsed()  # all attempts
    report["provenance"] = provenance(job, config.seed, str(inputs.device), report["wall_time_s"])
    write_json(out / WALL_TIME, {"seconds": report["wall_time_s"]})
    write_text(out / "model_card.md", model_card(report))
    write_json(out / "report.json", report)
    return report


def _teacher(out: Path, job: dict, inputs: JobInputs, config, data_dir: str, log) -> Path:
    """1. The teacher tested on DIR/val (the student's test_subset of it), refused at chance before anything is
    written; then the job starts (job.json) and the tested teacher is kept. Returns its checkpoint."""
    from .pretrained import evaluate_weights, write_imported

    teacher_ckpt, genotype = out / "teacher" / "model.pt", inputs.genotype
    if teacher_ckpt.exists():
        log(f"teacher: tested already ({out / 'teacher' / 'metrics.json'}), skipped")
        return teacher_ckpt
    log(f"teacher: {genotype.model} from {inputs.weights}, tested on {data_dir}/val, inputs "
        f"{inputs.train_set.preprocess.describe()}")
    tested = evaluate_weights(inputs.weights, genotype.model, "folder", data_dir=data_dir,
                              test_subset=config.test_subset, subset_seed=config.subset_seed,  # the student's images
                              device=inputs.device, normalize=config.normalize)
    log(f"teacher: test error {tested['metrics']['test_top1_error']:.2f}%")
    check_beats_chance(tested["metrics"], genotype.num_classes, inputs.weights, inputs.train_set.preprocess)
    start_job(out, job)
    write_imported(tested, teacher_ckpt, out / "teacher" / "metrics.json")
    return teacher_ckpt


def _architecture(out: Path, job: dict, inputs: JobInputs, teacher_ckpt: Path, config, batch, log):
    """2. The student's architecture: (genotype, None) of BlockSwap's pick, or (the teacher's genotype, its
    pruned weights) of a pruner."""
    budget, metric, method = job["budget"], job["metric"], job["method"]
    if method == "blockswap":
        return _search(out / "search", inputs.genotype, inputs.costs, budget, job["samples"], config.seed, batch,
                       inputs.device, log, config.progress), None
    from .pruning import prune_to

    init = out / "search" / "pruned.pt"
    if init.exists():
        log(f"pruning: done already ({init}), skipped")
    else:
        log(f"pruning {inputs.genotype.model} to {budget:,.0f} {units(metric)} ({method}"
            + (f", channels multiples of {job['round_to']})" if job["round_to"] else ")"))
        prune_to(teacher_ckpt, budget, method.split("-", 1)[1], batch, init, metric, inputs.table, job["round_to"])
    return inputs.genotype, init


def distillation_for(config, student, init: Path | None, teacher_ckpt: Path):
    """(config, "AT") where the student's attention points pair with the teacher's - the same number, the same
    spatial sizes -, else (config with KD instead, "KD"): AT has nothing to match on such a student."""
    import dataclasses

    from .checkpoint import load_model
    from .models import create_model
    from .train import attention_shapes

    net = load_model(init)[0] if init is not None else create_model(student)
    teacher = load_model(teacher_ckpt)[0]
    if attention_shapes(net, student) == attention_shapes(teacher, student):
        return config, "AT"
    kd = dataclasses.replace(config, at_beta=(), kd_alpha=config.kd_alpha or KD_ALPHA)
    return kd, f"KD (α = {kd.kd_alpha:g}, T = {kd.kd_temperature:g})"


def _report(out: Path, job: dict, student, genotype, device, table: dict | None, seed: int) -> dict:
    """Both networks' counts, errors with their intervals, and latency measured on `device` (`_latency`)."""
    return {"method": job["method"], "metric": job["metric"], "budget": job["budget"],
            "budget_given": job["budget_given"], "round_to": job["round_to"], "seed": seed,
            "student": _summary(read_json(out / "student" / "metrics.json", "student metrics")),
            "teacher": _summary(read_json(out / "teacher" / "metrics.json", "teacher metrics")),
            **_latency(out, job, student, genotype, device, table),
            "student_checkpoint": str(out / "student" / "model.pt")}


def _latency(out: Path, job: dict, student, genotype, device, table: dict | None) -> dict:
    """"latency": each network's `latency.profile` in PyTorch eager (the student also in ONNX Runtime, its
    exported student/model.onnx, on the CPU), at the job's threads; "latency_budget": a latency job's
    predicted against measured latency (PyTorch eager, the table's batch size; at batch 1 the profile's figures),
    and whether the measured median met the budget."""
    import torch

    from .checkpoint import load_model
    from .latency import REPEATS, net_timings_us, onnx_profile, profile, spread

    torch.manual_seed(0)  # the timing input
    net, _ = load_model(out / "student" / "model.pt")
    shape = (genotype.in_channels, genotype.image_size, genotype.image_size)
    runs = {"student": [profile(net, shape, device)], "teacher": [profile(load_model(out / "teacher" / "model.pt")[0],
                                                                          shape, device)]}
    onnx = out / "student" / "model.onnx"
    if onnx.is_file() and device.type == "cpu":
        measured = onnx_profile(onnx, shape, torch.get_num_threads())
        runs["student"] += [measured] if measured else []
    result = {"latency": {"device": str(device), **runs}, "latency_budget": None}
    if table is not None:
        whole = (runs["student"][0]["batch_1"] if table["batch_size"] == 1 else
                 spread(net_timings_us(net, shape, device, table["batch_size"], REPEATS)))
        predicted = budget_cost(student, "latency", table)
        result["latency_budget"] = {
            "budget_us": job["budget"], "predicted_us": round(predicted, 2), "measured_us": whole,
            "batch_size": table["batch_size"], "threads": torch.get_num_threads(), "runtime": "PyTorch eager",
            "error": round(predicted / whole["median"] - 1, 4), "met": whole["median"] <= job["budget"]}
    return result


def _search(folder: Path, genotype, costs, budget: float, samples: int, seed: int, batch, device, log,
            progress: bool):
    """BlockSwap's pick: `samples` candidates in the budget, the best by Fisher potential on `batch`."""
    from .genotype import Genotype, load_records
    from .proxies import get_proxy, rank, score_candidates
    from .sampling import sample_table

    pick = folder / "genotype.json"
    if pick.exists():
        log(f"search: done already ({pick}), skipped")
        return Genotype.from_dict(read_json(pick, "the search's pick"))
    candidates = folder / "candidates.jsonl"
    if candidates.exists():
        log(f"search: the candidates drawn before ({candidates}), scored again")
    else:
        drawn = sample_table(costs, budget, samples, seed)
        write_text(candidates, "".join(json.dumps(g.to_dict()) + "\n" for g in drawn))
    drawn = [Genotype.from_dict(d) for d in load_records(candidates)]
    log(f"search: {len(drawn)} candidates, Fisher potential on one minibatch of {len(batch[1])}")
    scores = score_candidates(drawn, [get_proxy("fisher")], [batch], seed, device=device, progress=progress)
    ranks = rank([s["fisher"] for s in scores], get_proxy("fisher").sign)
    write_json(folder / "fisher.json", [{"id": g.id, "fisher": s["fisher"], "rank": r}
                                         for g, s, r in zip(drawn, scores, ranks)])
    best = drawn[ranks.index(1)]
    write_json(pick, best.to_dict())
    return best


def _summary(metrics: dict) -> dict:
    n, error = metrics["test_examples"], metrics["test_top1_error"]
    return {"params": metrics["params"], "macs": metrics["macs"], "test_top1_error": error,
            "error_interval_95": wilson_interval(round(error * n / 100), n), "test_examples": n,
            "genotype_id": metrics["genotype_id"]}


def model_card(report: dict) -> str:
    s, t = report["student"], report["teacher"]
    row = "| {} | {:,} | {:,} | {:.2f} [{:.2f}, {:.2f}] |"
    lines = [f"# Model card: {report['method']} student, budget {report['budget']:,.0f} {report['metric']}", "",
             "| network | params | MACs | top-1 error % [95% interval] |",
             "|---|---:|---:|---|",
             row.format("teacher", t["params"], t["macs"], t["test_top1_error"], *t["error_interval_95"]),
             row.format("student", s["params"], s["macs"], s["test_top1_error"], *s["error_interval_95"]), "",
             f"Errors on {s['test_examples']} validation images (Wilson interval).",
             *_preprocess_lines(report.get("preprocess")), "",
             *latency_lines(report["latency"], report["latency_budget"]), "",
             f"Load the student with `blockswap.checkpoint.load_model(\"{report['student_checkpoint']}\")`, which "
             "returns (network in eval mode, checkpoint); the network's forward gives (logits, attention maps)."]
    return "\n".join(lines + deployment(report)) + "\n"


def deployment(report: dict) -> list[str]:
    """The card's lines on the student's files for deployment and how faithful its exports are."""
    record = report.get("export")
    if record is None:  # a report written before the exports
        return []
    folder = Path(report["student_checkpoint"]).parent
    checks = "; ".join(f"{record[k]['file']}: largest |logit difference| {record[k]['max_abs_diff']:.2g}, top-1 "
                       f"agreement {100 * record[k]['top1_agreement']:.1f}%" for k in ("onnx", "torchscript"))
    return ["", "## Deployment", "",
            f"`blockswap.load(\"{folder}\")` returns the student as a module in eval mode whose forward gives the "
            f"logits alone. Without blockswap: {folder}/model.onnx (ONNX Runtime, opset {record['onnx_opset']}, "
            f"dynamic batch) or {folder}/model.torchscript.pt (`torch.jit.load`); {folder}/preprocess.json says "
            "how to prepare an image (decoding, resize, mean and std) and names the classes in the order of the "
            f"logits. `blockswap predict {folder} IMAGE…` prints an image's top classes.", "",
            f"Checked against PyTorch on {record['images']} validation images (tolerance {record['tolerance']:g}): "
            f"{checks}."]


def latency_lines(latency: dict, budget: dict | None) -> list[str]:
    """The card's latency table - each network and runtime at batch 1 and at the throughput batch, median and
    interquartile range over the stated repeats, with threads and unit - and a latency job's budget check."""
    def cell(figures: dict | None) -> str:
        if figures is None:
            return "-"
        return f"{figures['median']:,.0f} [{figures['q1']:,.0f}, {figures['q3']:,.0f}] ({figures['repeats']} runs)"

    many = next(k for k in latency["student"][0] if k.startswith("batch_") and k != "batch_1")
    lines = [f"| network | runtime | threads | µs at batch 1 | µs per image at batch {many.split('_')[1]} |",
             "|---|---|---:|---:|---:|"]
    for network in ("teacher", "student"):
        lines += [f"| {network} | {p['runtime']} | {p['threads']} | {cell(p['batch_1'])} | {cell(p[many])} |"
                  for p in latency[network]]
    lines += ["", f"Latency on {latency['device']}: median [25th, 75th percentile] of the timed runs, after "
              "warm-up runs; other work on the machine widens the interval."]
    if budget:
        over = budget["measured_us"]["median"] / budget["budget_us"] - 1
        verdict = "met" if budget["met"] else f"**missed** (measured {over:.1%} over)"
        lines += ["", f"Latency budget {budget['budget_us']:,.0f} µs (batch {budget['batch_size']}, "
                  f"{budget['runtime']}, {budget['threads']} threads): predicted {budget['predicted_us']:,.0f} µs, "
                  f"measured {cell(budget['measured_us'])} µs - prediction error {budget['error']:+.1%}; budget "
                  f"{verdict}."]
    return lines


def _preprocess_lines(preprocess: dict | None) -> list[str]:
    """The card's statement of the inputs both networks were trained and tested on."""
    if not preprocess:
        return []
    from .imagefolder import RESIZE, RESIZE_CROP

    size = preprocess["image_size"]
    sized = {RESIZE_CROP: f"the short side resized to {size * 8 // 7} px, the centre {size}×{size} crop",
             RESIZE: f"resized to {size}×{size}"}.get(preprocess["resize"], f"{size}×{size} as they are")
    return ["", f"Inputs ({preprocess['normalize']}): images {sized}, scaled to [0, 1], then per channel minus mean "
            f"{preprocess['mean']}, divided by std {preprocess['std']}."]


RUNTIMES = {"PyTorch eager": "eager", "ONNX Runtime": "ORT"}  # latency.PYTORCH, latency.ONNXRUNTIME


def comparison(reports: list[dict]) -> list[dict]:
    """One row per (budget, method) of compress reports: params, mean top-1 error and sd over the seeds, the
    student's measured latency (`student_latency`), and the mean difference from the BlockSwap student of the
    same budget and seed with its 95% t-interval (paired by seed: the seed fixes the data order and the search's
    draws), the paired t-test's p and that p Holm-adjusted over every difference of the table. Fewer than three
    pairs, or pairs that all differ by the same amount, give the difference alone (`why` says which) and stay
    out of Holm's family."""
    import statistics

    from .report.stats import holm, t_difference

    groups: dict[tuple, dict[int, dict]] = {}
    for r in reports:
        groups.setdefault((r["budget"], r["method"]), {})[r["seed"]] = r
    rows = []
    for (budget, method), by_seed in sorted(groups.items(), key=lambda kv: (kv[0][0], METHODS.index(kv[0][1]))):
        errors = [by_seed[s]["student"]["test_top1_error"] for s in sorted(by_seed)]
        row = {"budget": budget, "budget_given": next(iter(by_seed.values())).get("budget_given"),
               "method": method, "seeds": sorted(by_seed), "errors": errors,
               "params": sorted({r["student"]["params"] for r in by_seed.values()}),
               "mean": statistics.mean(errors), "sd": statistics.stdev(errors) if len(errors) > 1 else None,
               "latency": student_latency([by_seed[s] for s in sorted(by_seed)]), "vs_blockswap": None}
        base = groups.get((budget, "blockswap"), {})
        seeds = [s for s in sorted(by_seed) if s in base]
        if method != "blockswap" and seeds:
            test = t_difference([by_seed[s]["student"]["test_top1_error"] for s in seeds],
                                [base[s]["student"]["test_top1_error"] for s in seeds], paired=True)
            row["vs_blockswap"] = {"mean": test["estimate"], "low": test["ci_lo"], "high": test["ci_hi"],
                                   "n": len(seeds), "p": test["p"], "why": test["why"]}
        rows.append(row)
    compared = [r["vs_blockswap"] for r in rows if r["vs_blockswap"]]
    for d, adjusted in zip(compared, holm([d["p"] for d in compared])):
        d["p_holm"] = adjusted
    return rows


def student_latency(reports: list[dict]) -> dict[str, dict]:
    """{"eager batch_1": {"mean", "sd", "n"}, ...}: the students' measured medians (µs; per image at the
    throughput batch) per runtime and batch, their mean and sd over the seeds (each seed's student is its own
    net: the sd is the architectures' spread as much as the timing's)."""
    import statistics

    medians: dict[str, list[float]] = {}
    for report in reports:
        for profile in report.get("latency", {}).get("student", []):
            for key, figures in profile.items():
                if key.startswith("batch_") and figures:
                    medians.setdefault(f"{RUNTIMES[profile['runtime']]} {key}", []).append(figures["median"])
    return {key: {"mean": statistics.mean(v), "sd": statistics.stdev(v) if len(v) > 1 else None, "n": len(v)}
            for key, v in medians.items()}


def latency_conditions(report: dict) -> str:
    """Where and how a report's latency was measured, for a table's caption."""
    eager = report.get("latency", {}).get("student", [{}])[0]
    return (f"{report['latency']['device']}, {eager.get('threads')} thread(s)" if eager else "")


def comparison_markdown(rows: list[dict], teacher: dict, conditions: str = "") -> str:
    family = sum(1 for r in rows if r["vs_blockswap"] and not math.isnan(r["vs_blockswap"]["p"]))
    keys = sorted({k for r in rows for k in r["latency"]},  # batch 1 first, eager before ORT
                  key=lambda k: (k.split()[1] != "batch_1", k.split()[0] != "eager"))
    latency_header = "".join(f" µs {k.split()[0]} {_batch_words(k.split()[1])} |" for k in keys)
    lines = [f"Teacher: {teacher['params']:,} params, top-1 error {teacher['test_top1_error']:.2f}%.", "",
             "| budget | method | params | error % mean ± sd | per seed | − BlockSwap (paired, 95% t) | "
             f"p (Holm over {family}) | verdict (Holm, α = {ALPHA:g}) |" + latency_header,
             "|---:|---|---:|---|---|---|---|---|" + "---:|" * len(keys)]
    for r in rows:
        params = f"{r['params'][0]:,}" + (f"–{r['params'][-1]:,}" if len(r["params"]) > 1 else "")
        spread = f"{r['mean']:.2f} ± {r['sd']:.2f}" if r["sd"] is not None else f"{r['mean']:.2f}"
        d, verdict, diff, p = r["vs_blockswap"], "", "", ""
        if d and d["why"]:
            diff, verdict = f"{d['mean']:+.2f}", f"no verdict: {d['why']}"
        elif d:
            diff = f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"
            p = f"{d['p']:.3f} ({d['p_holm']:.3f})"
            verdict = ("no difference shown" if d["p_holm"] >= ALPHA else
                       "BlockSwap better" if d["mean"] > 0 else "pruning better")
        budget = f"{r['budget']:,.0f}" if not r.get("budget_given") else f"{r['budget_given']} = {r['budget']:,.0f}"
        latency = "".join(f" {_mean_sd(r['latency'].get(k))} |" for k in keys)
        lines.append(f"| {budget} | {r['method']} | {params} | {spread} | "
                     f"{' / '.join(f'{e:.2f}' for e in r['errors'])} | {diff} | {p} | {verdict} |" + latency)
    if keys:
        lines += ["", "Latency: each seed's student timed by its job (the median of its timed runs; per image at "
                  "the throughput batch), then the mean ± sd over the seeds"
                  + (f", on {conditions}" if conditions else "") + ". ORT: ONNX Runtime on the exported model."]
    return "\n".join(lines) + "\n"


def _batch_words(key: str) -> str:
    batch = key.split("_")[1]
    return "batch 1" if batch == "1" else f"per image, batch {batch}"


def _mean_sd(figures: dict | None) -> str:
    if figures is None:
        return "-"
    return f"{figures['mean']:,.0f}" + (f" ± {figures['sd']:,.0f}" if figures["sd"] is not None else "")


def comparison_figure(rows: list[dict], teacher: dict, teacher_latency: dict | None = None):
    """Error against params and against measured latency (batch 1 and the throughput batch), one line per
    method (mean over seeds; bars: ± sd of the error), PyTorch eager filled, ONNX Runtime hollow; the teacher as
    a star (its eager latency from `teacher_latency`, the report's "latency"["teacher"] profile)."""
    from .report.figures import log_axis, new_figure

    keys = [k for k in ("batch_1", next((k.split()[1] for r in rows for k in r["latency"]
                                          if k.split()[1] != "batch_1"), None)) if k]
    fig, axes = new_figure(1 + (len(keys) if any(r["latency"] for r in rows) else 0))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    for i, method in enumerate(methods):
        mine, marker, colour = [r for r in rows if r["method"] == method], "osd"[i % 3], f"C{i}"
        errors, bars = [r["mean"] for r in mine], [r["sd"] or 0 for r in mine]
        axes[0].errorbar([sum(r["params"]) / len(r["params"]) for r in mine], errors, yerr=bars, marker=marker,
                         color=colour, capsize=3, label=method)
        for ax, key in zip(axes[1:], keys):
            for runtime, fill in (("eager", colour), ("ORT", "none")):
                points = [(r["latency"][f"{runtime} {key}"]["mean"], e, b) for r, e, b in zip(mine, errors, bars)
                          if f"{runtime} {key}" in r["latency"]]
                if points:
                    x, y, yerr = zip(*points)
                    ax.errorbar(x, y, yerr=yerr, marker=marker, color=colour, markerfacecolor=fill, capsize=3,
                                linestyle="-" if runtime == "eager" else "--", label=f"{method} ({runtime})")
    axes[0].scatter([teacher["params"]], [teacher["test_top1_error"]], marker="*", s=120, color="black",
                    label="teacher")
    log_axis(axes[0])
    axes[0].set_xlabel("params")
    for ax, key in zip(axes[1:], keys):
        if teacher_latency and teacher_latency.get(key):
            ax.scatter([teacher_latency[key]["median"]], [teacher["test_top1_error"]], marker="*", s=120,
                       color="black", label="teacher (eager)")
        ax.set_xlabel(f"µs, {_batch_words(key)} (measured median)")
    for ax in axes:
        ax.set_ylabel("top-1 error (%)")
        ax.legend(fontsize="small")
    axes[0].set_title("Compressed students: mean over seeds ± sd")
    return fig
