"""Detection training settings, the learning rate, batches, one training epoch and COCO evaluation.

The recipe's defaults are torchvision's Mask R-CNN schedule (26 epochs; SGD, momentum 0.9, weight decay
1e-4, lr 0.02 for 16 images a step, ×0.1 at epochs 16 and 22; a linear warm-up over the first
min(1000, steps − 1) steps from 0.001·lr). Another batch size wants the lr scaled with it (0.00125 per
image). The lr is a pure function of (epoch, step), so a resumed run needs no scheduler object: the resume
file records the position only.

The batch order of an epoch depends only on (seed, epoch). Random augmentation is the dataset's: COCO's flip
depends on (seed, epoch, index) through its `set_epoch`, called before each epoch; another dataset drawing
from torch's global generator is reproduced too, as the resume file restores that generator's state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ..checkpoint import Tally
from ..errors import BlockswapError
from ..recipe import SCHEDULES, setting
from .coco import collate

# Settings that do not change what is computed: a resumed run may change them.
RUN_ONLY = frozenset({"device", "threads", "progress"})


@dataclass(frozen=True)
class DetectTrainConfig:
    """How a detector is trained; saved with its checkpoints and metrics."""
    epochs: int = setting(26, "training epochs (torchvision's Mask R-CNN schedule: 26)")
    batch_size: int = setting(16, "images per step (torchvision and the paper: 16, 2 on each of 8 GPUs)")
    lr: float = setting(0.02, "peak SGD learning rate; scale it with the batch size (torchvision: 0.02 for 16 "
                        "images; from scratch on the slim preset, 0.02 with 4 images diverges)")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(1e-4, "L2 weight decay of every parameter")
    schedule: str = setting("step", "step (×gamma at milestones) or cosine (to 0 at the last epoch), per epoch",
                            choices=SCHEDULES)
    milestones: tuple[int, ...] = setting((16, 22), "epochs where the step schedule multiplies the lr by gamma",
                                          "int_list")
    gamma: float = setting(0.1, "step-schedule factor")
    clip_grad_norm: float | None = setting(None, "clip the gradients' global ℓ2 norm to this before each step "
                                           "(default: no clipping, as torchvision)", float)
    warmup_iters: int = setting(1000, "linear warm-up steps at the start of the first epoch (0: none)")
    warmup_factor: float = setting(0.001, "the warm-up starts at this fraction of the lr")
    eval_every: int = setting(1, "evaluate on the validation set every N epochs (the last one always)")
    eval_batch_size: int = setting(2, "images per evaluation step (padding to a batch can move AP slightly)")
    workers: int = setting(0, "data-loading processes (0: load in the training process)")
    seed: int = setting(0, "seed of the initialisation, batch order and augmentation")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    threads: int | None = setting(None, "torch threads (default: the CPUs this job may use)", int)
    progress: bool = setting(True, "a progress bar per epoch", cli=False)

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        self._validate()

    def _validate(self):
        def need(ok, msg):
            if not ok:
                raise BlockswapError(msg)
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
            need(getattr(self, name) >= 1, f"{name} must be ≥ 1, got {getattr(self, name)}")
        need(self.warmup_iters >= 0 and self.workers >= 0 and self.seed >= 0,
             "warmup_iters, workers and seed must be ≥ 0")
        need(self.threads is None or self.threads >= 1, f"threads must be ≥ 1, got {self.threads}")
        for name in ("lr", "momentum", "weight_decay", "gamma", "warmup_factor", "clip_grad_norm"):
            value = getattr(self, name)
            need(value is None or math.isfinite(value), f"{name} must be a finite number, got {value}")
        need(self.lr > 0, f"lr must be a positive number, got {self.lr}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        need(self.weight_decay >= 0, f"weight_decay must be ≥ 0, got {self.weight_decay}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        need(list(self.milestones) == sorted(set(self.milestones)) and all(m >= 1 for m in self.milestones),
             f"milestones must be increasing positive epochs, got {list(self.milestones)}")
        need(self.gamma > 0, f"gamma must be > 0, got {self.gamma}")
        need(self.clip_grad_norm is None or self.clip_grad_norm > 0,
             f"clip_grad_norm must be > 0, got {self.clip_grad_norm}")
        need(0 < self.warmup_factor <= 1, f"warmup_factor must be in (0, 1], got {self.warmup_factor}")
        need(self.device in ("auto", "cpu") or self.device.startswith("cuda"),
             f"device must be auto, cpu or cuda[:N], got {self.device!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> DetectTrainConfig:
        unknown = sorted(set(d) - set(FIELDS))
        if unknown:
            raise BlockswapError(f"unknown detection training setting {unknown[0]!r}")
        return cls(**d)


FIELDS = {f.name: f for f in dataclasses.fields(DetectTrainConfig)}


def learning_rate(config: DetectTrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The lr of `step` of `epoch` (both from 0): the epoch's schedule value, warmed up in the first epoch."""
    if config.schedule == "cosine":
        lr = config.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    else:
        lr = config.lr * config.gamma ** sum(epoch >= m for m in config.milestones)
    warm = min(config.warmup_iters, steps_per_epoch - 1)
    if epoch == 0 and step < warm:
        alpha = step / warm
        lr *= config.warmup_factor * (1 - alpha) + alpha
    return lr


