"""One training engine for teachers and students: SGD, attention transfer (AT), knowledge distillation (KD).

Objective, per minibatch (B examples, student logits s, teacher logits t, attention points i):
    loss = (1 - α)·CE(s, y) + α·KD(s, t) + Σ_i β_i·AT_i
    AT_i = mean over batch and positions of (at(student_i) - at(teacher_i))², at(x) = L2-normalise over
           positions of the channel mean of x², per example (Zagoruyko & Komodakis)
    KD   = T²·KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch (Hinton et al.; the reference
           Moonshine code). The spec's "KL(student/T ‖ teacher/T)" names the same term: the teacher's
           softened distribution is the target.
α = 0 switches KD off, an empty β list switches AT off; a teacher is run only when one of them is on,
in eval mode and without gradients. β has one value per attention point (3 for WRN, 4 for ResNet): one
number means the same β at every point (BlockSwap CIFAR: 1000 at 3 points; ImageNet: 750 at 4).

Learning rate: a pure function of (epoch, step), `learning_rate`, written into the optimiser before every
step. lr_unit="epoch" (default) holds it constant through an epoch, as the reference BlockSwap/Moonshine
code does (its schedulers step once per epoch); "iteration" moves it every step. Cosine goes from `lr`
towards 0 at the end of the last epoch; "step" multiplies by `gamma` at each milestone epoch.
Weight decay is applied to all parameters (BN included), as in the reference code. CRS-wd: with
`crs_ratio=r` the weight decay used is weight_decay·r; r is whatever compression ratio the user chooses
(e.g. student params / teacher params to shrink the decay of a small student).

Reproducibility and resuming. The batch order and augmentation of an epoch depend only on (seed, epoch)
(`data.iterate_batches`), so the resume file holds model, optimiser, the position (epoch, step), RNG
states and the metrics so far - nothing about the data pipeline. It is rewritten atomically after every
epoch, and also mid-epoch when SIGTERM/SIGUSR1 asks the job to stop (SLURM preemption or time limit):
the step in flight is finished, the file written, and `Preempted` raised (the CLI exits 128+signal).
A mid-epoch resume replays the epoch's batch generator up to the saved step without computing on those
batches, so a run stopped any number of times (SIGKILL included: it restarts from the last epoch end)
ends with bitwise the same weights and metrics (timings aside) as an uninterrupted one on the CPU with
the same thread count. Outputs appear only once training is complete; the resume file is then deleted.

Metrics (JSON and the checkpoint's "metrics"; errors in %): labels, genotype_id, genotype, params, ops, macs,
dataset, train_examples, test_examples, teacher (checkpoint, genotype_id, model, params, its
test_top1_error; null without one), objective (at_beta per point, kd_alpha, kd_temperature),
effective_weight_decay, epochs (per epoch: epoch, lr, train_loss = the objective, train_ce, train_at =
Σ_i AT_i unweighted, train_kd, train_top1_error on the augmented batches in train mode, test_loss,
test_top1_error, test_top5_error - null on untested epochs - and seconds), the final test_top1_error,
test_top5_error, test_loss, train_top1_error, wall_time_s (all attempts) and provenance (+ threads,
resumes). The final checkpoint {genotype, config, state_dict, metrics, provenance} holds plain types and
CPU tensors only, so `torch.load(path, weights_only=True)` reads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .counting import analytic
from .data import default_augment, iterate_batches, load_dataset
from .errors import BlockswapError
from .files import atomic_path, provenance, write_json
from .genotype import Genotype
from .models import Network, create_model

SCHEDULES = ("cosine", "step")
LR_UNITS = ("epoch", "iteration")
# Settings that do not change what is computed: a resumed run may change them.
RUN_ONLY = frozenset({"device", "threads", "progress", "data_dir"})
RESUME_FORMAT = "blockswap-resume-1"
CHECKPOINT_KEYS = ("genotype", "config", "state_dict", "metrics", "provenance")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


# ------------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; saved in checkpoints and metrics. Errors are percentages."""
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    subset: int | None = None          # class-stratified training subset (None: the whole split)
    test_subset: int | None = None
    subset_seed: int = 0               # fixed apart from `seed`, so runs with other seeds see the same data
    epochs: int = 200
    batch_size: int = 128
    eval_batch_size: int = 500
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crs_ratio: float | None = None     # CRS-wd: weight decay used = weight_decay·crs_ratio
    schedule: str = "cosine"
    milestones: tuple[int, ...] = (60, 120, 160)
    gamma: float = 0.2
    lr_unit: str = "epoch"
    cutout: int | None = None          # None: the dataset's recipe (16 for CIFAR-10, 0 for Fashion-MNIST)
    at_beta: tuple[float, ...] = ()    # one β per attention point, or one for all; () = no AT
    kd_alpha: float = 0.0
    kd_temperature: float = 4.0
    eval_every: int = 1                # test every N epochs; the last epoch always
    seed: int = 0
    device: str = "auto"
    threads: int | None = None         # None: the CPUs this process may use
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        beta = self.at_beta
        object.__setattr__(self, "at_beta", (float(beta),) if isinstance(beta, (int, float)) else
                           tuple(float(b) for b in beta))
        self._validate()

    def _validate(self):
        def need(ok, msg):
            if not ok:
                raise BlockswapError(msg)
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
            need(getattr(self, name) >= 1, f"{name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("subset", "test_subset", "threads"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"{name} must be ≥ 1, got {value}")
        need(self.seed >= 0 and self.subset_seed >= 0, "seeds must be non-negative")
        for f in dataclasses.fields(self):
            values = getattr(self, f.name)
            for v in values if isinstance(values, tuple) else (values,):
                need(not isinstance(v, float) or math.isfinite(v), f"{f.name} must be a finite number, got {v}")
        need(self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        need(self.weight_decay >= 0, f"weight_decay must be ≥ 0, got {self.weight_decay}")
        need(self.crs_ratio is None or self.crs_ratio > 0, f"crs_ratio must be > 0, got {self.crs_ratio}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        need(self.lr_unit in LR_UNITS, f"lr_unit must be one of {', '.join(LR_UNITS)}, got {self.lr_unit!r}")
        need(list(self.milestones) == sorted(set(self.milestones)) and all(m >= 1 for m in self.milestones),
             f"milestones must be increasing positive epochs, got {list(self.milestones)}")
        need(self.gamma > 0, f"gamma must be > 0, got {self.gamma}")
        need(self.cutout is None or self.cutout >= 0, f"cutout must be ≥ 0, got {self.cutout}")
        need(all(b >= 0 for b in self.at_beta), f"at_beta values must be ≥ 0, got {list(self.at_beta)}")
        need(0 <= self.kd_alpha <= 1, f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        need(self.kd_temperature > 0, f"kd_temperature must be > 0, got {self.kd_temperature}")
        need(self.device in ("auto", "cpu") or self.device.startswith("cuda"),
             f"device must be auto, cpu or cuda[:N], got {self.device!r}")

    @property
    def uses_at(self) -> bool:
        return any(b > 0 for b in self.at_beta)

    @property
    def uses_teacher(self) -> bool:
        return self.uses_at or self.kd_alpha > 0

    @property
    def effective_weight_decay(self) -> float:
        return self.weight_decay * (self.crs_ratio or 1.0)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise BlockswapError(f"unknown training setting {unknown[0]!r}")
        return cls(**d)


def learning_rate(config: TrainConfig, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The learning rate of `step` of `epoch` (both from 0)."""
    t = epoch + (step / steps_per_epoch if config.lr_unit == "iteration" else 0.0)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * t / config.epochs))
    return config.lr * config.gamma ** sum(t >= m for m in config.milestones)


# ------------------------------------------------------------------------------------------------- losses
def attention_map(x: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B×(H·W): the channel mean of x², L2-normalised per example."""
    return F.normalize(x.pow(2).mean(1).flatten(1), dim=1)


def at_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return (attention_map(student) - attention_map(teacher)).pow(2).mean()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(teacher/T) ‖ softmax(student/T)), mean over the batch; T² keeps gradients at scale."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="batchmean", log_target=True) * t * t


@dataclass(frozen=True)
class Objective:
    """CE, optionally mixed with KD by α, plus Σ β_i·AT_i. Returns (loss, parts) - parts unweighted."""
    at_beta: tuple[float, ...] = ()
    kd_alpha: float = 0.0
    kd_temperature: float = 4.0

    @classmethod
    def from_config(cls, c: TrainConfig) -> Objective:
        return cls(c.at_beta if c.uses_at else (), c.kd_alpha, c.kd_temperature)

    def betas(self, points: int) -> tuple[float, ...]:
        if len(self.at_beta) == 1:
            return self.at_beta * points
        if len(self.at_beta) != points:
            raise BlockswapError(f"at_beta has {len(self.at_beta)} values but the network has {points} "
                                 "attention points; give one value, or one per point")
        return self.at_beta

    def __call__(self, logits, points, labels, teacher_logits=None, teacher_points=None):
        ce = F.cross_entropy(logits, labels)
        parts = {"ce": ce}
        loss = ce
        if self.kd_alpha > 0:
            parts["kd"] = kd_loss(logits, teacher_logits, self.kd_temperature)
            loss = (1 - self.kd_alpha) * ce + self.kd_alpha * parts["kd"]
        if self.at_beta:
            terms = [at_loss(s, t) for s, t in zip(points, teacher_points)]
            parts["at"] = sum(terms)
            loss = loss + sum(b * term for b, term in zip(self.betas(len(points)), terms))
        return loss, parts


# --------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: Network, dataset, batch_size: int = 500, device=None) -> dict:
    """Top-1/top-5 error (%) and mean cross-entropy on `dataset`, in eval mode, without augmentation."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
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
    n = len(dataset)
    return {"top1_error": 100.0 * wrong1.item() / n, "top5_error": 100.0 * wrong5.item() / n,
            "loss": loss.item() / n, "n": n}


# -------------------------------------------------------------------------------------------- checkpoints
def _save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _read(path: str | os.PathLike, what: str, keys) -> dict:
    """torch.load(weights_only=True) with every failure turned into one message naming the file."""
    path = Path(path)
    if not path.is_file():
        raise BlockswapError(f"{path}: {what} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle of foreign classes, …: all mean "not our file"
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        # A weights-only refusal hides its cause (the class that is not allowed) on a later line;
        # torch's advice to load with weights_only=False is exactly what must not be done here.
        cause = next((ln for ln in lines if ln.startswith("WeightsUnpickler error")), None)
        reason = cause or lines[0].split(". ")[0]
        raise BlockswapError(f"{path}: not a readable {what} ({reason[:200]}); pass a checkpoint written by "
                             "`blockswap train` or `blockswap distill`") from None
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise BlockswapError(f"{path}: not a blockswap {what} (no {missing[0]!r} entry)")
    return obj


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A final checkpoint: {"genotype", "config", "state_dict", "metrics", "provenance"}."""
    return _read(path, "checkpoint", CHECKPOINT_KEYS)


def weights_sha256(state_dict: dict) -> str:
    """A hash of a network's weights: names, dtypes, shapes and bytes of every tensor. It identifies a teacher
    by what it computes, so re-saving the same weights (other metrics or provenance) keeps the hash."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_distinct_files(paths: dict[str, str | os.PathLike | None]) -> None:
    """Refuse two roles (e.g. --checkpoint and --teacher) naming one file, also through links or `..`."""
    named = [(what, Path(p)) for what, p in paths.items() if p is not None]
    for i, (what_a, a) in enumerate(named):
        for what_b, b in named[i + 1:]:
            same = os.path.samefile(a, b) if a.exists() and b.exists() else a.resolve() == b.resolve()
            if same:
                raise BlockswapError(f"{what_a} {a} and {what_b} {b} are the same file; "
                                     f"writing one would destroy the other: give {what_a} another path")


def describe(g: Genotype) -> str:
    return f"{g.model} {g.in_channels}×{g.image_size}² {g.num_classes} classes [{','.join(g.blocks)}] (id {g.id})"


def load_model(path: str | os.PathLike, expect: Genotype | None = None,
               device=None) -> tuple[Network, dict]:
    """The network of a final checkpoint, and the checkpoint; refuses one of another genotype."""
    ckpt = load_checkpoint(path)
    genotype = Genotype.from_dict(ckpt["genotype"], source=f"{path} (genotype)")
    if expect is not None and genotype != expect:
        raise BlockswapError(f"{path} holds {describe(genotype)}, not the expected {describe(expect)}")
    model = create_model(genotype)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise BlockswapError(f"{path}: its weights do not fit its genotype {genotype.id} "
                             f"({str(e).splitlines()[0]})") from None
    return (model.to(device) if device is not None else model), ckpt


def check_fits(genotype: Genotype, dataset, what: str = "genotype") -> None:
    """A genotype's input shape and classes must be the dataset's."""
    want = {"in_channels": dataset.in_channels, "image_size": dataset.image_size,
            "num_classes": dataset.num_classes}
    bad = [f"{k} {getattr(genotype, k)} (dataset: {v})" for k, v in want.items() if getattr(genotype, k) != v]
    if bad:
        raise BlockswapError(f"{what} {genotype.id} ({genotype.model}) is shaped for another dataset than "
                             f"{dataset.name}: {', '.join(bad)}; make it with "
                             f"--in-channels {want['in_channels']} --image-size {want['image_size']} "
                             f"--num-classes {want['num_classes']}")


def _rng_state(device: torch.device) -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_resume(path: Path, genotype: Genotype, config: TrainConfig, teacher_id: str | None,
                 teacher_sha256: str | None = None) -> dict:
    state = _read(path, "resume checkpoint", ("format", "genotype", "config", "epoch", "step"))
    if state["format"] != RESUME_FORMAT:
        raise BlockswapError(f"{path}: resume checkpoint format {state['format']!r}, expected {RESUME_FORMAT!r}")
    saved = Genotype.from_dict(state["genotype"], source=f"{path} (genotype)")
    fix = f"delete {path} to start afresh, or pass --resume with another path"
    if saved != genotype:
        raise BlockswapError(f"{path} is the resume checkpoint of {describe(saved)}, but this run trains "
                             f"{describe(genotype)}; {fix}")
    now = config.to_dict()
    diffs = [f"{k}: {state['config'].get(k)!r} there, {now[k]!r} now" for k in now
             if k not in RUN_ONLY and state["config"].get(k) != now[k]]
    if diffs:
        raise BlockswapError(f"{path} was written with other settings ({'; '.join(diffs)}); {fix}")
    if state.get("teacher_id") != teacher_id:
        raise BlockswapError(f"{path} was written with teacher {state.get('teacher_id')}, "
                             f"this run has {teacher_id}; {fix}")
    if state.get("teacher_sha256") != teacher_sha256:
        raise BlockswapError(f"{path} was written while learning from a teacher with other weights (sha256 "
                             f"{str(state.get('teacher_sha256'))[:12]} there, {teacher_sha256[:12]} now): the "
                             f"teacher was retrained or replaced since; delete {path} to restart this student "
                             "from scratch with the new teacher, or put the old teacher back")
    return state


# ---------------------------------------------------------------------------------------------- signals
class Preempted(Exception):
    """Raised after SIGTERM/SIGUSR1 once the resume checkpoint is written; exit with `exit_status`."""

    def __init__(self, signum: int, resume_path: Path, epoch: int, step: int):
        self.exit_status = 128 + signum
        self.resume_path = resume_path
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} in epoch {epoch + 1} after {step} steps; resume checkpoint "
                         f"written to {resume_path}; run the same command again to resume")


@contextlib.contextmanager
def _stop_requests():
    """Record (not act on) SIGTERM/SIGUSR1, so the loop can stop between steps; restore handlers after."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield received
        return
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# --------------------------------------------------------------------------------------------- training
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


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


@dataclass
class _Tally:
    """Sums over the training batches of one epoch (per-example), kept in the resume file mid-epoch."""
    sums: dict = field(default_factory=dict)
    wrong: int = 0
    n: int = 0
    seconds: float = 0.0

    def add(self, values: dict, wrong: int, n: int):
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.wrong += wrong
        self.n += n

    def to_dict(self):
        return dataclasses.asdict(self)


def train_step(model: Network, optimizer: torch.optim.Optimizer, objective: Objective, images: torch.Tensor,
               labels: torch.Tensor, lr: float, teacher: Network | None = None) -> dict[str, float]:
    """One SGD step at `lr`; returns the loss, its unweighted parts and the count of wrong top-1 predictions.
    A non-finite loss is returned without stepping, so that the caller can stop with the weights intact."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    t_logits = t_points = None
    if teacher is not None:
        with torch.no_grad():
            t_logits, t_points = teacher(images)
    logits, points = model(images)
    loss, parts = objective(logits, points, labels, t_logits, t_points)
    wrong = (logits.argmax(1) != labels).sum()
    # One host sync per step for all the numbers.
    numbers = torch.stack([t.detach().double() for t in (loss, *parts.values(), wrong)]).tolist()
    values = dict(zip(["loss", *parts, "wrong"], numbers))
    if math.isfinite(values["loss"]):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return values


def _check_points(model: Network, teacher: Network, genotype: Genotype, device) -> None:
    """AT pairs attention points one to one: same number, same spatial sizes."""
    x = torch.zeros(1, genotype.in_channels, genotype.image_size, genotype.image_size, device=device)
    model.eval()
    with torch.no_grad():
        s, t = [p.shape[-2:] for p in model(x)[1]], [p.shape[-2:] for p in teacher(x)[1]]
    model.train()
    if s != t:
        raise BlockswapError(f"attention transfer needs matching attention points, but the student has "
                             f"{[tuple(p) for p in s]} and the teacher {[tuple(p) for p in t]}")


def train(config: TrainConfig, genotype: Genotype | str, *, out_checkpoint: str | os.PathLike,
          metrics_path: str | os.PathLike | None = None, resume_path: str | os.PathLike | None = None,
          teacher: str | os.PathLike | None = None, teacher_genotype: Genotype | None = None,
          block: str = "Conv", labels: dict[str, str] | None = None) -> dict:
    """Train `genotype` (or, given a model name, that model with every block `block`, shaped for the dataset).

    `teacher`: a final checkpoint, needed when config has AT or KD (checked against `teacher_genotype`
    if given). Resumes from `resume_path` (default `<out_checkpoint>.resume`) if it exists. Writes the
    final checkpoint and `metrics_path` atomically and returns the metrics; `labels` (e.g. method=teacher,
    for the report) are copied into them.
    """
    started = time.perf_counter()
    threads = config.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    device = resolve_device(config.device)
    out_checkpoint = Path(out_checkpoint)
    resume_path = Path(resume_path) if resume_path else out_checkpoint.with_name(out_checkpoint.name + ".resume")
    check_distinct_files({"checkpoint": out_checkpoint, "metrics": metrics_path, "resume": resume_path,
                          "teacher": teacher})

    train_set = load_dataset(config.dataset, config.data_dir, "train", config.subset, config.subset_seed)
    test_set = load_dataset(config.dataset, config.data_dir, "test", config.test_subset, config.subset_seed)
    if isinstance(genotype, str):
        genotype = Genotype.uniform(genotype, block, in_channels=train_set.in_channels,
                                    num_classes=train_set.num_classes, image_size=train_set.image_size)
    check_fits(genotype, train_set)
    if device.type == "cuda" and hasattr(train_set, "to"):  # in-memory sets live on the GPU: no copies
        train_set, test_set = train_set.to(device), test_set.to(device)
    augment = default_augment(train_set, True, **({} if config.cutout is None else {"cutout": config.cutout}))

    teacher_net, teacher_info, teacher_sha256 = None, None, None
    if config.uses_teacher:
        if teacher is None:
            raise BlockswapError("AT (at_beta) or KD (kd_alpha) is on but no teacher checkpoint was given")
        teacher_net, tckpt = load_model(teacher, expect=teacher_genotype, device=device)
        tg = Genotype.from_dict(tckpt["genotype"])
        check_fits(tg, train_set, what=f"teacher {teacher}: genotype")
        if tckpt["config"].get("dataset") != config.dataset:
            raise BlockswapError(f"teacher {teacher} was trained on {tckpt['config'].get('dataset')}, "
                                 f"this run trains on {config.dataset}")
        teacher_net.eval().requires_grad_(False)
        teacher_sha256 = weights_sha256(tckpt["state_dict"])
        teacher_info = {"checkpoint": str(teacher), "genotype_id": tg.id, "model": tg.model,
                        "params": analytic(tg).params,
                        "test_top1_error": tckpt["metrics"].get("test_top1_error")}
    elif teacher is not None:
        raise BlockswapError("a teacher was given but neither AT (at_beta > 0) nor KD (kd_alpha > 0) is on")
    teacher_id = teacher_info and teacher_info["genotype_id"]

    steps = len(train_set) // config.batch_size
    if steps == 0:
        raise BlockswapError(f"{len(train_set)} training examples are fewer than batch size {config.batch_size}")

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)  # seeds CUDA too
    model = create_model(genotype, device)
    objective = Objective.from_config(config)
    betas = list(objective.betas(_points(genotype))) if objective.at_beta else []  # checks the count early
    if teacher_net is not None and betas:
        _check_points(model, teacher_net, genotype, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.effective_weight_decay)

    epoch, step, history, tally, elapsed, resumes = 0, 0, [], _Tally(), 0.0, 0
    if resume_path.exists():
        state = _read_resume(resume_path, genotype, config, teacher_id, teacher_sha256)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        epoch, step, history = state["epoch"], state["step"], list(state["metrics"])
        tally = _Tally(**state["tally"]) if state.get("tally") else _Tally()
        elapsed, resumes = state["elapsed_s"], state["resumes"] + 1
        _log(f"resuming from {resume_path}: epoch {epoch + 1}, step {step} of {steps}")

    def write_resume(at_epoch, at_step, partial):
        _save({"format": RESUME_FORMAT, "genotype": genotype.to_dict(), "config": config.to_dict(),
               "teacher_id": teacher_id, "teacher_sha256": teacher_sha256, "epoch": at_epoch, "step": at_step,
               "scheduler": {"schedule": config.schedule, "lr_unit": config.lr_unit, "epoch": at_epoch,
                             "step": at_step},
               "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": _rng_state(device),
               "metrics": history, "tally": partial.to_dict() if partial else None,
               "elapsed_s": elapsed + time.perf_counter() - started, "resumes": resumes}, resume_path)

    _log(f"training {genotype.model} {genotype.id} ({analytic(genotype).params:,} params) on {len(train_set)} "
         f"{config.dataset} examples, {config.epochs} epochs of {steps} steps, {device}, {threads} threads"
         + (f", teacher {teacher_info['model']} {teacher_id}" if teacher_info else ""))
    with _stop_requests() as stop:
        while epoch < config.epochs:
            tick = time.perf_counter()
            batches = iterate_batches(train_set, config.batch_size, train=True, seed=config.seed, epoch=epoch,
                                      device=device, augment=augment)
            for _ in range(step):  # mid-epoch resume: replay the random draws of the finished steps
                next(batches)
            bar = tqdm(total=steps, initial=step, desc=f"epoch {epoch + 1}/{config.epochs}", file=sys.stderr,
                       leave=False, disable=not config.progress, dynamic_ncols=True)
            model.train()
            for images, targets in batches:
                if stop:
                    tally.seconds += time.perf_counter() - tick
                    write_resume(epoch, step, tally)
                    bar.close()
                    raise Preempted(stop[0], resume_path, epoch, step)
                lr = learning_rate(config, epoch, step, steps)
                values = train_step(model, optimizer, objective, images, targets, lr, teacher_net)
                if not math.isfinite(values["loss"]):
                    raise BlockswapError(f"the training loss became {values['loss']} in epoch {epoch + 1}, step "
                                         f"{step + 1} (lr {lr:g}); lower --lr, or check the data")
                wrong = int(values.pop("wrong"))
                tally.add(values, wrong, len(targets))
                step += 1
                bar.update()
                bar.set_postfix(loss=f"{values['loss']:.3f}", refresh=False)
            bar.close()

            last = epoch + 1 == config.epochs
            test = (evaluate(model, test_set, config.eval_batch_size, device)
                    if last or (epoch + 1) % config.eval_every == 0 else None)
            if test and not math.isfinite(test["loss"]):
                raise BlockswapError(f"the test loss became {test['loss']} after epoch {epoch + 1} (lr "
                                     f"{learning_rate(config, epoch, 0, steps):g}): the run diverged; lower --lr, "
                                     "or check the data")
            record = {"epoch": epoch + 1, "lr": learning_rate(config, epoch, 0, steps),
                      **{f"train_{k}": v / tally.n for k, v in tally.sums.items()},
                      "train_top1_error": 100.0 * tally.wrong / tally.n,
                      "test_loss": test and test["loss"], "test_top1_error": test and test["top1_error"],
                      "test_top5_error": test and test["top5_error"],
                      "seconds": tally.seconds + time.perf_counter() - tick}
            history.append(record)
            epoch, step, tally = epoch + 1, 0, _Tally()
            write_resume(epoch, 0, None)
            test_text = f"test error {record['test_top1_error']:.2f}% (top-5 {record['test_top5_error']:.2f}%)" \
                if test else "not tested"
            _log(f"epoch {epoch}/{config.epochs}: lr {record['lr']:.4g} loss {record['train_loss']:.4f} "
                 f"train error {record['train_top1_error']:.2f}% {test_text} [{record['seconds']:.1f}s]")
            if stop and epoch < config.epochs:
                raise Preempted(stop[0], resume_path, epoch, 0)

    wall = elapsed + time.perf_counter() - started
    final = history[-1]
    prov = provenance(config.to_dict(), config.seed, str(device), wall)
    prov.update(threads=threads, resumes=resumes)
    metrics = {
        "labels": dict(labels or {}), "genotype_id": genotype.id, "genotype": genotype.to_dict(),
        **analytic(genotype).to_dict(),
        "dataset": config.dataset, "train_examples": len(train_set), "test_examples": len(test_set),
        "teacher": teacher_info,
        "objective": {"at_beta": betas, "kd_alpha": config.kd_alpha,
                      "kd_temperature": config.kd_temperature if config.kd_alpha else None},
        "effective_weight_decay": config.effective_weight_decay,
        "epochs": history,
        "test_top1_error": final["test_top1_error"], "test_top5_error": final["test_top5_error"],
        "test_loss": final["test_loss"], "train_top1_error": final["train_top1_error"],
        "wall_time_s": wall, "provenance": prov,
    }
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _save({"genotype": genotype.to_dict(), "config": config.to_dict(), "state_dict": state_dict,
           "metrics": metrics, "provenance": prov}, out_checkpoint)
    if metrics_path:
        write_json(metrics_path, metrics)
    resume_path.unlink(missing_ok=True)
    return metrics


def _points(genotype: Genotype) -> int:
    """Number of attention points: one per group of blocks."""
    return len({s.group for s in genotype.architecture.slots(genotype.image_size)})
