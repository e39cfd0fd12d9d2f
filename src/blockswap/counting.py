"""Params and the papers' Ops, analytically from a genotype and measured on a built network.

Ops (spec §4) = conv multiply-adds + linear multiply-adds + linear bias adds + the element count of
every ReLU input + the element count of the final average-pool input, for one image.
MACs = conv + linear multiply-adds only (the ImageNet tables' convention).
The two ways must agree exactly; the tests check it for every block type at every position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import get_block
from .genotype import Genotype


@dataclass(frozen=True)
class Counts:
    params: int
    ops: int
    macs: int

    def to_dict(self) -> dict:
        return {"params": self.params, "ops": self.ops, "macs": self.macs}


def analytic(g: Genotype) -> Counts:
    """Counts from the genotype alone, without building the network."""
    arch = g.architecture
    slots = arch.slots(g.image_size)
    types = [get_block(n) for n in g.blocks]
    params = arch.fixed_params(g.in_channels, g.num_classes) + sum(
        arch.block_params(s, t) for s, t in zip(slots, types))
    fixed_ops, fixed_macs = arch.fixed_ops(g.in_channels, g.num_classes, g.image_size)
    ops = fixed_ops + sum(arch.block_ops(s, t) for s, t in zip(slots, types))
    macs = fixed_macs + sum(arch.block_macs(s, t) for s, t in zip(slots, types))
    return Counts(params, ops, macs)


def measured(model: nn.Module, g: Genotype) -> Counts:
    """Counts of a built network for one image of the genotype's shape."""
    return measure(model, (1, g.in_channels, g.image_size, g.image_size))


def measure(module: nn.Module, input_shape: tuple[int, ...]) -> Counts:
    """Parameters summed; Ops/MACs by forward hooks on one zero input of `input_shape`.

    Exactly nn.ReLU counts as a ReLU: MBConv's ReLU6 does not, as in the papers' counter.
    """
    params = sum(p.numel() for p in module.parameters())
    totals = {"macs": 0, "other": 0}

    def on_conv(m: nn.Conv2d, inp, out):
        kernel = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        totals["macs"] += out[0].numel() * kernel

    def on_linear(m: nn.Linear, inp, out):
        totals["macs"] += m.in_features * m.out_features
        totals["other"] += m.out_features if m.bias is not None else 0

    def on_elementwise(m, inp, out):  # ReLU and the final average pool: count input elements
        totals["other"] += inp[0][0].numel()

    hooks = {nn.Conv2d: on_conv, nn.Linear: on_linear, nn.ReLU: on_elementwise,
             nn.AdaptiveAvgPool2d: on_elementwise}
    handles = [m.register_forward_hook(hooks[type(m)]) for m in module.modules() if type(m) in hooks]
    was_training = module.training
    try:
        module.eval()
        device = next(module.parameters()).device
        with torch.no_grad():
            module(torch.zeros(*input_shape, device=device))
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return Counts(params, totals["macs"] + totals["other"], totals["macs"])


def slot_costs(g_model: str, types: list[str], image_size: int, in_channels: int, num_classes: int,
               metric: str = "params") -> tuple[int, list[dict[str, int]]]:
    """(fixed cost, per slot {type: cost}) for the types valid at each slot; the samplers' tables."""
    from .models import get_architecture

    arch = get_architecture(g_model)
    slots = arch.slots(image_size)
    if metric == "params":
        fixed = arch.fixed_params(in_channels, num_classes)
        cost = arch.block_params
    elif metric == "ops":
        fixed = arch.fixed_ops(in_channels, num_classes, image_size)[0]
        cost = arch.block_ops
    else:
        raise ValueError(f"metric must be 'params' or 'ops', got {metric!r}")
    table = []
    for s in slots:
        table.append({t: cost(s, get_block(t)) for t in types if get_block(t).is_valid(s.cin, s.cout)})
    return fixed, table
