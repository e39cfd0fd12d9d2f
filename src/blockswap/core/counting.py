"""Params and the papers' Ops, analytically from a genotype (no torch; `measure` counts a built network).

Ops (BlockSwap Table 2's column) = conv multiply-adds + linear multiply-adds + linear bias adds + the element
count entering each ReLU of the network's *skeleton* (each block's pre-activation ReLU, the ReLU between the two convs
of a per-conv block, a ResNet block's ReLU after the addition, the stem's and the head's), for one image.
Two things are not counted, because the papers' counter never saw them: activations *inside* a cheap
module (between a grouped conv and its 1×1, a bottleneck's, MBConv6's) - it counted ReLU modules only,
and the cheap modules applied their activations as functions - and the final average pool, which the
reference WRN applies as a function too. Built networks follow the same line: skeleton ReLUs are
`nn.ReLU` modules, a cheap module's are `blocks.InnerReLU`, which `measure` does not count.
With this rule the released CIFAR genotypes and the teacher, scaled-WRN and MBConv6 rows reproduce
Table 2's Ops exactly; counting the pool's input (8,192 per image on WRN-40-2) would print 66.0M for
the 289.2K genotype (paper 65.9M) and 231.8M for MBConv6 (paper 231.7M).
MACs = conv + linear multiply-adds only (the ImageNet tables' convention).
The two ways must agree exactly; the tests check it for every block type at every position.
Structured substitutions (Gray et al. 2019) count what their modules compute (`substitutions`: a dense weight
materialised once per forward pass costs NM per position); `published_macs` counts ACDC as the original did.
Gray et al. 2019's WRN-28-10 figures (5.246e9 full, 6.297e8 Sep) are Ops in this sense; plain MACs are 5.243e9/6.274e8.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .arch import get_architecture, middle
from .blocktypes import get_block
from .genotype import Genotype

COUNTED_METRICS = ("params", "ops", "macs")  # what a budget can count without measuring anything


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


def compression_ratio(g: Genotype) -> float:
    """CRS-wd's ratio (Gray et al. 2019): params of `g` / params of the same network with every block `Conv`."""
    return analytic(g).params / analytic(replace(g, blocks=("Conv",) * len(g.blocks))).params


def published_macs(g: Genotype) -> float:
    """MACs with structured 1×1s counted as the original did (ACDC: 4N' + 5N'·log2 N' per layer and position)."""
    arch, macs = g.architecture, analytic(g).macs
    for slot, name in zip(arch.slots(g.image_size), g.blocks):
        btype = get_block(name)
        if btype.substitution:  # a basic block's two convs are substituted, a bottleneck block's 3×3 (m → m)
            m = middle(slot, btype)
            for n, out in ((m, m),) if m else ((slot.cin, slot.cout), (slot.cout, slot.cout)):
                extra = (btype.substitution.published_macs(n, out, btype.kernel)
                         - btype.substitution.macs(n, out, btype.kernel))
                macs += extra * slot.out_size ** 2
    return macs


def slot_costs(g_model: str, types: list[str], image_size: int, in_channels: int, num_classes: int,
               metric: str = "params") -> tuple[int, list[dict[str, int]]]:
    """(fixed cost, per slot {type: cost}) for the types valid at each slot (of those the architecture's blocks
    take); the samplers' tables."""
    arch = get_architecture(g_model)
    slots = arch.slots(image_size)
    if metric == "params":
        fixed = arch.fixed_params(in_channels, num_classes)
        cost = arch.block_params
    elif metric in ("ops", "macs"):  # fixed_ops gives (Ops, MACs) of the stem and head
        fixed = arch.fixed_ops(in_channels, num_classes, image_size)[metric == "macs"]
        cost = arch.block_ops if metric == "ops" else arch.block_macs
    else:
        raise ValueError(f"metric must be one of {COUNTED_METRICS}, got {metric!r}")
    table = []
    for s in slots:
        table.append({t: cost(s, get_block(t)) for t in types if arch.invalid_reason(s, get_block(t)) is None})
    return fixed, table


def units(metric: str) -> str:
    """What a budget of `metric` counts, for a message: params, macs, ops, or µs for latency."""
    return "µs" if metric == "latency" else metric