# ------------------------------------------------------------------------------------------------ batches
def epoch_seed(seed: int, epoch: int) -> int:
    """One number from (seed, epoch): the seed of that epoch's batch order and data workers."""
    return seed * 100_003 + epoch


def batch_order(dataset, batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's batches of dataset indices: a permutation drawn from (seed, epoch) alone, last batch short.
    (COCO data has its own, grouped by aspect ratio: `coco.aspect_ratio_batches`, with this signature.)"""
    n = len(dataset)
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(n, generator=generator).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def load_batches(dataset, batches: Sequence[Sequence[int]], workers: int = 0, seed: int = 0, epoch: int = 0
                 ) -> Iterable:
    """(images, targets) per batch of indices, read in `workers` processes (0: here). The workers' seeds come
    from (seed, epoch), not from torch's global generator, whose draws stay the training's own."""
    if workers == 0:
        return (collate([dataset[i] for i in batch]) for batch in batches)
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                                       generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


def to_device(images, targets, device) -> tuple[list, list]:
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
               for t in targets]
    return images, targets


# ----------------------------------------------------------------------------------------------- training
def train_one_epoch(model, optimizer: torch.optim.Optimizer, batches: Iterable, lr_at: Callable[[int], float],
                    device, tally: Tally, *, epoch: int, step: int = 0, stop: list | tuple = (),
                    clip_grad_norm: float | None = None, bar=None) -> int:
    """Train on `batches` (those of `epoch` from `step` on) with SGD at `lr_at(step)`, the gradients' norm
    clipped to `clip_grad_norm` if given, adding each loss and their sum ("loss"), image-weighted, to `tally`.
    Returns the step reached: the epoch's end, or earlier as soon as `stop` is non-empty (checked before a
    batch is read, so that no draw is made for it). A non-finite loss stops the run before its step, with
    the weights intact."""
    model.train()
    batches = iter(batches)
    while not stop:
        try:
            images, targets = next(batches)
        except StopIteration:
            break
        lr = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, targets = to_device(images, targets, device)
        losses = model(images, targets)
        loss = sum(losses.values())
        values = dict(zip(["loss", *losses], torch.stack([loss, *losses.values()]).detach().double().tolist()))
        if not math.isfinite(values["loss"]):
            parts = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            raise BlockswapError(f"the training loss became non-finite in epoch {epoch + 1}, step {step + 1} "
                                 f"(lr {lr:g}; {parts}); lower --lr or raise --warmup-iters")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        tally.add(values, 0, len(images))
        step += 1
        if bar is not None:
            bar.update()
            bar.set_postfix(loss=f"{values['loss']:.3f}", refresh=False)
    return step


@torch.no_grad()
def predict(model, dataset, batch_size: int, device, workers: int = 0) -> Iterator[tuple[list, list]]:
    """(outputs on the CPU, targets) per batch of `dataset` in order, the model in eval mode."""
    was_training = model.training
    model.eval()
    try:
        order = [list(range(i, min(i + batch_size, len(dataset)))) for i in range(0, len(dataset), batch_size)]
        for images, targets in load_batches(dataset, order, workers):
            outputs = model([im.to(device) for im in images])
            yield [{k: v.cpu() for k, v in o.items()} for o in outputs], targets
    finally:
        model.train(was_training)


def predicts_masks(model) -> bool:
    roi_heads = getattr(model, "roi_heads", None)
    return roi_heads is not None and roi_heads.has_mask()


def evaluate(model, dataset, batch_size: int, device, workers: int = 0) -> dict:
    """COCO AP of the model's predictions on `dataset` (a `coco.CocoDetection`): {"bbox": …, "segm": …}
    (segm for a model that predicts masks, also when it finds nothing), each with AP, AP50, AP75, APs, APm,
    APl on COCOeval's 0–1 scale, plus "detections": how many were scored."""
    from .evaluate import coco_evaluate, predictions_from_outputs

    predictions = []
    for outputs, targets in predict(model, dataset, batch_size, device, workers):
        predictions += predictions_from_outputs(outputs, [int(t["image_id"]) for t in targets],
                                                dataset.category_ids)
    kinds = ["bbox", "segm"] if predicts_masks(model) else ["bbox"]
    return {**coco_evaluate(dataset.coco, predictions, kinds), "detections": len(predictions)}
