"""Architectures as arithmetic: pre-activation WRN-d-k and torchvision-layout ResNets (no torch): ResNet-18/34
with basic blocks, ResNet-50/101 and Wide ResNet-50-2 with bottleneck blocks.

An `Architecture` describes a network family member as a list of substitutable block slots plus a
fixed stem and head, and gives the analytic params/Ops of each part (the `counting` module adds them
up; `models` builds the network and the tests check the two against each other).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from .blocktypes import (
    KIND_WORDS,
    MIDDLE,
    PER_BLOCK,
    PER_CONV,
    BlockType,
    candidate_set,
    get_block,
    is_named_set,
    out_size,
)
from .errors import BlockswapError
from .registry import Registry


@dataclass(frozen=True)
class Slot:
    """One substitutable residual block: its input/output widths, stride and input side, and a bottleneck
    block's middle width (its 3×3's channels; 0 in a basic block)."""

    index: int
    group: int
    cin: int
    cout: int
    stride: int
    size: int
    width: int = 0

    @property
    def has_shortcut_conv(self) -> bool:
        return self.cin != self.cout or self.stride != 1

    @property
    def out_size(self) -> int:
        return out_size(self.size, self.stride)


class Architecture:
    """A network family member: its slots, fixed parts and per-block counts (`models` builds it)."""

    name: str
    default_in_channels: int
    default_num_classes: int
    default_image_size: int

    stages: tuple[tuple[int, int, int], ...]  # (blocks, width, stride of the first block) per stage
    kinds: tuple[str, ...] = (PER_CONV, PER_BLOCK)  # the kinds of block type its blocks take
    blocks_word = "basic"
    candidates = "blockswap"  # the candidate set of its search when none is named

    def stem_shape(self, image_size: int) -> tuple[int, int]:
        """(channels, side) of the stem's output."""
        raise NotImplementedError

    def slots(self, image_size: int) -> list[Slot]:
        (cin, size), slots = self.stem_shape(image_size), []
        for g, (n, cout, stride) in enumerate(self.stages):
            for j in range(n):
                s = stride if j == 0 else 1
                slots.append(Slot(len(slots), g, cin, cout, s, size, self.middle_width(g)))
                cin, size = cout, out_size(size, s)
        return slots

    def middle_width(self, group: int) -> int:
        """The middle width of stage `group`'s blocks (bottleneck blocks; 0 for basic ones)."""
        return 0

    # --- which block types its blocks take ---------------------------------------------------------
    def kind_refusal(self, btype: BlockType) -> str | None:
        """Why no block of this network can take `btype`'s kind (naming the network), or None."""
        if btype.kind in self.kinds:
            return None
        other = [n for n, a in models_by_blocks().items() if a != self.blocks_word]
        return (f"{btype.name!r} is a {KIND_WORDS[btype.kind]} block type and {self.name} has {self.blocks_word} "
                f"blocks, which take {' and '.join(KIND_WORDS[k] for k in self.kinds)} types; {btype.name!r} fits "
                f"{', '.join(other)}")

    def invalid_reason(self, slot: Slot, btype: BlockType) -> str | None:
        """Why `btype` cannot be used at `slot`, or None if it can."""
        return self.kind_refusal(btype) or btype.invalid_reason(slot.cin, slot.cout)

    def candidate_types(self, candidates: str | list[str] | None = None) -> list[str]:
        """The types of `candidates` (`blocktypes.candidate_set`; default: this network's own set) its blocks take:
        a named set's that they take, a list of types whole - one that none of its blocks can take is refused,
        naming the network."""
        names = candidate_set(candidates or self.candidates)
        if is_named_set(candidates or self.candidates):
            return [n for n in names if self.kind_refusal(get_block(n)) is None]
        for name in names:
            reason = self.kind_refusal(get_block(name))
            if reason:
                raise BlockswapError(reason)
        return names

    def fixed_params(self, in_channels: int, num_classes: int) -> int:
        raise NotImplementedError

    def fixed_ops(self, in_channels: int, num_classes: int, image_size: int) -> tuple[int, int]:
        """(ops, macs) of the stem and head for one image."""
        raise NotImplementedError

    def block_params(self, slot: Slot, btype: BlockType) -> int:
        raise NotImplementedError

    def block_macs(self, slot: Slot, btype: BlockType) -> int:
        raise NotImplementedError

    def block_relus(self, slot: Slot, btype: BlockType) -> int:
        """Elements entering the block's skeleton ReLUs (not those inside a cheap module, as `counting` states)."""
        raise NotImplementedError

    def block_ops(self, slot: Slot, btype: BlockType) -> int:
        return self.block_macs(slot, btype) + self.block_relus(slot, btype)

    def min_image_size(self) -> int:
        return 1

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


def _branch_params(slot: Slot, btype: BlockType) -> int:
    """A per-conv branch keeps its middle BN; a per-block module is the whole branch."""
    if btype.kind == PER_CONV:
        return btype.params(slot.cin, slot.cout) + 2 * slot.cout + btype.params(slot.cout, slot.cout)
    return btype.params(slot.cin, slot.cout)


