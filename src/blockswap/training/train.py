"""The run loop for teachers and students: SGD, attention transfer (AT), knowledge distillation (KD).

The settings are `recipe.TrainConfig`, the objective `losses.Objective`, one step and one epoch
`engine.train_one_epoch`. A teacher is run only when AT or KD is on, in eval mode and without gradients.

Learning rate: a pure function of (epoch, step), `recipe.learning_rate`, written into the optimiser before
every step. lr_unit="epoch" (default) holds it constant through an epoch, as the reference BlockSwap/Moonshine
code does (its schedulers step once per epoch); "iteration" moves it every step. Cosine goes from `lr`
towards 0 at the end of the last epoch; "step" multiplies by `gamma` at each milestone epoch.
Weight decay is applied to all parameters (BN included), as in the reference code. With `crs_wd` (CRS-wd,
Gray et al. 2019) the tensors that structured substitutions declare compressed (`structured.compressed_parameters`)
form their own parameter group, whose weight decay is scaled by the genotype's compression ratio
(`counting.compression_ratio`); the groups are recorded in the metrics.

Reproducibility and resuming. The resume file (`checkpoint.ResumeFile`) is rewritten atomically after every
epoch, and also mid-epoch when SIGTERM/SIGUSR1 asks the job to stop (SLURM preemption or time limit): the
step in flight is finished, the file written, and `Preempted` raised (the CLI exits 128+signal). A mid-epoch
resume starts the epoch's batches at the saved step (`iterate_batches(start=)`: the images of the finished
steps are not read or decoded, only their random draws made), so a run stopped any number of times (SIGKILL
included: it restarts from the last epoch end) ends with bitwise the same weights and metrics (timings aside)
as an uninterrupted one on the CPU with the same thread count.
Outputs appear only once training is complete; the resume file is then deleted.

Data-parallel (`torchrun --nproc-per-node N -m blockswap train …`, see `distributed`): `batch_size` and `lr`
stay those of the recipe - the global batch, of which each process trains a slice of batch_size / N - so the
metrics and the lr schedule do not depend on N. Without SyncBN (`sync_bn`, CUDA only) BatchNorm normalises
each slice by its own statistics and the checkpoint holds rank 0's running statistics; with it, the
statistics of the global batch. Only rank 0 writes the checkpoint, the metrics and the resume file, and
prints; every rank resumes from that one file; the test counts are summed over the ranks, so every rank
gets the same result. A stop signal stops all ranks at the same step.

GPU speed-ups (`amp` = bf16 or fp16 mixed precision, `channels_last`; CUDA only, refused on the CPU, off by
default and then absent from the recorded settings): see `engine.Precision`. Testing stays float32; an fp16
run's loss scale is kept in the resume file; the checkpoint's weights are float32 and contiguous, as always.

Metrics (JSON and the checkpoint's "metrics"; errors in %): labels, genotype_id, genotype, params, ops, macs,
dataset, train_examples, test_examples, teacher (checkpoint, genotype_id, model, params, its
test_top1_error; null without one), objective (at_beta per point, kd_alpha, kd_temperature),
weight_decay_groups (per optimizer group: name, tensors, params, weight_decay), crs_ratio (null without
CRS-wd), epochs (per epoch: epoch, lr = the schedule's value at its start, train_loss = the objective,
train_ce, train_at = Σ_i AT_i unweighted, train_kd, train_top1_error on the augmented batches in train mode, test_loss,
test_top1_error, test_top5_error - null on untested epochs - and seconds), the final test_top1_error,
test_top5_error, test_loss, train_top1_error, wall_time_s (all attempts) and provenance (+ threads,
resumes).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..core.counting import analytic, compression_ratio
from ..core.errors import BlockswapError
from ..core.files import check_distinct_files, provenance
from ..core.genotype import Genotype
from ..core.recipe import TrainConfig, learning_rate, scheduled_lr
from ..data.datasets import check_fits, default_augment, iterate_batches, load_dataset
from ..data.distributed import World, check_batch, is_main, joined
from ..nn.measure import measured
from ..nn.models import Network, create_model
from ..nn.structured import compressed_parameters
from .checkpoint import Progress, ResumeFile, Tally, load_model, weights_sha256
from .engine import Precision, evaluate, resolve_device, train_one_epoch
from .losses import Objective
from .runner import Preempted, Run, StepClock, resolve_threads, resume_path_for, seed_all  # noqa: F401 - Preempted re-exported


def _log(message: str) -> None:
    if is_main():
        tqdm.write(message, file=sys.stderr)


@dataclass(frozen=True)
class Teacher:
    net: Network
    info: dict  # checkpoint, genotype_id, model, params, test_top1_error: copied into the student's metrics
    sha256: str  # of its weights: a resume refuses a teacher retrained under the same path


def load_teacher(path, config: TrainConfig, train_set, device, expect: Genotype | None = None) -> Teacher | None:
    """The teacher a run learns from (None when neither AT nor KD is on), checked against the run."""
    if not config.uses_teacher:
        if path is not None:
            raise BlockswapError("a teacher was given but neither AT (at_beta > 0) nor KD (kd_alpha > 0) is on")
        return None
    if path is None:
        raise BlockswapError("AT (at_beta) or KD (kd_alpha) is on but no teacher checkpoint was given")
    net, ckpt = load_model(path, expect=expect, device=device)
    g = Genotype.from_dict(ckpt["genotype"])
    check_fits(g, train_set, what=f"teacher {path}: genotype")
    if ckpt["config"].get("dataset") != config.dataset:
        raise BlockswapError(f"teacher {path} was trained on {ckpt['config'].get('dataset')}, "
                             f"this run trains on {config.dataset}")
    check_same_preprocess(ckpt["metrics"].get("preprocess"), train_set.preprocess, f"teacher {path}")
    net.eval().requires_grad_(False)
    info = {"checkpoint": str(path), "genotype_id": g.id, "model": g.model, "params": analytic(g).params,
            "test_top1_error": ckpt["metrics"].get("test_top1_error")}
    return Teacher(net, info, weights_sha256(ckpt["state_dict"]))


def check_same_preprocess(recorded: dict | None, now, what: str) -> None:
    """A teacher sees the student's inputs, so it must have been tested with the same mean and std (`recorded`,
    its metrics' "preprocess"; checkpoints from before it was recorded are not checked)."""
    if recorded and (tuple(recorded["mean"]), tuple(recorded["std"])) != (now.mean, now.std):
        from ..data.imagefolder import normalize_spec

        raise BlockswapError(f"{what} was tested with inputs normalised by mean {recorded['mean']}, std "
                             f"{recorded['std']}, this run by {list(now.mean)}, {list(now.std)}; give --normalize "
                             f"{normalize_spec(recorded['mean'], recorded['std'])} (or the teacher's own --normalize)")


