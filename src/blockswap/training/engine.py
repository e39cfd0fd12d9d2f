"""The training engine: one SGD step, one epoch, evaluation, the device a run uses and how it computes there."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..core.errors import BlockswapError
from ..core.recipe import EVAL_BATCH_SIZE, TrainConfig
from ..data.datasets import iterate_batches
from ..data.distributed import SINGLE, World
from ..nn.models import Network
from .checkpoint import Tally
from .losses import Objective

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N' → a usable torch.device, or one clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BlockswapError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BlockswapError(f"device {name!r} asked for, but no CUDA GPU is visible; use --device cpu")
    return device


@dataclass
class Precision:
    """How a run computes on its GPU (`TrainConfig.amp`, `channels_last`); the default is float32 and the
    usual contiguous layout, i.e. exactly what runs without these settings compute.

    amp: the forward passes (student, teacher, objective) run under autocast to bf16 or fp16; weights,
    gradients and the optimiser stay float32. fp16's narrow range needs loss scaling: `scaler`, a GradScaler
    that skips the steps whose gradients overflow and tunes the scale. channels_last: the networks and their
    inputs in NHWC layout, which tensor-core convolutions prefer (same numbers, other summation order).
    Evaluation (`evaluate`) stays float32 - a small share of a run's time - so that the recorded test errors
    do not depend on `amp` and `blockswap evaluate` reproduces them (up to summation order after channels_last).
    Both are for CUDA runs: `for_run` refuses them on the CPU rather than ignore them there, since on most
    CPUs bf16 and fp16 autocast are slower than float32, and a setting recorded but not applied would
    misdescribe the run.
    """
    amp: str = "off"
    channels_last: bool = False
    scaler: torch.amp.GradScaler | None = field(init=False, default=None)

    def __post_init__(self):
        if self.amp == "fp16":
            self.scaler = torch.amp.GradScaler("cuda")

    @classmethod
    def for_run(cls, config: TrainConfig, device: torch.device) -> Precision:
        asked = ([f"amp={config.amp}"] if config.amp != "off" else []) + (
            ["channels_last"] if config.channels_last else [])
        if asked and device.type != "cuda":
            raise BlockswapError(f"{' and '.join(asked)} asked for, but mixed precision and channels-last are for "
                                 f"CUDA runs and this one runs on the {device.type}; leave them off there")
        return cls(config.amp, config.channels_last)

    def autocast(self, device: torch.device):
        """The context the forward passes run in."""
        if self.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=AMP_DTYPES[self.amp])

    def layout(self, x):
        """A network (converted in place) or a batch of images in the run's memory layout."""
        return x.to(memory_format=torch.channels_last) if self.channels_last else x

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()


FLOAT32 = Precision()


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def count_step(tally: Tally, values: dict[str, float], wrong: int, n: int, bar=None) -> None:
    """Add one step's `values` (means over its `n` examples) and `wrong` count to `tally`; move `bar` on,
    showing the loss."""
    tally.add(values, wrong, n)
    if bar is not None:
        bar.update()
        bar.set_postfix(loss=f"{values['loss']:.3f}", refresh=False)


def train_step(model: Network, optimizer: torch.optim.Optimizer, objective: Objective, images: torch.Tensor,
               labels: torch.Tensor, lr: float, teacher: Network | None = None,
               world: World = SINGLE, precision: Precision = FLOAT32) -> dict[str, float]:
    """One SGD step at `lr`; returns the loss, its unweighted parts and the count of wrong top-1 predictions.
    A non-finite loss is returned without stepping, so that the caller can stop with the weights intact.
    Data-parallel (`world`): those of the global batch - the ranks' means averaged, their counts summed - so
    every rank makes the same choice."""
    set_lr(optimizer, lr)
    images = precision.layout(images)
    t_logits = t_points = None
    with precision.autocast(images.device):
        if teacher is not None:
            with torch.no_grad():
                t_logits, t_points = teacher(images)
        logits, points = model(images)
        loss, parts = objective(logits, points, labels, t_logits, t_points)
    wrong = (logits.argmax(1) != labels).sum()
    # One host sync per step for all the numbers.
    numbers = torch.stack([t.detach().double() for t in (loss, *parts.values(), wrong)])
    if world.size > 1:  # the global batch's: the ranks' means averaged, their wrong counts summed
        numbers = world.sum_(numbers)
        numbers[:-1] /= world.size
    numbers = numbers.tolist()
    values = dict(zip(["loss", *parts, "wrong"], numbers))
    if math.isfinite(values["loss"]):
        optimizer.zero_grad(set_to_none=True)
        precision.backward_and_step(loss, optimizer)
    return values


def train_one_epoch(model: Network, optimizer: torch.optim.Optimizer, objective: Objective,
                    batches: Iterable, lr_at: Callable[[int], float], tally: Tally, *, epoch: int, step: int = 0,
                    teacher: Network | None = None, stop: Callable[[], bool] | None = None, bar=None,
                    world: World = SINGLE, precision: Precision = FLOAT32) -> int:
    """Train on `batches` (those of `epoch` from `step` on), adding to `tally`. Returns the step reached: the
    epoch's end, or earlier as soon as `stop()` is true (asked before each step: `AgreedStop.agreed`, a
    collective with several processes). Data-parallel, `batches`
    are this rank's slices and the tally counts the global batch."""
    model.train()
    for images, targets in batches:
        if stop is not None and stop():
            break
        lr = lr_at(step)
        values = train_step(model, optimizer, objective, images, targets, lr, teacher, world, precision)
        if not math.isfinite(values["loss"]):
            raise BlockswapError(f"the training loss became {values['loss']} in epoch {epoch + 1}, step "
                                 f"{step + 1} (lr {lr:g}); lower --lr, or check the data")
        count_step(tally, values, int(values.pop("wrong")), len(targets) * world.size, bar)
        step += 1
    return step


@torch.no_grad()
def evaluate(model: Network, dataset, batch_size: int = EVAL_BATCH_SIZE, device=None, world: World = SINGLE) -> dict:
    """Top-1/top-5 error (%) and mean cross-entropy on `dataset`, in eval mode, without augmentation.
    Data-parallel (`world`): each rank tests every size-th example from its rank on and the sums are
    all-reduced, so every rank returns the same result (the model must be the same on all: `share_buffers`)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    n = len(dataset)
    if world.size > 1:
        dataset = dataset.select(torch.arange(world.rank, n, world.size))
    was_training = model.training
    model.eval()
    k = min(5, dataset.num_classes)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    wrong1 = torch.zeros((), dtype=torch.long, device=device)
    wrong5 = torch.zeros((), dtype=torch.long, device=device)
    try:
        for images, labels in iterate_batches(dataset, batch_size, train=False, device=device):
            logits, _ = model(images)
            loss += F.cross_entropy(logits, labels, reduction="sum").double()
            hits = logits.topk(k, 1).indices == labels[:, None]
            wrong1 += (~hits[:, 0]).sum()
            wrong5 += (~hits.any(1)).sum()
    finally:
        model.train(was_training)
    if world.size > 1:
        loss, wrong1, wrong5 = world.sum_(torch.stack([loss, wrong1.double(), wrong5.double()]))
    return {"top1_error": 100.0 * wrong1.item() / n, "top5_error": 100.0 * wrong5.item() / n,
            "loss": loss.item() / n, "n": n}
