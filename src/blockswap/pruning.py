"""Structural pruning to a budget with Torch-Pruning (Fang et al., "DepGraph: Towards Any Structural Pruning",
CVPR 2023): the other answer to "fit this trained network under N params", set beside block substitution.

`prune_to` removes whole channels of the teacher - every layer coupled to a channel (the residual stream's
convs, BNs and the classifier's inputs) together, as DepGraph groups them. It prunes globally: the channels of
all groups are ranked together (each group's importances normalised by their mean) and the lowest `ratio` of
them removed, at most 90% of any one group, so the count falls one channel at a time and the ratio found by
bisection lands the pruned net just under `budget` (within 1% on the embedded WRN-16-1: one ratio for every
group moves all 16-channel layers at once and fell 4-7% short). The criterion ranks the channels of a group:
  magnitude  the group's L2 weight norm (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017);
  taylor     first-order Taylor |w·∂L/∂w| on one training minibatch (Molchanov et al., CVPR 2019).
The classifier's outputs are never pruned. The result is a checkpoint of the teacher's genotype with fewer
channels and `"pruned"` set, which `checkpoint.load_model` rebuilds and `train(init=...)` trains on.

Torch-Pruning is an optional dependency: `pip install "blockswap[prune]"` (pinned in pyproject.toml).
"""

from __future__ import annotations

import copy
import os

import torch
import torch.nn.functional as F

from .checkpoint import load_model, save
from .errors import BlockswapError
from .files import provenance
from .genotype import Genotype
from .measure import measured

CRITERIA = ("magnitude", "taylor")
BISECTION_STEPS = 30  # the ratio to within 1e-9: far below one channel of any group
MAX_GROUP_RATIO = 0.9  # no group loses more than 90% of its channels (none is emptied)


def torch_pruning():
    try:
        import torch_pruning
    except ImportError:
        raise BlockswapError('pruning needs Torch-Pruning: pip install "blockswap[prune]" '
                             "(torch-pruning==1.6.1)") from None
    return torch_pruning


def prune(net: torch.nn.Module, genotype: Genotype, ratio: float, criterion: str, batch) -> torch.nn.Module:
    """A copy of `net` with the `ratio` of its prunable channels least important by `criterion` removed."""
    tp = torch_pruning()
    if criterion not in CRITERIA:
        raise BlockswapError(f"unknown pruning criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    net = copy.deepcopy(net).eval()
    x, y = batch
    example = torch.zeros(1, genotype.in_channels, genotype.image_size, genotype.image_size, device=x.device)
    if criterion == "taylor":
        importance = tp.importance.GroupTaylorImportance()
        net.zero_grad()
        F.cross_entropy(net(x)[0], y).backward()
    else:
        importance = tp.importance.GroupMagnitudeImportance(p=2)
    classifier = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    pruner = tp.pruner.MetaPruner(net, example, importance=importance, pruning_ratio=ratio, global_pruning=True,
                                  max_pruning_ratio=MAX_GROUP_RATIO, ignored_layers=[classifier],
                                  output_transform=lambda out: out[0])
    pruner.step()
    net.zero_grad(set_to_none=True)
    return net


def check_metric(metric: str) -> None:
    """Pruning budgets count params or MACs: Torch-Pruning has no latency model."""
    if metric not in ("params", "macs"):
        raise BlockswapError(f"pruning budgets count params or macs, not {metric}: Torch-Pruning has no latency "
                             "model; use --metric params or macs with the prune methods")


def prune_to(teacher: str | os.PathLike, budget: float, criterion: str, batch, out_checkpoint: str | os.PathLike,
             metric: str = "params") -> dict:
    """Prune the teacher checkpoint to at most `budget` `metric` (params or macs) and save it; returns its record."""
    check_metric(metric)
    net, ckpt = load_model(teacher)
    genotype = Genotype.from_dict(ckpt["genotype"])
    teacher_counts = measured(net, genotype)
    full = getattr(teacher_counts, metric)
    if budget >= full:
        raise BlockswapError(f"budget {budget:,.0f} {metric} is not below the teacher's {full:,}")

    def count(ratio: float) -> int:
        return getattr(measured(prune(net, genotype, ratio, criterion, batch), genotype), metric)

    # count(lo) > budget; the answer is the smallest ratio whose count fits.
    lo, hi = 0.0, MAX_GROUP_RATIO
    if count(hi) > budget:
        raise BlockswapError(f"budget {budget:,.0f} {metric} is below what pruning 90% of every group of "
                             f"{genotype.model} reaches ({count(hi):,})")
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) > budget else (lo, mid)
    pruned = prune(net, genotype, hi, criterion, batch)
    counts = measured(pruned, genotype)
    record = {"criterion": criterion, "ratio": hi, "metric": metric, "budget": budget, **counts.to_dict(),
              "teacher": str(teacher), "teacher_params": teacher_counts.params}
    state = {k: v.detach().cpu().contiguous() for k, v in pruned.state_dict().items()}
    save({"genotype": genotype.to_dict(), "config": ckpt["config"], "state_dict": state,
          "metrics": {**record, "test_top1_error": None}, "provenance": provenance(record, None, "cpu"),
          "pruned": record}, out_checkpoint)
    return record