def _pruned_init(path, genotype: Genotype) -> tuple[Network, dict]:
    """A pruned network (`pruning.prune_to`) and its checkpoint, checked to be of `genotype`'s layers."""
    net, ckpt = load_model(path)
    if not ckpt.get("pruned") or Genotype.from_dict(ckpt["genotype"]) != genotype:
        raise BlockswapError(f"{path} is not a pruned {genotype.model} {genotype.id}; write one with "
                             "`blockswap compress --method prune-magnitude`")
    return net.train(), ckpt  # to be trained, as a fresh net is


def attention_shapes(net: Network, genotype: Genotype, device="cpu") -> list[tuple[int, int]]:
    """The spatial sizes of `net`'s attention points on a `genotype`-shaped input (AT pairs them one to one)."""
    x = torch.zeros(1, genotype.in_channels, genotype.image_size, genotype.image_size, device=device)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        shapes = [tuple(p.shape[-2:]) for p in net(x)[1]]
    net.train(was_training)
    return shapes


def _check_points(model: Network, teacher: Network, genotype: Genotype, device) -> None:
    """AT pairs attention points one to one: same number, same spatial sizes."""
    s, t = attention_shapes(model, genotype, device), attention_shapes(teacher, genotype, device)
    if s != t:
        raise BlockswapError(f"attention transfer needs matching attention points, but the student has "
                             f"{s} and the teacher {t}")


