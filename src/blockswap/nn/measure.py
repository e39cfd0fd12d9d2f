"""Params, Ops and MACs of a built network, counted by forward hooks (the check on `counting.analytic`).

Same conventions as `counting` (BlockSwap Table 2's "Ops"), where the rule is stated: Ops = conv + linear
multiply-adds + linear bias adds + the element count entering every `nn.ReLU` (the skeleton's; a cheap module's
`blocks.InnerReLU` is not one), for one image. A structured replacement's own weights (factors, or a dense
weight it materialises) are applied through `structured.Pointwise`, counted like a 1×1 conv.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.counting import Counts
from ..core.genotype import Genotype
from .structured import Pointwise


def measured(model: nn.Module, g: Genotype) -> Counts:
    """Counts of a built network for one image of the genotype's shape."""
    return measure(model, (1, g.in_channels, g.image_size, g.image_size))


def measure(module: nn.Module, input_shape: tuple[int, ...]) -> Counts:
    """Parameters summed; Ops/MACs by forward hooks on one zero input of `input_shape`.

    Exactly nn.ReLU counts as a ReLU: the InnerReLU of cheap modules does not, as in the papers' counter.
    """
    params = sum(p.numel() for p in module.parameters())
    totals = {"macs": 0, "other": 0}

    def on_conv(m: nn.Conv2d, inp, out):
        kernel = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        totals["macs"] += out[0].numel() * kernel

    def on_pointwise(m: Pointwise, inp, out):
        totals["macs"] += out[0].numel() * inp[1].shape[1]

    def on_linear(m: nn.Linear, inp, out):
        totals["macs"] += m.in_features * m.out_features
        totals["other"] += m.out_features if m.bias is not None else 0

    def on_relu(m, inp, out):
        totals["other"] += inp[0][0].numel()

    hooks = {nn.Conv2d: on_conv, Pointwise: on_pointwise, nn.Linear: on_linear, nn.ReLU: on_relu}
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
