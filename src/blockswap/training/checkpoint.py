"""Checkpoints: the final one a run writes, and the resume file that lets a stopped run continue exactly.

A final checkpoint {genotype, config, state_dict, metrics, provenance} holds plain types and CPU tensors
only, so `torch.load(path, weights_only=True)` reads it. The resume file (`ResumeFile`) holds model,
optimiser, the position (epoch, step), RNG states, the metrics so far and (amp fp16 only) the loss scale -
nothing about the data pipeline, whose batch order and augmentation depend only on (seed, epoch). It
identifies the run by its genotype, its settings (`recipe.RUN_ONLY` aside) and the teacher's weights
(sha256), and refuses to resume a run that differs in any of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.errors import BlockswapError
from ..core.files import atomic_path
from ..core.genotype import Genotype
from ..core.recipe import RUN_ONLY, TrainConfig, differences
from ..nn.models import Network, create_model, shaped_like

RESUME_FORMAT = "blockswap-resume-1"
CHECKPOINT_KEYS = ("genotype", "config", "state_dict", "metrics", "provenance")


def save(obj: dict, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read(path: str | os.PathLike, what: str, keys) -> dict:
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
    return read(path, "checkpoint", CHECKPOINT_KEYS)


def weights_sha256(state_dict: dict) -> str:
    """A hash of a network's weights: names, dtypes, shapes and bytes of every tensor. It identifies a teacher
    by what it computes, so re-saving the same weights (other metrics or provenance) keeps the hash."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def describe(g: Genotype) -> str:
    return f"{g.model} {g.in_channels}×{g.image_size}² {g.num_classes} classes [{','.join(g.blocks)}] (id {g.id})"


def load_model(path: str | os.PathLike, expect: Genotype | None = None,
               device=None) -> tuple[Network, dict]:
    """The network of a final checkpoint, in eval mode (what a user of the weights wants: batch-norm's running
    statistics, not the batch's), and the checkpoint; refuses one of another genotype. Its forward returns
    (logits, attention maps); `blockswap.load` gives the logits alone. Training calls `.train()` itself."""
    ckpt = load_checkpoint(path)
    genotype = Genotype.from_dict(ckpt["genotype"], source=f"{path} (genotype)")
    if expect is not None and genotype != expect:
        raise BlockswapError(f"{path} holds {describe(genotype)}, not the expected {describe(expect)}")
    model = create_model(genotype)
    if ckpt.get("pruned"):  # structurally pruned: the genotype's layers with the checkpoint's channel counts
        shaped_like(model, ckpt["state_dict"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise BlockswapError(f"{path}: its weights do not fit its genotype {genotype.id} "
                             f"({str(e).splitlines()[0]})") from None
    model.eval()
    return (model.to(device) if device is not None else model), ckpt


# ------------------------------------------------------------------------------------------------ resume
@dataclass
class Tally:
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


@dataclass
class Progress:
    """Where a run stands: the next (epoch, step), the epochs' metrics so far, the unfinished epoch's tally,
    the wall time of earlier attempts and how many times it was resumed."""
    epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    elapsed_s: float = 0.0
    resumes: int = 0


def rng_state(device: torch.device) -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass(frozen=True)
class ResumeFile:
    """The resume file of one run, identified by what it trains and how."""
    path: Path
    genotype: Genotype
    config: TrainConfig
    teacher_id: str | None = None
    teacher_sha256: str | None = None
    init_sha256: str | None = None  # a pruned net's starting weights

    def save(self, model: Network, optimizer: torch.optim.Optimizer, progress: Progress, elapsed_s: float,
             mid_epoch: bool, device: torch.device, scaler: torch.amp.GradScaler | None = None) -> None:
        """Write atomically; `elapsed_s` is the wall time of all attempts so far; `scaler`: fp16 training's
        loss scale, which a resumed run continues from (kept only when there is one)."""
        p = progress
        save({"format": RESUME_FORMAT, "genotype": self.genotype.to_dict(), "config": self.config.to_dict(),
              "teacher_id": self.teacher_id, "teacher_sha256": self.teacher_sha256,
              **({} if self.init_sha256 is None else {"init_sha256": self.init_sha256}),
              "epoch": p.epoch, "step": p.step,
              "scheduler": {"schedule": self.config.schedule, "lr_unit": self.config.lr_unit, "epoch": p.epoch,
                            "step": p.step},
              "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(device),
              "metrics": p.history, "tally": dataclasses.asdict(p.tally) if mid_epoch else None,
              "elapsed_s": elapsed_s, "resumes": p.resumes,
              **({} if scaler is None else {"scaler": scaler.state_dict()})}, self.path)

    def load(self, model: Network, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler | None = None) -> Progress:
        """Restore model, optimiser, RNGs (and `scaler`) from the file, after checking it belongs to this run."""
        state = self._check(read(self.path, "resume checkpoint", ("format", "genotype", "config", "epoch",
                                                                  "step")))
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        return Progress(state["epoch"], state["step"], list(state["metrics"]), Tally(**(state.get("tally") or {})),
                        state["elapsed_s"], state["resumes"] + 1)

    def _check(self, state: dict) -> dict:
        path = self.path
        if state["format"] != RESUME_FORMAT:
            raise BlockswapError(f"{path}: resume checkpoint format {state['format']!r}, expected {RESUME_FORMAT!r}")
        saved = Genotype.from_dict(state["genotype"], source=f"{path} (genotype)")
        fix = f"delete {path} to start afresh, or pass --resume with another path"
        if saved != self.genotype:
            raise BlockswapError(f"{path} is the resume checkpoint of {describe(saved)}, but this run trains "
                                 f"{describe(self.genotype)}; {fix}")
        implied = TrainConfig.unrecorded_defaults()  # what a setting left out of either record means
        now, then = {**implied, **self.config.to_dict()}, {**implied, **state["config"]}
        diffs = differences(then, now, keys=[k for k in now if k not in RUN_ONLY])
        if diffs:
            raise BlockswapError(f"{path} was written with other settings ({'; '.join(diffs)}); {fix}")
        if state.get("teacher_id") != self.teacher_id:
            raise BlockswapError(f"{path} was written with teacher {state.get('teacher_id')}, "
                                 f"this run has {self.teacher_id}; {fix}")
        if state.get("teacher_sha256") != self.teacher_sha256:
            raise BlockswapError(f"{path} was written while learning from a teacher with other weights (sha256 "
                                 f"{str(state.get('teacher_sha256'))[:12]} there, {str(self.teacher_sha256)[:12]} "
                                 f"now): the teacher was retrained or replaced since; delete {path} to restart this "
                                 "student from scratch with the new teacher, or put the old teacher back")
        if state.get("init_sha256") != self.init_sha256:
            raise BlockswapError(f"{path} was written for a pruned net with other starting weights; {fix}")
        return state