def _points(genotype: Genotype) -> int:
    """Number of attention points: one per group of blocks."""
    return len({s.group for s in genotype.architecture.slots(genotype.image_size)})


def _epoch_record(config: TrainConfig, epoch: int, steps: int, tally: Tally, test: dict | None,
                  seconds: float) -> dict:
    if test and not math.isfinite(test["loss"]):
        raise BlockswapError(f"the test loss became {test['loss']} after epoch {epoch + 1} (lr "
                             f"{scheduled_lr(config, epoch):g}): the run diverged; lower --lr, "
                             "or check the data")
    return {"epoch": epoch + 1, "lr": scheduled_lr(config, epoch),
            **{f"train_{k}": v / tally.n for k, v in tally.sums.items()},
            "train_top1_error": 100.0 * tally.wrong / tally.n,
            "test_loss": test and test["loss"], "test_top1_error": test and test["top1_error"],
            "test_top5_error": test and test["top5_error"], "seconds": seconds}


def _datasets(config: TrainConfig, genotype: Genotype | str, block: str, device: torch.device):
    """(train set, test set, the genotype - built for the data from a model name -, train augmentation)."""
    train_set = load_dataset(config.dataset, config.data_dir, "train", config.subset, config.subset_seed,
                             config.normalize)
    test_set = load_dataset(config.dataset, config.data_dir, "test", config.test_subset, config.subset_seed,
                            config.normalize)
    if isinstance(genotype, str):
        genotype = Genotype.uniform(genotype, block, in_channels=train_set.in_channels,
                                    num_classes=train_set.num_classes, image_size=train_set.image_size)
    check_fits(genotype, train_set)
    if len(train_set) < config.batch_size:
        raise BlockswapError(f"{len(train_set)} training examples are fewer than batch size {config.batch_size}")
    if device.type == "cuda":  # in-memory sets live on the GPU: no copies (folders stay on disk)
        train_set, test_set = train_set.to(device), test_set.to(device)
    augment = default_augment(train_set, True, **({} if config.cutout is None else {"cutout": config.cutout}))
    return train_set, test_set, genotype, augment


def weight_decay_groups(model: Network, genotype: Genotype, config: TrainConfig) -> list[dict]:
    """SGD's parameter groups: one for everything, or with CRS-wd the compressed tensors (weight decay × the
    compression ratio) and the rest (plain weight decay). Each has a name; empty groups are left out."""
    if not config.crs_wd:
        return [{"name": "all", "params": list(model.parameters()), "weight_decay": config.weight_decay}]
    compressed = compressed_parameters(model)
    chosen = {id(p) for p in compressed}
    groups = [{"name": "compressed", "params": compressed,
               "weight_decay": config.weight_decay * compression_ratio(genotype)},
              {"name": "other", "params": [p for p in model.parameters() if id(p) not in chosen],
               "weight_decay": config.weight_decay}]
    return [g for g in groups if g["params"]]


def describe_groups(groups: list[dict]) -> list[dict]:
    """The optimizer groups as the metrics record them: name, tensor and parameter counts, weight decay."""
    return [{"name": g["name"], "tensors": len(g["params"]), "params": sum(p.numel() for p in g["params"]),
             "weight_decay": g["weight_decay"]} for g in groups]


