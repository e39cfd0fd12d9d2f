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

import dataclasses
import json
import os
import time
from pathlib import Path

from ..core.counting import units
from ..core.errors import BlockswapError
from ..core.files import provenance, read_json, write_json, write_text
from ..core.genotype import Genotype, load_records
from ..core.recipe import RUN_ONLY
from ..core.sampling import sample_table
from .card import model_card
from .job import JobInputs, budget_cost, check_inputs, check_job, start_job
from .teacher import check_beats_chance, wilson_interval

KD_ALPHA = 0.9  # KD's mix when the student has no attention points to pair: (1-α)·CE + α·KD (Hinton et al.)


def compress(teacher: str, data_dir: str, budget: float | str, out: str | os.PathLike, *, config,
             metric: str = "params", method: str = "blockswap", samples: int = 100, latency_table: str | None = None,
             round_to: int | None = None, log=print) -> dict:
    """The whole job (see the module's docstring); `config` is the student's `TrainConfig` (dataset "folder",
    AT on; without --normalize, the teacher's own, `teacher_normalize`). Returns the report, also written to
    OUTDIR/report.json and OUTDIR/model_card.md.

    The teacher is tested before job.json is written: a teacher that cannot be told from chance
    (`check_beats_chance`) is refused with nothing written, not even the job's folder."""
    from ..training.checkpoint import weights_sha256

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
    from ..data.datasets import first_batches
    from ..training.runner import resolve_threads
    from ..training.train import train
    from .deploy import export

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
    from ..training.pretrained import evaluate_weights, write_imported

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
    from ..nn.models import create_model
    from ..training.checkpoint import load_model
    from ..training.train import attention_shapes

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

    from ..nn.latency import REPEATS, net_timings_us, onnx_profile, profile, spread
    from ..training.checkpoint import load_model

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
    from ..search.proxies import get_proxy, rank, score_candidates

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
