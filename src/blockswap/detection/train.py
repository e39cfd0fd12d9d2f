"""The detection run: train a detector epoch by epoch with exact resume, then write its checkpoint and metrics.

The resume file (default `<checkpoint>.resume`) is one flat dict rewritten atomically after every epoch,
and mid-epoch when SIGTERM/SIGUSR1 asks the job to stop (SLURM preemption or time limit; the step in flight
is finished first, then `runner.Preempted` is raised and the command exits 128 + signal): model, optimizer,
scheduler (the position the lr function is evaluated at), epoch and step, RNG states, the epochs' records,
the unfinished epoch's loss sums, and the run's identity - genotype, detector settings, training settings
(`recipe.RUN_ONLY` aside) and the sha256 of the classification weights it started from, if any. A resume
refuses a file whose identity differs. A stopped run (SIGKILL included: it restarts from its last finished
epoch) ends with bitwise the weights of an uninterrupted run on the same device and thread count: the
batch order depends only on (seed, epoch), a resumed epoch skips the batches it trained on without reading
them, and every random draw (the RPN's sampling, the dataset's flips) comes from the restored generators
or from (seed, epoch, index). The final checkpoint and the metrics appear only once training is complete;
the resume file is then deleted.

Metrics (JSON, and the checkpoint's "metrics"): labels, genotype_id, genotype, detector (its settings),
settings (training), backbone_params (the body without its classifier), detector_params, train_images,
val_images, epochs (per epoch: epoch, lr of its last step, train_loss = the sum of the losses and
train_<name> per loss, bbox_AP / segm_AP when evaluated, seconds), bbox and segm (the final COCO AP dicts,
0–1 scale), detections, wall_time_s and provenance (+ threads, resumes, init).

A detection dataset (`coco.CocoDetection` is one) is a torch Dataset of (image, target) that also has
`category_ids` (the COCO category id of each contiguous label 1..K, or None where the set names none; COCO
AP needs them) and `set_epoch(epoch)` (its augmentation draws from (seed, epoch, index); a no-op where it
has none).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from ..core.errors import BlockswapError
from ..core.files import check_distinct_files, provenance, write_json
from ..core.genotype import Genotype
from ..core.recipe import RUN_ONLY, differences, learning_rate, scheduled_lr
from ..data.distributed import World, check_batch, joined
from ..training.checkpoint import Progress, Tally, describe, read, rng_state, save, set_rng_state
from ..training.engine import resolve_device
from ..training.runner import Run, StepClock, resolve_threads, resume_path_for, seed_all, stop_requests
from .backbone import init_weights_sha256
from .build import build_detector
from .detectors import DetectorConfig
from .engine import batch_order, evaluate, load_batches, train_one_epoch
from .settings import DetectTrainConfig

RESUME_FORMAT = "blockswap-detect-resume-2"
CHECKPOINT_KEYS = ("genotype", "detector", "config", "category_ids", "state_dict", "metrics", "provenance")
# Looked up when a run starts, so that a test can stand in for the signals.
_stop_requests = stop_requests


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def check_identity(path, saved: dict, genotype: Genotype | None, detector: DetectorConfig,
                   config: DetectTrainConfig | None = None, init_sha256: str | None = None, fix: str = "") -> None:
    """Refuse a checkpoint `saved` of another genotype (if given), detector or (if given) training
    settings and initialisation."""
    was = Genotype.from_dict(saved["genotype"], source=f"{path} (genotype)")
    if genotype is not None and was != genotype:
        raise BlockswapError(f"{path} holds {describe(was)}, but this run has {describe(genotype)}{fix}")
    pairs = [("detector", saved["detector"], detector.to_dict(), ())]
    if config is not None:
        pairs.append(("training", saved["config"], config.to_dict(), RUN_ONLY))
    for what, there, now, free in pairs:
        diffs = differences(there, now, keys=[k for k in now if k not in free])
        if diffs:
            raise BlockswapError(f"{path} was written with other {what} settings ({'; '.join(diffs)}){fix}")
    if config is not None and saved.get("init_sha256") != init_sha256:
        raise BlockswapError(f"{path} started from other initial weights (sha256 {str(saved.get('init_sha256'))[:12]} "
                             f"there, {str(init_sha256)[:12]} now){fix}")


def read_checkpoint(path) -> dict:
    """A final detection checkpoint: {genotype, detector, config, category_ids, state_dict, metrics, provenance}."""
    return read(path, "detection checkpoint", CHECKPOINT_KEYS)


def load_detector(path, device=None):
    """(detector with the final checkpoint's weights, the checkpoint)."""
    ckpt = read_checkpoint(path)
    genotype = Genotype.from_dict(ckpt["genotype"], source=f"{path} (genotype)")
    model = build_detector(genotype, DetectorConfig.from_dict(ckpt["detector"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise BlockswapError(f"{path}: its weights do not fit its detector ({str(e).splitlines()[0]})") from None
    return (model.to(device) if device is not None else model), ckpt


def _record(epoch: int, lr: float, losses: dict, ap: dict | None, seconds: float) -> dict:
    return {"epoch": epoch + 1, "lr": lr, **{f"train_{k}": v for k, v in losses.items()},
            **{f"{kind}_AP": ap[kind]["AP"] for kind in ("bbox", "segm") if ap and kind in ap}, "seconds": seconds}


def _log_epoch(record: dict, epochs: int) -> None:
    losses = " ".join(f"{k[6:]} {v:.4f}" for k, v in record.items() if k.startswith("train_") and k != "train_loss")
    ap = " ".join(f"{k} {record[k]:.4f}" for k in ("bbox_AP", "segm_AP") if k in record) or "not evaluated"
    _log(f"epoch {record['epoch']}/{epochs}: lr {record['lr']:.4g} loss {record['train_loss']:.4f} ({losses}) "
         f"{ap} [{record['seconds']:.1f}s]")


def check_processes(detector: DetectorConfig, config: DetectTrainConfig) -> torch.device:
    """The device of a run, once its settings are known to suit the processes torchrun starts (checked
    before any data is read)."""
    device = resolve_device(config.device)
    processes = check_batch(config.batch_size)
    if detector.norm == "syncbn" and processes > 1 and device.type != "cuda":
        raise BlockswapError("--norm syncbn needs CUDA with several processes (torch's SyncBatchNorm does not run "
                             "on the CPU); use bn, gn or frozen_bn there")
    return device


def train(genotype: Genotype, detector: DetectorConfig, config: DetectTrainConfig, train_set, val_set=None, *,
          out_checkpoint: str | os.PathLike, metrics_path: str | os.PathLike | None = None,
          resume_path: str | os.PathLike | None = None, init: str | os.PathLike | None = None,
          labels: dict | None = None, batches=batch_order) -> dict:
    """Train the detector of `genotype` on `train_set` ((image, target) items), evaluating on `val_set`
    (a COCO dataset; None: no evaluation). `init`: a classification checkpoint of the same genotype for the
    body. `batches(train_set, batch_size, seed=, epoch=)` lists an epoch's batches of indices. Resumes from
    `resume_path` (default `<out_checkpoint>.resume`) if it exists; returns the metrics. SIGTERM/SIGUSR1
    end the step in flight, write the resume file and raise `Preempted`.

    Under `torchrun --nproc-per-node N` the run is data-parallel (`blockswap.data.distributed`): every process
    trains its contiguous part of each global batch (`batch_size` images; a batch of fewer than N images,
    an aspect-ratio bin's last, is skipped), evaluates its part of `val_set`, and only rank 0 writes; the
    resume file keeps every process's random state."""
    started = time.perf_counter()
    device = check_processes(detector, config)
    with joined(device) as (world, device):
        return _train(genotype, detector, config, train_set, val_set, world, device, started, Path(out_checkpoint),
                      metrics_path, resume_path, init, labels, batches)


@dataclass
class _DetectionRun(Run):
    """A detection run once it is set up; `runner.Run` drives its epochs."""
    genotype: Genotype
    detector: DetectorConfig
    config: DetectTrainConfig
    model: torch.nn.Module
    trained: torch.nn.Module  # `model` as trained: itself, or wrapped in DistributedDataParallel
    optimizer: torch.optim.Optimizer
    train_set: object
    val_set: object
    batches: Callable
    device: torch.device
    world: World
    started: float  # perf_counter at the start of this attempt
    resume_path: Path
    init_sha256: str | None
    progress: Progress = field(default_factory=Progress)
    ap: dict | None = None  # the last evaluation's

    def train_steps(self, stop: StepClock) -> int:
        config, progress, world, train_set = self.config, self.progress, self.world, self.train_set
        epoch = progress.epoch
        train_set.set_epoch(epoch)  # its augmentation draws from (seed, epoch, index)
        order = [batch[world.share(len(batch))]
                 for batch in self.batches(train_set, config.batch_size, seed=config.seed, epoch=epoch)
                 if len(batch) >= world.size]
        bar = self.bar(len(order))
        # A resumed epoch skips the batches already trained on: their indices are known, nothing is read.
        progress.step = train_one_epoch(
            self.trained, self.optimizer, load_batches(train_set, order[progress.step:], config.workers, config.seed,
                                                       epoch),
            partial(learning_rate, config, epoch, steps_per_epoch=len(order)), self.device, progress.tally,
            epoch=epoch, step=progress.step, stop=stop.agreed, clip_grad_norm=config.clip_grad_norm, bar=bar,
            world=world)
        bar.close()
        return len(order)

    def test(self) -> dict | None:
        self.ap = (None if self.val_set is None else
                   evaluate(self.model, self.val_set, self.config.eval_batch_size, self.device, self.config.workers,
                            self.world))
        return self.ap

    def record(self, epoch: int, steps: int, test: dict | None, seconds: float) -> dict:
        tally = self.progress.tally
        return _record(epoch, scheduled_lr(self.config, epoch),
                       {k: v / tally.n for k, v in tally.sums.items()}, test, seconds)

    def log_epoch(self, record: dict) -> None:
        if self.world.main:
            _log_epoch(record, self.config.epochs)

    def save_resume(self, mid_epoch: bool) -> None:
        """Also at an epoch's end the file holds the (then empty) tally."""
        rng = self.world.gather([rng_state(self.device)])  # a collective: every process takes part
        if self.world.main:
            config, progress = self.config, self.progress
            save({"format": RESUME_FORMAT, "genotype": self.genotype.to_dict(), "detector": self.detector.to_dict(),
                  "config": config.to_dict(), "init_sha256": self.init_sha256, "model": self.model.state_dict(),
                  "optimizer": self.optimizer.state_dict(),
                  "scheduler": {"schedule": config.schedule, "epoch": progress.epoch, "step": progress.step},
                  "epoch": progress.epoch, "step": progress.step, "rng": rng,
                  "history": progress.history, "tally": dataclasses.asdict(progress.tally),
                  "elapsed_s": self.elapsed(), "resumes": progress.resumes}, self.resume_path)

    def load_resume(self) -> None:
        path = self.resume_path
        state = read(path, "resume checkpoint", ("format", "genotype", "detector", "config", "epoch", "step"))
        if state["format"] != RESUME_FORMAT:
            raise BlockswapError(f"{path}: resume checkpoint format {state['format']!r}, expected {RESUME_FORMAT!r}")
        check_identity(path, state, self.genotype, self.detector, self.config, self.init_sha256,
                       f"; delete {path} to start afresh, or pass --resume with another path")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]  # one state per process of the run that wrote it
        set_rng_state(rng[self.world.rank] if len(rng) == self.world.size else rng[0])
        self.progress = Progress(state["epoch"], state["step"], list(state["history"]), Tally(**state["tally"]),
                                 state["elapsed_s"], state["resumes"] + 1)

    def metrics(self, labels: dict | None, threads: int, init, categories) -> dict:
        config, detector, progress, model, wall = self.config, self.detector, self.progress, self.model, self.elapsed()
        prov = provenance({"detector": detector.to_dict(), **config.to_dict()}, config.seed, str(self.device), wall,
                          self.world.size)
        prov.update(threads=threads, resumes=progress.resumes, init=None if init is None else str(init))
        return {"labels": dict(labels or {}), "genotype_id": self.genotype.id, "genotype": self.genotype.to_dict(),
                "detector": detector.to_dict(), "settings": config.to_dict(),
                "backbone_params": sum(p.numel() for p in model.backbone.body.parameters()),
                "detector_params": sum(p.numel() for p in model.parameters()),
                "category_ids": categories, "train_images": len(self.train_set),
                "val_images": None if self.val_set is None else len(self.val_set), "epochs": progress.history,
                **(self.ap or {}), "wall_time_s": wall, "provenance": prov}


def _train(genotype, detector, config, train_set, val_set, world: World, device, started: float,
           out_checkpoint: Path, metrics_path, resume_path, init, labels, batches) -> dict:
    threads = resolve_threads(config.threads, world)
    resume_path = resume_path_for(out_checkpoint, resume_path)
    check_distinct_files({"checkpoint": out_checkpoint, "metrics": metrics_path, "resume": resume_path, "init": init})
    if len(train_set) == 0:
        raise BlockswapError("the training set has no images")
    # Label i is category categories[i - 1]; None for data without COCO categories.
    categories = None if train_set.category_ids is None else list(train_set.category_ids)
    init_sha256 = None if init is None else init_weights_sha256(genotype, init)
    log = _log if world.main else (lambda message: None)

    seed_all(config.seed)
    model = build_detector(genotype, detector, init).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    run = _DetectionRun(genotype, detector, config, model, model, optimizer, train_set, val_set, batches, device,
                        world, started, resume_path, init_sha256)
    if resume_path.exists():
        run.load_resume()
        log(f"resuming from {resume_path}: epoch {run.progress.epoch + 1}, step {run.progress.step}")
    run.trained = world.wrap(model, sync_bn=False)  # --norm syncbn built SyncBatchNorm already
    log(f"training {detector.detector} on {genotype.model} {genotype.id} ({len(train_set)} images, {config.epochs} "
        f"epochs, {device}, {threads} threads"
        + (f", {world.size} processes of {config.batch_size // world.size} images a step)" if world.size > 1 else ")"))
    run.run(_stop_requests)

    metrics = run.metrics(labels, threads, init, categories)
    run.finish(lambda: {"genotype": genotype.to_dict(), "detector": detector.to_dict(), "config": config.to_dict(),
                        "category_ids": categories, "state_dict": {k: v.detach().cpu() for k, v in
                                                                   model.state_dict().items()},
                        "metrics": metrics, "provenance": metrics["provenance"]}, out_checkpoint, metrics, metrics_path)
    return metrics


def test_only(checkpoint: str | os.PathLike, val_set, config: DetectTrainConfig, genotype: Genotype | None = None,
              detector: DetectorConfig | None = None, metrics_path: str | os.PathLike | None = None) -> dict:
    """COCO AP of a final detection checkpoint on `val_set`; refuses one of another genotype or detector
    where those are given."""
    started = time.perf_counter()
    resolve_threads(config.threads)
    device = resolve_device(config.device)
    model, ckpt = load_detector(checkpoint, device)
    saved_genotype = Genotype.from_dict(ckpt["genotype"])
    check_identity(checkpoint, ckpt, genotype, detector or DetectorConfig.from_dict(ckpt["detector"]))
    # COCO AP names each label by the set's category ids (`evaluate`): a set without them cannot be scored (a
    # checkpoint trained on such data stores None).
    if val_set.category_ids is None:
        raise BlockswapError(f"the validation set has no COCO categories (category_ids); {checkpoint} is scored by "
                             "COCO AP on a COCO set: --val-images and --val-annotations")
    categories = list(val_set.category_ids)
    if categories != ckpt["category_ids"]:
        raise BlockswapError(f"{checkpoint} was trained on categories {ckpt['category_ids']}, the validation set "
                             f"has {categories}: its labels would name other categories")
    ap = evaluate(model, val_set, config.eval_batch_size, device, config.workers)
    wall = time.perf_counter() - started
    prov = provenance({"checkpoint": str(checkpoint), "eval_batch_size": config.eval_batch_size}, None, str(device),
                      wall)
    metrics = {"checkpoint": str(checkpoint), "genotype_id": saved_genotype.id, "genotype": ckpt["genotype"],
               "detector": ckpt["detector"], "val_images": len(val_set), **ap, "wall_time_s": wall,
               "provenance": prov}
    if metrics_path:
        write_json(metrics_path, metrics)
    return metrics