@dataclass
class _Run(Run):
    """What a run works with once it is set up; `runner.Run` drives its epochs."""
    config: TrainConfig
    model: Network
    optimizer: torch.optim.Optimizer
    objective: Objective
    tutor: Teacher | None
    train_set: object
    test_set: object
    augment: object
    device: torch.device
    resume: ResumeFile
    progress: Progress
    started: float  # perf_counter at the start of this attempt
    world: World
    trainer: torch.nn.Module  # `model` as trained: itself, or wrapped in DistributedDataParallel
    precision: Precision

    @property
    def steps(self) -> int:
        return len(self.train_set) // self.config.batch_size

    @property
    def resume_path(self) -> Path:
        return self.resume.path

    def train_steps(self, stop: StepClock) -> int:
        config, progress, steps, world = self.config, self.progress, self.steps, self.world
        epoch = progress.epoch
        batches = iterate_batches(self.train_set, config.batch_size, train=True, seed=config.seed, epoch=epoch,
                                  device=self.device, augment=self.augment, shard=(world.rank, world.size),
                                  start=progress.step)  # mid-epoch resume: the finished steps are skipped
        bar = self.bar(steps)
        progress.step = train_one_epoch(
            self.trainer, self.optimizer, self.objective, batches, lambda s: learning_rate(config, epoch, s, steps),
            progress.tally, epoch=epoch, step=progress.step, teacher=self.tutor and self.tutor.net, stop=stop.agreed,
            bar=bar, world=world, precision=self.precision)
        bar.close()
        return steps

    def test(self) -> dict:
        return evaluate(self.model, self.test_set, self.config.eval_batch_size, self.device, self.world)

    def test_steps(self) -> float:
        """A forward pass, a third of a step's forward and backward, per batch of test images."""
        return len(self.test_set) / self.config.batch_size / 3

    def record(self, epoch: int, steps: int, test: dict | None, seconds: float) -> dict:
        return _epoch_record(self.config, epoch, steps, self.progress.tally, test, seconds)

    def save_resume(self, mid_epoch: bool) -> None:
        if self.world.main:
            self.resume.save(self.model, self.optimizer, self.progress, self.elapsed(), mid_epoch, self.device,
                             self.precision.scaler)

    def log_epoch(self, record: dict) -> None:
        tested = (f"test error {record['test_top1_error']:.2f}% (top-5 {record['test_top5_error']:.2f}%)"
                  if record["test_loss"] is not None else "not tested")
        _log(f"epoch {record['epoch']}/{self.config.epochs}: lr {record['lr']:.4g} loss {record['train_loss']:.4f} "
             f"train error {record['train_top1_error']:.2f}% {tested} [{record['seconds']:.1f}s]")

    def metrics(self, labels: dict, betas: list, threads: int) -> dict:
        config, genotype, final = self.config, self.resume.genotype, self.progress.history[-1]
        wall = self.elapsed()
        prov = provenance(config.to_dict(), config.seed, str(self.device), wall, self.world.size)
        prov.update(threads=threads, resumes=self.progress.resumes)
        return {
            "labels": dict(labels), "genotype_id": genotype.id, "genotype": genotype.to_dict(),
            **analytic(genotype).to_dict(),
            "dataset": config.dataset, "train_examples": len(self.train_set), "test_examples": len(self.test_set),
            "preprocess": self.train_set.preprocess.to_dict(),
            "teacher": self.tutor and self.tutor.info,
            "objective": {"at_beta": betas, "kd_alpha": config.kd_alpha,
                          "kd_temperature": config.kd_temperature if config.kd_alpha else None},
            "weight_decay_groups": describe_groups(self.optimizer.param_groups),
            "crs_ratio": compression_ratio(genotype) if config.crs_wd else None,
            "epochs": self.progress.history,
            **{k: final[k] for k in ("test_top1_error", "test_top5_error", "test_loss", "train_top1_error")},
            "wall_time_s": wall, "provenance": prov,
        }


def train(config: TrainConfig, genotype: Genotype | str, *, out_checkpoint: str | os.PathLike,
          metrics_path: str | os.PathLike | None = None, resume_path: str | os.PathLike | None = None,
          teacher: str | os.PathLike | None = None, teacher_genotype: Genotype | None = None,
          block: str = "Conv", labels: dict[str, str] | None = None, init: str | os.PathLike | None = None) -> dict:
    """Train `genotype` (or, given a model name, that model with every block `block`, shaped for the dataset).

    `teacher`: a final checkpoint, needed when config has AT or KD (checked against `teacher_genotype`
    if given). Resumes from `resume_path` (default `<out_checkpoint>.resume`) if it exists. Writes the
    final checkpoint and `metrics_path` atomically and returns the metrics; `labels` (e.g. method=teacher,
    for the report) are copied into them. `init`: a pruned checkpoint of `genotype` (`pruning.prune_to`) whose
    channel counts and weights the run starts from, instead of a fresh initialisation.
    """
    started = time.perf_counter()
    device = resolve_device(config.device)
    processes = check_batch(config.batch_size)
    if config.sync_bn and processes > 1 and device.type != "cuda":
        raise BlockswapError("sync_bn needs CUDA: torch's SyncBatchNorm does not run on the CPU; leave it off there")
    with joined(device) as (world, device):
        return _train(config, genotype, world, device, started, out_checkpoint, metrics_path, resume_path, teacher,
                      teacher_genotype, block, labels, init)


