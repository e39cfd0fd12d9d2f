"""Detection training settings (`DetectTrainConfig`), without torch: the CLI builds its options from them.

The recipe's defaults are torchvision's Mask R-CNN schedule (26 epochs; SGD, momentum 0.9, weight decay
1e-4, lr 0.02 for 16 images a step, ×0.1 at epochs 16 and 22; a linear warm-up over the first
min(1000, steps − 1) steps from 0.001·lr). Another batch size wants the lr scaled with it (0.00125 per
image). The lr is a pure function of (epoch, step) (`recipe.learning_rate`), so a resumed run needs no
scheduler object: the resume file records the position only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..core.recipe import SCHEDULES, Settings, setting, shared


@dataclass(frozen=True)
class DetectTrainConfig(Settings):
    """How a detector is trained; saved with its checkpoints and metrics."""
    what = "detection training"
    epochs: int = setting(26, "training epochs (torchvision's Mask R-CNN schedule: 26)")
    batch_size: int = setting(16, "images per step (torchvision and the paper: 16, 2 on each of 8 GPUs)")
    lr: float = setting(0.02, "peak SGD learning rate; scale it with the batch size (torchvision: 0.02 for 16 "
                        "images; from scratch on the slim preset, 0.02 with 4 images diverges)")
    momentum: float = shared("momentum")
    weight_decay: float = setting(1e-4, "L2 weight decay of every parameter")
    schedule: str = setting("step", "step (×gamma at milestones) or cosine (to 0 at the last epoch)",
                            choices=SCHEDULES)
    milestones: tuple[int, ...] = setting((16, 22), "epochs where the step schedule multiplies the lr by gamma",
                                          "int_list")
    gamma: float = setting(0.1, "step-schedule factor")
    clip_grad_norm: float | None = setting(None, "clip the gradients' global ℓ2 norm to this before each step "
                                           "(default: no clipping, as torchvision)", float)
    warmup_iters: int = shared("warmup_iters", default=1000)
    warmup_factor: float = shared("warmup_factor")
    eval_every: int = shared("eval_every")
    eval_batch_size: int = setting(2, "images per evaluation step (padding to a batch can move AP slightly)")
    workers: int = setting(0, "data-loading processes (0: load in the training process)")
    seed: int = shared("seed")
    device: str = shared("device")
    threads: int | None = shared("threads")
    progress: bool = shared("progress")
    # Added after results existed: per epoch, as torchvision, and then neither recorded nor passed by the workflow.
    lr_unit: str = shared("lr_unit", recorded=False, flag_if_set=True)

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        self._validate()

    def _validate(self):
        need = self._need
        self._check_at_least_one("epochs", "batch_size", "eval_batch_size", "eval_every")
        need(self.workers >= 0 and self.seed >= 0, "workers and seed must be ≥ 0")
        self._check_at_least_one("threads", optional=True)
        self._check_finite(("lr", "momentum", "weight_decay", "gamma", "warmup_factor", "clip_grad_norm"))
        self._check_sgd()
        self._check_schedule()
        need(self.clip_grad_norm is None or self.clip_grad_norm > 0,
             f"clip_grad_norm must be > 0, got {self.clip_grad_norm}")
        self._check_device()


FIELDS = {f.name: f for f in dataclasses.fields(DetectTrainConfig)}
