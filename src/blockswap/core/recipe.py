"""Every training setting, defined once: `TrainConfig` (torch-free).

The CLI's training options, their defaults and help are built from these fields (`cli.training`); the
workflow passes a profile's recipe through whole (`TrainConfig.flags`); the schema's recipe defaults are
tested against them. A field's `metadata["cli"]` is False where the CLI spells it otherwise
(`progress` is `--quiet`) or a command adds it itself (the distillation fields, on `distill` only).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import BlockswapError

SCHEDULES = ("cosine", "step")
AMP_MODES = ("off", "bf16", "fp16")
LR_UNITS = ("epoch", "iteration")
DISTILL_FIELDS = ("at_beta", "kd_alpha", "kd_temperature")
# Settings (of either training) that do not change what is computed: a resumed run may change them.
RUN_ONLY = frozenset({"device", "threads", "progress", "data_dir"})
EVAL_BATCH_SIZE = 500  # images per test step of a classifier: memory, not the result
NORMALIZE_HOW = ("imagenet (torchvision's mean and std), folder (the training split's) or MEAN:STD (per channel, "
                 "comma-separated, in [0, 1] units: 0.5,0.5,0.5:0.25,0.25,0.25)")


def differences(then: dict, now: dict, keys=None, prefix: str = "") -> list[str]:
    """'key: old there, new now' for each key whose value differs, nested dicts key by key (recipe.lr: ...): what
    a refusal to mix a record with this run names. `keys`: only these, one `then` lacks read as None (a record's
    settings: a setting added since with default None leaves it matching); by default every key either has, one
    a dict lacks shown as (none)."""
    out = []
    for key in dict.fromkeys([*now, *then]) if keys is None else keys:
        a, b = (then.get(key, "(none)"), now.get(key, "(none)")) if keys is None else (then.get(key), now[key])
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, prefix=f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out


def setting(default, help: str, type=None, cli: bool = True, recorded: bool = True, **extra):
    """A TrainConfig field: its default, its help text and (for lists and optional numbers) its parser type.
    recorded=False: `to_dict` leaves the field out while it has its default, so that adding it changed no
    record (checkpoint, metrics, resume file) of the runs that do not use it."""
    return field(default=default, metadata={"help": help, "type": type, "cli": cli, "recorded": recorded, **extra})


# The fields both trainings' settings (this `TrainConfig`, `detection.settings.DetectTrainConfig`) have, each
# default and help stated here once; `shared(name)` makes the field (a dataclass field belongs to one class).
SHARED_FIELDS = {
    "momentum": dict(default=0.9, help="SGD momentum"),
    "lr_unit": dict(default="epoch", help="change the lr once per epoch (the reference code) or every step",
                    choices=LR_UNITS),
    "warmup_iters": dict(help="linear warm-up steps at the start of the first epoch (0: none)"),
    "warmup_factor": dict(default=0.001, help="the warm-up starts at this fraction of the lr"),
    "eval_every": dict(default=1, help="test every N epochs (the last one always)"),
    "seed": dict(default=0, help="seed of the initialisation, batch order and augmentation"),
    "device": dict(default="auto", help="auto, cpu, cuda or cuda:N"),
    "threads": dict(default=None, help="torch threads (default: the CPUs this job may use)", type=int),
    "progress": dict(default=True, help="a progress bar per epoch", cli=False),
}


def shared(name: str, **changes):
    return setting(**{**SHARED_FIELDS[name], **changes})


class Settings:
    """A settings dataclass as a plain dict and back; `what` names it in the unknown-setting message."""
    what = "training"  # unannotated: a class attribute, not a dataclass field

    def to_dict(self) -> dict:
        d = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("recorded", True) or value != f.default:
                d[f.name] = list(value) if isinstance(value, tuple) else value
        return d

    @classmethod
    def unrecorded_defaults(cls) -> dict:
        """What a `to_dict` lacking a recorded=False field means: that field's default."""
        return {f.name: f.default for f in dataclasses.fields(cls) if not f.metadata.get("recorded", True)}

    @classmethod
    def from_dict(cls, d: dict):
        cls._check_known(d)
        return cls(**d)

    @classmethod
    def flags(cls, recipe: dict) -> str:
        """A profile's recipe (keys: these fields) as the command's options. Null values are left out, so that
        the command's default applies (the dataset's recipe, the whole split), and so are settings marked
        flag_if_set while at their default (the schema fills them in; a new flag would change every job's
        command and make Snakemake rerun finished jobs)."""
        fields = cls._check_known(recipe)
        return options({k: v for k, v in recipe.items()
                        if not (fields[k].metadata.get("flag_if_set") and v == fields[k].default)})

    @classmethod
    def _check_known(cls, d: dict) -> dict:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise BlockswapError(f"unknown {cls.what} setting {unknown[0]!r}")
        return fields

    # The checks both trainings' settings make, each with its one message; `_validate` calls them in its order.
    @staticmethod
    def _need(ok: bool, message: str) -> None:
        if not ok:
            raise BlockswapError(message)

    def _check_at_least_one(self, *names: str, optional: bool = False) -> None:
        for name in names:
            value = getattr(self, name)
            self._need((optional and value is None) or value >= 1, f"{name} must be ≥ 1, got {value}")

    def _check_finite(self, names) -> None:
        for name in names:
            values = getattr(self, name)
            for v in values if isinstance(values, tuple) else (values,):
                self._need(not isinstance(v, float) or math.isfinite(v), f"{name} must be a finite number, got {v}")

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        self._need(value in choices, f"{name} must be one of {', '.join(choices)}, got {value!r}")

    def _check_sgd(self) -> None:
        """lr, momentum and weight_decay."""
        self._need(self.lr > 0, f"lr must be a positive number, got {self.lr}")
        self._need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        self._need(self.weight_decay >= 0, f"weight_decay must be ≥ 0, got {self.weight_decay}")

    def _check_steps(self) -> None:
        """The step schedule's milestones and gamma."""
        self._need(list(self.milestones) == sorted(set(self.milestones)) and all(m >= 1 for m in self.milestones),
                   f"milestones must be increasing positive epochs, got {list(self.milestones)}")
        self._need(self.gamma > 0, f"gamma must be > 0, got {self.gamma}")

    def _check_schedule(self) -> None:
        """schedule, lr_unit, the step schedule's milestones and gamma, the warm-up."""
        self._check_choice("schedule", SCHEDULES)
        self._check_choice("lr_unit", LR_UNITS)
        self._check_steps()
        self._need(self.warmup_iters >= 0, f"warmup_iters must be ≥ 0, got {self.warmup_iters}")
        self._need(0 < self.warmup_factor <= 1, f"warmup_factor must be in (0, 1], got {self.warmup_factor}")

    def _check_device(self) -> None:
        self._need(self.device in ("auto", "cpu") or self.device.startswith("cuda"),
                   f"device must be auto, cpu or cuda[:N], got {self.device!r}")


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Every setting of a run; saved in checkpoints and metrics. Errors are percentages."""
    dataset: str = setting("fashion-mnist", "fashion-mnist, cifar10, imagenet or folder (an image folder: --data-dir)")
    data_dir: str | None = setting(None, "dataset folder (default: the dataset's standard place, if any)", str)
    subset: int | None = setting(None, "train on a class-stratified subset of N examples (default: all)", int)
    test_subset: int | None = setting(None, "test on a class-stratified subset of N examples (default: all)", int)
    # Fixed apart from `seed`, so that runs with other seeds see the same data.
    subset_seed: int = setting(0, "seed of the class-stratified subsets")
    normalize: str | None = setting(None, f"the inputs' mean and std: {NORMALIZE_HOW} (default: the dataset's "
                                    "own; an image folder's: its training split's, or ImageNet's for images "
                                    "over 64 px)", str, recorded=False)
    epochs: int = setting(200, "training epochs (the papers' CIFAR recipe: 200)")
    batch_size: int = setting(128, "minibatch size")
    eval_batch_size: int = setting(EVAL_BATCH_SIZE, "test batch size (does not change the result)")
    lr: float = setting(0.1, "initial SGD learning rate")
    momentum: float = shared("momentum")
    weight_decay: float = setting(5e-4, "L2 weight decay of every parameter")
    crs_wd: bool = setting(False, "CRS-wd: scale the weight decay of the structured layers' compressed tensors by "
                           "the genotype's compression ratio (params / params with full convs)", "bool")
    schedule: str = setting("cosine", "cosine to 0 at the end of the last epoch, or step (×gamma at milestones)",
                            choices=SCHEDULES)
    milestones: tuple[int, ...] = setting((60, 120, 160), "epochs where the step schedule multiplies the lr by "
                                          "--gamma", "int_list")
    gamma: float = setting(0.2, "step-schedule factor")
    lr_unit: str = shared("lr_unit")
    # Added after results existed: off, and then neither recorded nor passed by the workflow.
    warmup_iters: int = shared("warmup_iters", default=0, recorded=False, flag_if_set=True)
    warmup_factor: float = shared("warmup_factor", recorded=False, flag_if_set=True)
    cutout: int | None = setting(None, "Cutout square side (default: the dataset's recipe, 16 on CIFAR-10, "
                                 "0 = off)", int)
    at_beta: tuple[float, ...] = setting((), "AT weight β, one value or one per attention point (0: no AT)",
                                         "float_list", cli=False)
    kd_alpha: float = setting(0.0, "KD mixing: (1-α)·CE + α·KD (0: no KD)", cli=False)
    kd_temperature: float = setting(4.0, "KD temperature T", cli=False)
    eval_every: int = shared("eval_every")
    seed: int = shared("seed")
    # Added after results existed: `flags` leaves it out while off, so their commands stay as they were.
    sync_bn: bool = setting(False, "data-parallel runs (torchrun): BatchNorm statistics over the global batch "
                            "(SyncBatchNorm, CUDA only) rather than each process's part", "bool", flag_if_set=True)
    # Off by default, and then left out of the records, so that the runs without them are recorded as before.
    amp: str = setting("off", "CUDA only: mixed precision, the forward passes autocast to bf16, or to fp16 with "
                       "loss scaling (weights and optimiser stay float32)", choices=AMP_MODES, recorded=False)
    channels_last: bool = setting(False, "CUDA only: the network and its inputs in channels-last memory layout, "
                                  "which tensor-core convolutions prefer", "bool", recorded=False)
    device: str = shared("device")
    threads: int | None = shared("threads")
    progress: bool = shared("progress")

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        beta = self.at_beta
        object.__setattr__(self, "at_beta", (float(beta),) if isinstance(beta, (int, float)) else
                           tuple(float(b) for b in beta))
        self._validate()

    def _validate(self):
        need = self._need
        self._check_at_least_one("epochs", "batch_size", "eval_batch_size", "eval_every")
        self._check_at_least_one("subset", "test_subset", "threads", optional=True)
        need(self.seed >= 0 and self.subset_seed >= 0, "seeds must be non-negative")
        self._check_finite([f.name for f in dataclasses.fields(self)])
        self._check_sgd()
        for name in ("crs_wd", "channels_last"):
            need(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        self._check_choice("amp", AMP_MODES)
        self._check_schedule()
        need(self.cutout is None or self.cutout >= 0, f"cutout must be ≥ 0, got {self.cutout}")
        need(all(b >= 0 for b in self.at_beta), f"at_beta values must be ≥ 0, got {list(self.at_beta)}")
        need(0 <= self.kd_alpha <= 1, f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        need(self.kd_temperature > 0, f"kd_temperature must be > 0, got {self.kd_temperature}")
        if self.normalize is not None:
            parse_normalize(self.normalize)
        self._check_device()

    @property
    def uses_at(self) -> bool:
        return any(b > 0 for b in self.at_beta)

    @property
    def uses_teacher(self) -> bool:
        return self.uses_at or self.kd_alpha > 0



def parse_normalize(text: str) -> str | tuple[tuple[float, ...], tuple[float, ...]]:
    """A --normalize value: "imagenet", "folder", or (mean, std) from MEAN:STD (one value each, or one per channel;
    std > 0). One line naming the value and the forms otherwise."""
    if text in ("imagenet", "folder"):
        return text
    mean, sep, std = text.partition(":")
    try:
        stats = tuple(tuple(float(v) for v in part.split(",")) for part in (mean, std))
    except ValueError:
        stats = None
    if not sep or stats is None or len(stats[0]) != len(stats[1]) or not all(
            math.isfinite(v) for v in stats[0] + stats[1]) or min(stats[1]) <= 0:
        raise BlockswapError(f"normalize {text!r}: expected {NORMALIZE_HOW}, as many std values as mean values, "
                             "each std > 0")
    return stats


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# What `blockswap distill` uses where the user says nothing: BlockSwap's β = 1000 at every point, no KD.
DISTILL_DEFAULTS = {**{name: FIELDS[name].default for name in DISTILL_FIELDS}, "at_beta": (1000.0,)}


def scheduled_lr(config, t: float) -> float:
    """The schedule's learning rate at `t` epochs into the run (either training's settings); at t = epoch, the
    `lr` an epoch's record states (the value at its start, before any warm-up)."""
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * t / config.epochs))
    return config.lr * config.gamma ** sum(t >= m for m in config.milestones)


def learning_rate(config, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The lr of `step` of `epoch` (both from 0), of either training's settings: the schedule's value (once an
    epoch, or every step with lr_unit iteration), warmed up linearly over the first epoch's first warmup_iters
    steps (at most all but its last) from warmup_factor times it."""
    lr = scheduled_lr(config, epoch + (step / steps_per_epoch if config.lr_unit == "iteration" else 0.0))
    warm = min(config.warmup_iters, steps_per_epoch - 1)
    if epoch == 0 and step < warm:
        alpha = step / warm
        lr *= config.warmup_factor * (1 - alpha) + alpha
    return lr


def options(settings: dict) -> str:
    """Settings as command options: key_name → --key-name value, lists comma-joined; null values left out."""
    def text(value) -> str:
        return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return " ".join(f"--{key.replace('_', '-')} {text(value)}" for key, value in settings.items() if value is not None)