def _train(config: TrainConfig, genotype: Genotype | str, world: World, device: torch.device, started: float,
           out_checkpoint, metrics_path, resume_path, teacher, teacher_genotype, block, labels, init) -> dict:
    precision = Precision.for_run(config, device)  # refuses amp and channels_last on the CPU
    threads = resolve_threads(config.threads, world)  # the processes on one machine share its CPUs
    out_checkpoint = Path(out_checkpoint)
    resume_path = resume_path_for(out_checkpoint, resume_path)
    check_distinct_files({"checkpoint": out_checkpoint, "metrics": metrics_path, "resume": resume_path,
                          "teacher": teacher, "init": init})
    train_set, test_set, genotype, augment = _datasets(config, genotype, block, device)
    tutor = load_teacher(teacher, config, train_set, device, expect=teacher_genotype)
    if tutor is not None:
        precision.layout(tutor.net)

    seed_all(config.seed)
    # A pruned net: the genotype's layers at the init checkpoint's widths, from its weights.
    model, pruned = _pruned_init(init, genotype) if init is not None else (create_model(genotype), None)
    model = precision.layout(model.to(device))
    objective = Objective.from_config(config)
    betas = list(objective.betas(_points(genotype))) if objective.at_beta else []  # checks the count early
    if tutor is not None and betas:
        _check_points(model, tutor.net, genotype, device)
    optimizer = torch.optim.SGD(weight_decay_groups(model, genotype, config), lr=config.lr,
                                momentum=config.momentum)
    resume = ResumeFile(resume_path, genotype, config, tutor and tutor.info["genotype_id"], tutor and tutor.sha256,
                        pruned and weights_sha256(pruned["state_dict"]))
    progress = (resume.load(model, optimizer, precision.scaler) if resume_path.exists()  # every rank: the same file
                else Progress())
    run = _Run(config, model, optimizer, objective, tutor, train_set, test_set, augment, device, resume, progress,
               started, world, world.wrap(model, config.sync_bn), precision)
    if run.progress.resumes:
        _log(f"resuming from {resume_path}: epoch {run.progress.epoch + 1}, step {run.progress.step} of {run.steps}")
    params = sum(p.numel() for p in model.parameters()) if pruned else analytic(genotype).params
    _log(f"training {genotype.model} {genotype.id}{' pruned' if pruned else ''} ({params:,} params) on "
         f"{len(train_set)} {config.dataset} examples, {config.epochs} epochs of {run.steps} steps, {device}, "
         f"{threads} threads"
         + (f", {world.size} processes of {config.batch_size // world.size} examples a step" if world.size > 1 else "")
         + (f", teacher {tutor.info['model']} {tutor.info['genotype_id']}" if tutor else "")
         + (f", {config.amp} autocast" if config.amp != "off" else "")
         + (", channels-last" if config.channels_last else ""))
    run.run()

    metrics = run.metrics(labels or {}, betas, threads)
    if pruned is not None:  # the genotype's analytic counts are the unpruned net's
        metrics.update(measured(model, genotype).to_dict(), pruned=pruned["pruned"])
    # Contiguous: a channels-last run's checkpoint is laid out as any other.
    run.finish(lambda: {"genotype": genotype.to_dict(), "config": config.to_dict(),
                        **({} if pruned is None else {"pruned": pruned["pruned"]}),
                        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                        "metrics": metrics, "provenance": metrics["provenance"]}, out_checkpoint, metrics, metrics_path)
    return metrics