def _branch_macs(slot: Slot, btype: BlockType) -> int:
    if btype.kind != PER_CONV:
        return btype.macs(slot.cin, slot.cout, slot.stride, slot.size)
    return btype.macs(slot.cin, slot.cout, slot.stride, slot.size) + btype.macs(slot.cout, slot.cout, 1, slot.out_size)


def _middle_relu(slot: Slot, btype: BlockType) -> int:
    """A per-conv branch keeps the skeleton's ReLU between its two convs; a per-block module has none of it."""
    return slot.cout * slot.out_size ** 2 if btype.kind == PER_CONV else 0


def _shortcut_macs(slot: Slot) -> int:
    return slot.cin * slot.cout * slot.out_size ** 2 if slot.has_shortcut_conv else 0


class WRN(Architecture):
    """Pre-activation wide ResNet WRN-d-k: three groups of n=(d-4)/6 blocks, widths 16k, 32k, 64k."""

    default_in_channels, default_num_classes, default_image_size = 3, 10, 32

    def __init__(self, depth: int, width: int):
        if depth < 10 or (depth - 4) % 6:
            raise BlockswapError(f"WRN depth must be 6n+4 with n ≥ 1 (10, 16, 22, 28, 40, …), got {depth}")
        if width < 1:
            raise BlockswapError(f"WRN width factor must be ≥ 1, got {width}")
        self.depth, self.width = depth, width
        self.name = f"wrn-{depth}-{width}"
        self.widths = (16 * width, 32 * width, 64 * width)
        self.stages = tuple(((depth - 4) // 6, w, stride) for w, stride in zip(self.widths, (1, 2, 2)))

    def stem_shape(self, image_size):
        return 16, image_size

    def fixed_params(self, in_channels, num_classes):
        c = self.widths[-1]
        return 9 * in_channels * 16 + 2 * c + c * num_classes + num_classes

    def fixed_ops(self, in_channels, num_classes, image_size):
        c, final = self.widths[-1], self.slots(image_size)[-1].out_size
        stem = 9 * in_channels * 16 * image_size ** 2
        linear = c * num_classes
        return stem + c * final ** 2 + linear + num_classes, stem + linear  # + the head's ReLU

    def block_params(self, slot, btype):
        return 2 * slot.cin + _branch_params(slot, btype) + (slot.cin * slot.cout if slot.has_shortcut_conv else 0)

    def block_macs(self, slot, btype):
        return _branch_macs(slot, btype) + _shortcut_macs(slot)

    def block_relus(self, slot, btype):  # the input BN-ReLU
        return slot.cin * slot.size ** 2 + _middle_relu(slot, btype)


class ResNet(Architecture):
    """torchvision-layout ResNet with basic blocks: 7×7/2 stem + max-pool, post-activation blocks."""

    default_in_channels, default_num_classes, default_image_size = 3, 1000, 224

    def __init__(self, name: str, layers: tuple[int, ...], width: float = 1.0):
        self.name = name
        self.widths = tuple(int(w * width) for w in (64, 128, 256, 512))
        self.stem_width = self.widths[0]  # the stem is as wide as layer1
        self.stages = tuple((n, w, 1 if g == 0 else 2) for g, (n, w) in enumerate(zip(layers, self.widths)))

    @staticmethod
    def _stem_sizes(image_size):
        conv = (image_size + 2 * 3 - 7) // 2 + 1
        return conv, (conv + 2 * 1 - 3) // 2 + 1

    def min_image_size(self):
        return 32

    def stem_shape(self, image_size):
        return self.stem_width, self._stem_sizes(image_size)[1]

    def fixed_params(self, in_channels, num_classes):
        stem, last = self.stem_width, self.widths[-1]
        return 49 * in_channels * stem + 2 * stem + last * num_classes + num_classes

    def fixed_ops(self, in_channels, num_classes, image_size):
        conv, _ = self._stem_sizes(image_size)
        stem = 49 * in_channels * self.stem_width * conv ** 2
        linear = self.widths[-1] * num_classes
        return stem + self.stem_width * conv ** 2 + linear + num_classes, stem + linear  # + the stem's ReLU

    def block_params(self, slot, btype):
        downsample = slot.cin * slot.cout + 2 * slot.cout if slot.has_shortcut_conv else 0
        return _branch_params(slot, btype) + 2 * slot.cout + downsample

    def block_macs(self, slot, btype):
        return _branch_macs(slot, btype) + _shortcut_macs(slot)

    def block_relus(self, slot, btype):  # the ReLU after the residual addition
        return _middle_relu(slot, btype) + slot.cout * slot.out_size ** 2


class BottleneckResNet(ResNet):
    """torchvision-layout ResNet with bottleneck blocks (v1.5: the stride on the 3×3): 1×1 in → m, BN-ReLU, 3×3
    m → m, BN-ReLU, 1×1 m → 4·planes, BN, plus identity or a 1×1-BN shortcut, then ReLU. m is planes scaled by
    width_per_group / 64 (Wide ResNet-50-2: 128). A block's types are per-conv ones for its 3×3, and middle ones
    (`blocktypes.MIDDLE`) that narrow and group it."""

    kinds = (PER_CONV, MIDDLE)
    blocks_word = "bottleneck"
    candidates = "bottleneck"

    def __init__(self, name: str, layers: tuple[int, ...], width_per_group: int = 64):
        planes = (64, 128, 256, 512)
        self.name = name
        self.widths = tuple(4 * p for p in planes)
        self.middles = tuple(p * width_per_group // 64 for p in planes)
        self.stem_width = 64
        self.stages = tuple((n, w, 1 if g == 0 else 2) for g, (n, w) in enumerate(zip(layers, self.widths)))

    def middle_width(self, group):
        return self.middles[group]

    def invalid_reason(self, slot, btype):
        if self.kind_refusal(btype):
            return self.kind_refusal(btype)
        if slot.width % btype.reduction:
            return f"the middle width {slot.width} is not divisible by the factor {btype.reduction}"
        m = middle(slot, btype)
        return btype.invalid_reason(m, m)

    def block_params(self, slot, btype):
        m, downsample = middle(slot, btype), slot.cin * slot.cout + 2 * slot.cout if slot.has_shortcut_conv else 0
        return slot.cin * m + 2 * m + btype.params(m, m) + 2 * m + m * slot.cout + 2 * slot.cout + downsample

    def block_macs(self, slot, btype):
        m = middle(slot, btype)
        return (slot.cin * m * slot.size ** 2 + btype.macs(m, m, slot.stride, slot.size)
                + m * slot.cout * slot.out_size ** 2 + _shortcut_macs(slot))

    def block_relus(self, slot, btype):  # after the 1×1, after the 3×3 (its BN) and after the addition
        m = middle(slot, btype)
        return m * slot.size ** 2 + m * slot.out_size ** 2 + slot.cout * slot.out_size ** 2


def middle(slot: Slot, btype: BlockType) -> int:
    """The width of a bottleneck block's 3×3 with `btype`: the slot's, narrowed by a middle type's factor."""
    return slot.width // btype.reduction if btype.kind == MIDDLE else slot.width


# --- the registry ------------------------------------------------------------------------------
# Entries are zero-argument factories; a pattern family's factory gets the regex groups as ints.
MODELS: Registry[Callable[[], Architecture]] = Registry("model")


def register_model(name: str):
    """Register a fixed architecture factory under `name` (timm style)."""
    return MODELS.register(name)


def register_model_pattern(pattern: str, example: str, hint: str = ""):
    """Register a parametrised family; the regex groups are passed to the factory as ints."""
    def wrap(factory):
        MODELS.add_pattern(pattern, lambda match: functools.partial(factory, *map(int, match.groups())),
                           example, hint)
        return factory
    return wrap


@register_model("resnet18")
def resnet18() -> Architecture:
    return ResNet("resnet18", (2, 2, 2, 2))


@register_model("resnet18-0.5")
def resnet18_half() -> Architecture:
    """ResNet-18 at half width, stem included (Table 3's comparator). The paper lists 3.2M params / 909M
    MACs; this net has 3.06M / 483M at 224×224, and no width rule we know gives both of the paper's numbers
    (a full-width stem gives 3.07M / 577M), so Table 3 prints our counts beside the paper's."""
    return ResNet("resnet18-0.5", (2, 2, 2, 2), width=0.5)


@register_model("resnet34")
def resnet34() -> Architecture:
    return ResNet("resnet34", (3, 4, 6, 3))


@register_model("resnet50")
def resnet50() -> Architecture:
    return BottleneckResNet("resnet50", (3, 4, 6, 3))


@register_model("resnet101")
def resnet101() -> Architecture:
    return BottleneckResNet("resnet101", (3, 4, 23, 3))


@register_model("wide_resnet50_2")
def wide_resnet50_2() -> Architecture:
    return BottleneckResNet("wide_resnet50_2", (3, 4, 6, 3), width_per_group=128)


@register_model_pattern(r"wrn-(\d+)-(\d+)", "wrn-40-2", "WRNs take any wrn-<depth>-<width> with depth 6n+4.")
def wrn(depth: int, width: int) -> Architecture:
    return WRN(depth, width)


def model_names() -> list[str]:
    """Registered names; parametrised families are listed by an example ('wrn-40-2')."""
    return MODELS.names()


def get_architecture(name: str) -> Architecture:
    return MODELS.get(name)()


def models_by_blocks() -> dict[str, str]:
    """Each registered name (a family by its example) → the word for its blocks ("basic", "bottleneck")."""
    return {name: get_architecture(name).blocks_word for name in model_names()}
