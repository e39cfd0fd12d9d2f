"""The registry of cheap block types, as data: kinds, analytic counts and validity (no torch).

Three kinds (BlockSwap §3, and the bottleneck ResNets'):
- "conv": replaces *each* of a residual block's 3×3 convs (a basic block's two, keeping its middle BN; a
  bottleneck block's one, between its 1×1s);
- "block": one module replaces the whole residual branch of a basic block (both convs and the middle BN);
- "middle": a bottleneck block's middle - its width divided by a factor (the 1×1s narrowed with it) and its 3×3
  grouped or depthwise, the 1×1 after it mixing the groups (ResNeXt's cardinality). Bottleneck blocks only.
The architecture says which kinds its blocks take (`arch.Architecture.kinds`).

Every type is one entry of a parametrised family: a grouped/separable conv whose group count is a
function of the width, a bottleneck with a reduction factor and such a grouped 3×3 in its middle, or a
structured substitution (Gray et al. 2019, per-conv: depthwise 3×3 → structured 1×1, or Shuffle's module for the
whole conv; `substitutions`) whose name carries its hyperparameter (`Generic_0.03`, `ACDC_12`: a registry
pattern, parsed and validated on lookup).
Each entry knows its analytic params and Ops for a given (in, out, stride, input size); `blocks`
builds its module (`blocks.build_module`) and `counting` checks the counts against the built modules.

A module's Ops are its multiply-adds: the activations inside a cheap module are not counted (as in the
original counter; `counting` states the rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import BlockswapError
from .registry import Registry, unknown_name_message
from .substitutions import COUNT_FAMILIES, FRACTION_FAMILIES, Substitution, parse

PER_CONV = "conv"
PER_BLOCK = "block"
MIDDLE = "middle"
KIND_WORDS = {PER_CONV: "per-conv", PER_BLOCK: "whole-branch", MIDDLE: "bottleneck-middle"}


def out_size(size: int, stride: int) -> int:
    """Spatial size after a 3×3 conv with padding 1 (and after the dilated 2×2 with padding 1)."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class BlockType:
    """One registered block type. `groups(c)` gives the group count of its 3×3 for c channels."""

    name: str
    kind: str  # PER_CONV, PER_BLOCK or MIDDLE
    family: str
    description: str
    groups: Callable[[int], float]  # may be fractional/zero for invalid widths
    reduction: int = 1  # bottleneck factor b (per-block: m = out / b; middle: m = the block's middle width / b)
    kernel: int = 3
    dilation: int = 1
    separable: bool = False  # per-conv: grouped 3×3 i→i, BN-ReLU, then 1×1 i→o
    expansion: int = 0  # MBConv: hidden = expansion·in
    substitution: Substitution | None = None  # structured: (depthwise k×k →) this replacement (Gray et al. 2019)

    # --- validity -------------------------------------------------------------------------------
    def invalid_reason(self, cin: int, cout: int) -> str | None:
        """Why this type cannot be built for (cin → cout), or None if it can."""
        if self.substitution:
            return self.substitution.invalid_reason(cin, cout)
        if self.kind == PER_BLOCK and self.expansion == 0:
            if cout % self.reduction:
                return f"{cout} output channels are not divisible by the bottleneck factor {self.reduction}"
            width = cout // self.reduction
        elif self.separable or self.kind == MIDDLE:
            width = cin
        else:
            return None
        g = self.groups(width)
        if g < 1 or g != int(g) or width % int(g) or (self.kind == MIDDLE and cout % int(g)):
            return f"a grouped conv on {width} channels cannot have {g:g} groups"
        return None

    def is_valid(self, cin: int, cout: int) -> bool:
        return self.invalid_reason(cin, cout) is None

    # --- analytic counts ------------------------------------------------------------------------
    def params(self, cin: int, cout: int) -> int:
        """Parameters of the module (not the block's input BN, middle BN or shortcut)."""
        k2 = self.kernel * self.kernel
        if self.substitution:
            return self.substitution.conv_params(cin, cout, self.kernel)
        if self.expansion:
            h = self.expansion * cin
            return cin * h + 2 * h + k2 * h + 2 * h + h * cout + 2 * cout
        if self.kind == PER_BLOCK:
            m = cout // self.reduction
            return cin * m + k2 * m * m // int(self.groups(m)) + m * cout + 4 * m
        if self.separable:
            return k2 * cin * cin // int(self.groups(cin)) + 2 * cin + cin * cout
        return k2 * cin * cout // int(self.groups(cin))

    def macs(self, cin: int, cout: int, stride: int, size: int) -> int:
        """Conv multiply-adds of the module for one square input of side `size`."""
        k2 = self.kernel * self.kernel
        hw_in, hw_out = size * size, out_size(size, stride) ** 2
        if self.substitution:
            return self.substitution.conv_macs(cin, cout, self.kernel, hw_in, hw_out)
        if self.expansion:
            h = self.expansion * cin
            return cin * h * hw_in + k2 * h * hw_out + h * cout * hw_out
        if self.kind == PER_BLOCK:
            m = cout // self.reduction
            return cin * m * hw_in + k2 * m * (m // int(self.groups(m))) * hw_out + m * cout * hw_out
        if self.separable:
            return k2 * cin * (cin // int(self.groups(cin))) * hw_out + cin * cout * hw_out
        return k2 * (cin // int(self.groups(cin))) * cout * hw_out


BLOCK_TYPES: Registry[BlockType] = Registry("block type")


def register_block(block: BlockType) -> BlockType:
    return BLOCK_TYPES.add(block.name, block)


def get_block(name: str) -> BlockType:
    return BLOCK_TYPES.get(name)


# --- the families ------------------------------------------------------------------------------
def _absolute(g: int) -> Callable[[int], float]:
    return lambda c: g


def _channels_per_group(s: int) -> Callable[[int], float]:
    return lambda c: c / s


def _depthwise(c: int) -> float:
    return c


register_block(BlockType("Conv", PER_CONV, "standard", "3×3 conv [S]", _absolute(1)))
register_block(BlockType("DConv", PER_CONV, "separable", "depthwise 3×3 → BN-ReLU → 1×1 [G(N)]",
                         _depthwise, separable=True))
for _g in (2, 4, 8, 16):
    register_block(BlockType(f"DConvA{_g}", PER_CONV, "separable",
                             f"3×3 in {_g} groups → BN-ReLU → 1×1 [G({_g})]", _absolute(_g), separable=True))
for _s in (16, 8, 4, 2):
    register_block(BlockType(f"DConvG{_s}", PER_CONV, "separable",
                             f"3×3 with {_s} channels per group → BN-ReLU → 1×1 [G(N/{_s})]",
                             _channels_per_group(_s), separable=True))
register_block(BlockType("Conv2x2", PER_CONV, "standard", "dilated 2×2 conv, dilation 2 (Moonshine)",
                         _absolute(1), kernel=2, dilation=2))

for _b in (2, 4, 8, 16):
    register_block(BlockType(f"ConvB{_b}", PER_BLOCK, "bottleneck",
                             f"bottleneck ×{_b} with a full 3×3 [B({_b})]", _absolute(1), reduction=_b))
    register_block(BlockType(f"DConvB{_b}", PER_BLOCK, "bottleneck",
                             f"bottleneck ×{_b} with a depthwise 3×3 [BG({_b},M)]", _depthwise, reduction=_b))
for _g in (2, 4, 8, 16):
    register_block(BlockType(f"A{_g}B2", PER_BLOCK, "bottleneck",
                             f"bottleneck ×2, 3×3 in {_g} groups [BG(2,{_g})]", _absolute(_g), reduction=2))
for _b, _ss in ((2, (16, 8, 4, 2)), (4, (16, 8, 4, 2))):
    for _s in _ss:
        register_block(BlockType(f"G{_s}B{_b}", PER_BLOCK, "bottleneck",
                                 f"bottleneck ×{_b}, 3×3 with {_s} channels per group [BG({_b},M/{_s})]",
                                 _channels_per_group(_s), reduction=_b))
register_block(BlockType("MBConv6", PER_BLOCK, "inverted", "inverted residual, expansion 6 (MobileNetV2)",
                         _absolute(1), expansion=6))

# A bottleneck block's middle (`MIDDLE`): NeckB{b} narrows it to 1/b, NeckA{g} groups its 3×3 in g groups, NeckG{s}
# in groups of s channels, NeckD makes it depthwise; B{b} after one of the last three narrows it as well.
for _b in (1, 2, 4):
    _narrow, _at = (f"B{_b}", f" at 1/{_b} of the middle width") if _b > 1 else ("", "")
    if _b > 1:
        register_block(BlockType(f"NeckB{_b}", MIDDLE, "middle", f"bottleneck's 3×3{_at}", _absolute(1),
                                 reduction=_b))
    register_block(BlockType(f"NeckD{_narrow}", MIDDLE, "middle", f"bottleneck's 3×3 depthwise{_at}", _depthwise,
                             reduction=_b))
    for _g in (2, 4, 8, 16, 32):
        register_block(BlockType(f"NeckA{_g}{_narrow}", MIDDLE, "middle", f"bottleneck's 3×3 in {_g} groups{_at}",
                                 _absolute(_g), reduction=_b))
    for _s in (16, 8, 4):
        register_block(BlockType(f"NeckG{_s}{_narrow}", MIDDLE, "middle",
                                 f"bottleneck's 3×3 with {_s} channels per group{_at}", _channels_per_group(_s),
                                 reduction=_b))

register_block(BlockType("Sep", PER_CONV, "structured", "depthwise 3×3 → dense 1×1, nothing between",
                         _depthwise, substitution=Substitution("Sep")))


def _structured(match) -> BlockType:
    name, family, text = match.group(0), match.group(1), match.group(2)
    description = (f"depthwise 3×3 → {family} 1×1" if family != "Shuffle" else
                   "grouped 1×1 N→M/4 → channel shuffle → depthwise 3×3 → grouped 1×1 M/4→M (linear ShuffleNet)")
    return BlockType(name, PER_CONV, "structured", description, _depthwise, substitution=parse(name, family, text))


BLOCK_TYPES.add_pattern(rf"({'|'.join(FRACTION_FAMILIES + COUNT_FAMILIES)})_(.*)", _structured, "Generic_0.03",
                        "Structured types carry their hyperparameter: Generic_s, SepHashed_s, TensorTrain_s, "
                        "Tucker_s (s in (0, 1]), Shuffle_g, ACDC_L.")


# --- candidate sets ----------------------------------------------------------------------------
# The 23 types of the BlockSwap code, the paper's 21-type list (which swaps G{8,4,2}B4 for DConvB2),
# Moonshine's single-blocktype set, a fixed list of structured substitutions (one or two settings
# per family; on WRN-28-10 they span 0.44M-4.4M params), and everything registered one by one.
# Named sets join with '+': 'blockswap+structured' is the mixed search.
BLOCKSWAP_TYPES = (
    ["Conv"] + [f"DConvA{g}" for g in (2, 4, 8, 16)] + [f"DConvG{s}" for s in (16, 8, 4, 2)] + ["DConv"]
    + ["ConvB2", "ConvB4"] + [f"G{s}B2" for s in (16, 8, 4, 2)] + [f"A{g}B2" for g in (2, 4, 8, 16)]
    + [f"G{s}B4" for s in (8, 4, 2)])
PAPER_TYPES = [t for t in BLOCKSWAP_TYPES if not (t.startswith("G") and t.endswith("B4"))] + ["DConvB2"]
MOONSHINE_TYPES = (["Conv", "Conv2x2", "DConv"] + [f"DConvA{g}" for g in (2, 4, 8, 16)]
                   + [f"DConvG{s}" for s in (16, 8, 4, 2)] + [f"ConvB{b}" for b in (2, 4, 8, 16)]
                   + [f"DConvB{b}" for b in (2, 4, 8, 16)] + [f"A{g}B2" for g in (2, 4, 8, 16)]
                   + [f"G{s}B2" for s in (16, 8, 4, 2)] + [f"G{s}B4" for s in (16, 8, 4, 2)])
# A bottleneck ResNet's search: BlockSwap's types for its 3×3 (the per-conv ones; the whole-branch ones are basic
# blocks') and the bottleneck middles.
BOTTLENECK_TYPES = ([t for t in BLOCKSWAP_TYPES if BLOCK_TYPES.get(t).kind == PER_CONV]
                    + [t for t, b in BLOCK_TYPES.items() if b.kind == MIDDLE])
STRUCTURED_TYPES = ["Sep", "Generic_0.03", "Generic_0.1", "TensorTrain_0.23", "Tucker_0.21", "SepHashed_0.05",
                    "ACDC_12", "Shuffle_4"]

CANDIDATE_SETS: dict[str, list[str]] = {
    "blockswap": BLOCKSWAP_TYPES,
    "paper": PAPER_TYPES,
    "moonshine": MOONSHINE_TYPES,
    "structured": STRUCTURED_TYPES,
    "bottleneck": BOTTLENECK_TYPES,
}


def candidate_set(name_or_names: str | list[str]) -> list[str]:
    """A named set ('blockswap', 'paper', 'moonshine', 'structured', 'bottleneck', 'all'), named sets joined by
    '+' ('blockswap+structured'), or a comma-separated/explicit list of types (`arch.Architecture.candidate_types`
    keeps those a network's blocks take)."""
    if isinstance(name_or_names, str):
        if name_or_names == "all":
            return list(BLOCK_TYPES)
        sets = name_or_names.split("+")
        if all(s in CANDIDATE_SETS for s in sets):
            return list(dict.fromkeys(n for s in sets for n in CANDIDATE_SETS[s]))
        names = [n.strip() for n in name_or_names.split(",") if n.strip()]
    else:
        names = list(name_or_names)
    if len(names) == 1 and not BLOCK_TYPES.knows(names[0]):
        raise BlockswapError(unknown_name_message(
            "candidate set or block type", names[0], list(CANDIDATE_SETS) + ["all"] + BLOCK_TYPES.names()))
    for n in names:
        get_block(n)
    if not names:
        raise BlockswapError("the candidate set is empty: name a set (blockswap, paper, moonshine, structured, "
                             "bottleneck, all) or types")
    return names


def is_named_set(name_or_names: str | list[str]) -> bool:
    """Whether `candidate_set` reads this as named sets: an architecture takes the types of a named set that its
    blocks can use, while a type named by the user that they cannot use is refused
    (`arch.Architecture.candidate_types`)."""
    return isinstance(name_or_names, str) and (name_or_names == "all" or all(
        s in CANDIDATE_SETS for s in name_or_names.split("+")))
