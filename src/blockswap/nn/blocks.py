"""Block types as nn.Modules: the module factory of each registered type, and WRN initialisation.

The types themselves (kinds, counts, validity) are data in `blocktypes`; this module only builds them.
A per-conv type's module replaces one 3×3 conv; a per-block type's module is the whole residual branch; a middle
type's is a bottleneck block's 3×3 at its (narrowed) width.
Structured substitutions (per-conv) are built by `structured`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..core.blocktypes import PER_BLOCK, BlockType
from ..core.errors import BlockswapError


def conv_init_(module: nn.Module) -> None:
    """WRN initialisation: conv weights N(0, sqrt(2/(k²·out))), BN γ=1 β=0, linear bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


class InnerReLU(nn.Module):
    """The ReLU inside a cheap module. Not an nn.ReLU, so the Ops counter skips it, as the papers' counter
    skipped the activations their cheap modules applied as functions (see `counting`)."""

    def forward(self, x):
        return F.relu(x)


def bn_relu(channels: int) -> list[nn.Module]:
    """BN and the skeleton's ReLU (counted in Ops)."""
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=False)]


def _bn_inner_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), InnerReLU()]


def build_module(btype: BlockType, cin: int, cout: int, stride: int) -> nn.Module:
    """The module of `btype` for (cin → cout, stride); an invalid width is a BlockswapError."""
    reason = btype.invalid_reason(cin, cout)
    if reason:
        raise BlockswapError(f"block type {btype.name!r} is invalid here: {reason}")
    k, d = btype.kernel, btype.dilation
    if btype.substitution:
        from .structured import build_substitution

        return build_substitution(btype.substitution, cin, cout, stride, k)
    pad = d * (k - 1) // 2  # keeps 'same' size: 1 for 3×3, 1 for the dilated 2×2
    if btype.expansion:
        h = btype.expansion * cin
        return nn.Sequential(
            nn.Conv2d(cin, h, 1, bias=False), *_bn_inner_relu(h),
            nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), *_bn_inner_relu(h),
            nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout))
    if btype.kind == PER_BLOCK:
        m = cout // btype.reduction
        return nn.Sequential(
            nn.Conv2d(cin, m, 1, bias=False), *_bn_inner_relu(m),
            nn.Conv2d(m, m, 3, stride, 1, groups=int(btype.groups(m)), bias=False), *_bn_inner_relu(m),
            nn.Conv2d(m, cout, 1, bias=False))
    if btype.separable:
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=int(btype.groups(cin)), bias=False), *_bn_inner_relu(cin),
            nn.Conv2d(cin, cout, 1, bias=False))
    # A plain conv, or a bottleneck's middle 3×3 in its groups.
    return nn.Conv2d(cin, cout, k, stride, pad, dilation=d, groups=int(btype.groups(cin)), bias=False)
