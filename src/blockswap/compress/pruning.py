"""Structural pruning to a budget with Torch-Pruning (Fang et al., "DepGraph: Towards Any Structural Pruning",
CVPR 2023): the other answer to "fit this trained network under N params", set beside block substitution.

`prune_to` removes whole channels of the teacher - every layer coupled to a channel (the residual stream's
convs, BNs and the classifier's inputs) together, as DepGraph groups them. It prunes globally: the channels of
all groups are ranked together (each group's importances normalised by their mean) and the lowest `ratio` of
them removed, at most 90% of any one group, so the count falls one channel at a time and the ratio found by
bisection lands the pruned net just under `budget` (within 1% on the embedded WRN-16-1: one ratio for every
group moves all 16-channel layers at once and fell 4-7% short); the bisection starts between the two
neighbouring ratios of a 0.05 grid where the count first fits. A latency budget is met by measurement: each
ratio's pruned net is timed whole (PyTorch eager, the latency table's batch size, this process's threads, the
median of `latency.REPEATS` runs), so the bisection lands where the measured median crosses the budget, within
the timing noise (a few percent on an idle CPU). `round_to` keeps every pruned group's channel count a multiple
of it (8 or 16, as vectorised CPU and GPU kernels want), which can move the count by up to that many channels
per group. The criterion ranks the channels of a group:
  magnitude  the group's L2 weight norm (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017);
  taylor     first-order Taylor |w·∂L/∂w| on one training minibatch (Molchanov et al., CVPR 2019).
The classifier's outputs are never pruned. The result is a checkpoint of the teacher's genotype with fewer
channels and `"pruned"` set, which `checkpoint.load_model` rebuilds and `train(init=...)` trains on.

Torch-Pruning is an optional dependency: `pip install "blockswap[prune]"` (pinned in pyproject.toml).
"""

from __future__ import annotations

import copy
import os
import statistics

import torch
import torch.nn.functional as F

from ..core.counting import units
from ..core.errors import BlockswapError
from ..core.files import provenance
from ..core.genotype import Genotype
from ..nn.latency import REPEATS, net_timings_us
from ..nn.measure import measured
from ..training.checkpoint import load_model, save

CRITERIA = ("magnitude", "taylor")
BISECTION_STEPS = 26  # the ratio to within 1e-9 (from the grid step): far below one channel of any group
LATENCY_BISECTION_STEPS = 6  # to within 1e-3: each step is a measurement, and below that the noise decides
MAX_GROUP_RATIO = 0.9  # no group loses more than 90% of its channels (none is emptied)
GRID_STEP = 0.05  # the ratios tried before the bisection


def torch_pruning():
    try:
        import torch_pruning
    except ImportError:
        raise BlockswapError('pruning needs Torch-Pruning: pip install "blockswap[prune]" '
                             "(torch-pruning==1.6.1)") from None
    return torch_pruning


def prune(net: torch.nn.Module, genotype: Genotype, ratio: float, criterion: str, batch,
          round_to: int | None = None) -> torch.nn.Module:
    """A copy of `net` with the `ratio` of its prunable channels least important by `criterion` removed (each
    group's remaining channels a multiple of `round_to`, where given)."""
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
                                  max_pruning_ratio=MAX_GROUP_RATIO, ignored_layers=[classifier], round_to=round_to,
                                  output_transform=lambda out: out[0])
    pruner.step()
    net.zero_grad(set_to_none=True)
    return net


def prune_to(teacher: str | os.PathLike, budget: float, criterion: str, batch, out_checkpoint: str | os.PathLike,
             metric: str = "params", table: dict | None = None, round_to: int | None = None) -> dict:
    """Prune the teacher checkpoint to at most `budget` `metric` (params, macs, or latency in µs as `table` times
    it: its batch size, on the batch's device) and save it; returns its record."""
    net, ckpt = load_model(teacher)
    genotype = Genotype.from_dict(ckpt["genotype"])
    teacher_counts = measured(net, genotype)
    device, unit = batch[0].device, units(metric)
    if metric == "latency" and table is None:
        raise BlockswapError("a latency budget needs the latency table it counts in")

    def cost(pruned: torch.nn.Module) -> float:
        if metric != "latency":
            return getattr(measured(pruned, genotype), metric)
        shape = (genotype.in_channels, genotype.image_size, genotype.image_size)
        return statistics.median(net_timings_us(pruned, shape, device, table["batch_size"], REPEATS))

    def pruned(ratio: float) -> torch.nn.Module:
        return prune(net, genotype, ratio, criterion, batch, round_to)

    full = cost(net)
    if budget >= full:
        raise BlockswapError(f"budget {budget:,.0f} {unit} is not below the teacher's {full:,.0f}"
                             + (" (measured)" if metric == "latency" else ""))
    # The smallest ratio of a coarse grid whose cost fits, then bisection below it: cost(lo) > budget >= cost(hi).
    # (Rounding makes the cost non-monotone near the largest ratios, where a group would round to no channels
    # and is left whole, so the largest ratio is not the cheapest.)
    lo, grid = 0.0, [round(GRID_STEP * i, 6) for i in range(1, round(MAX_GROUP_RATIO / GRID_STEP) + 1)]
    costs = []
    for hi in grid:
        costs.append(cost(pruned(hi)))
        if costs[-1] <= budget:
            break
        lo = hi
    else:
        measured_by = " measured" if metric == "latency" else ""
        raise BlockswapError(f"budget {budget:,.0f} {unit} is below what pruning up to 90% of every group of "
                             f"{genotype.model} reaches ({min(costs):,.0f}{measured_by}"
                             + (f", channels multiples of {round_to})" if round_to else ")"))
    for _ in range(LATENCY_BISECTION_STEPS if metric == "latency" else BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(pruned(mid)) > budget else (lo, mid)
    student = pruned(hi)
    record = {"criterion": criterion, "ratio": hi, "round_to": round_to, "metric": metric, "budget": budget,
              **measured(student, genotype).to_dict(), "teacher": str(teacher), "teacher_params": teacher_counts.params}
    if metric == "latency":
        record["measured_us"] = round(cost(student), 2)
    state = {k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}
    save({"genotype": genotype.to_dict(), "config": ckpt["config"], "state_dict": state,
          "metrics": {**record, "test_top1_error": None}, "provenance": provenance(record, None, "cpu"),
          "pruned": record}, out_checkpoint)
    return record
