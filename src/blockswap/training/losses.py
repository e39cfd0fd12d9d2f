"""The training objective: cross-entropy, optionally mixed with knowledge distillation (KD), plus attention
transfer (AT).

    loss = (1 - α)·CE(s, y) + α·KD(s, t) + Σ_i β_i·AT_i
    AT_i = mean over batch and positions of (at(student_i) - at(teacher_i))², at(x) = L2-normalise over
           positions of the channel mean of x², per example (Zagoruyko & Komodakis)
    KD   = T²·KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch (Hinton et al.; the reference
           Moonshine code). Written "KL(student/T ‖ teacher/T)", it is the same term: the teacher's
           softened distribution is the target.
α = 0 switches KD off, an empty β list switches AT off. β has one value per attention point (3 for WRN, 4
for ResNet): one number means the same β at every point (BlockSwap CIFAR: 1000 at 3 points; ImageNet: 750
at 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.errors import BlockswapError
from ..core.recipe import FIELDS, TrainConfig


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
    at_beta: tuple[float, ...] = FIELDS["at_beta"].default
    kd_alpha: float = FIELDS["kd_alpha"].default
    kd_temperature: float = FIELDS["kd_temperature"].default

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
