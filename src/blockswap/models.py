"""Networks built from a genotype: pre-activation WRN-d-k and torchvision-layout ResNet-18/34.

An `Architecture` describes a network family member as a list of substitutable block slots plus a
fixed stem and head; it builds the network for a genotype and gives the analytic params/Ops of each
part (the `counting` module adds them up and checks them against the built network).

Every model's forward returns `(logits, attention_points)`: the group outputs (3 for WRN, 4 for
ResNet). Every residual block has a `probe` (an identity) on its branch output, before the residual
addition, where the Fisher potential is measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from .blocks import PER_CONV, BlockType, bn_relu, conv_init_, get_block, out_size
from .registry import unknown_name_message
from .errors import BlockswapError

if TYPE_CHECKING:
    from .genotype import Genotype


@dataclass(frozen=True)
class Slot:
    """One substitutable residual block: its input/output widths, stride and input side."""

    index: int
    group: int
    cin: int
    cout: int
    stride: int
    size: int

    @property
    def has_shortcut_conv(self) -> bool:
        return self.cin != self.cout or self.stride != 1

    @property
    def out_size(self) -> int:
        return out_size(self.size, self.stride)


class PreActBlock(nn.Module):
    """WRN block: BN-ReLU → branch, plus identity or a 1×1 shortcut on the pre-activated input."""

    def __init__(self, btype: BlockType, slot: Slot):
        super().__init__()
        self.bn1, self.relu1 = bn_relu(slot.cin)
        if btype.kind == PER_CONV:
            self.branch = nn.Sequential(btype.build(slot.cin, slot.cout, slot.stride), *bn_relu(slot.cout),
                                        btype.build(slot.cout, slot.cout, 1))
        else:
            self.branch = btype.build(slot.cin, slot.cout, slot.stride)
        self.probe = nn.Identity()
        self.shortcut = (nn.Conv2d(slot.cin, slot.cout, 1, slot.stride, bias=False)
                         if slot.has_shortcut_conv else None)

    def forward(self, x):
        pre = self.relu1(self.bn1(x))
        out = self.probe(self.branch(pre))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class PostActBlock(nn.Module):
    """torchvision BasicBlock layout (so an all-`Conv` genotype has torchvision's state-dict keys)."""

    def __init__(self, btype: BlockType, slot: Slot):
        super().__init__()
        if btype.kind == PER_CONV:
            self.conv1 = btype.build(slot.cin, slot.cout, slot.stride)
            self.bn1 = nn.BatchNorm2d(slot.cout)
            self.conv2 = btype.build(slot.cout, slot.cout, 1)
        else:
            self.conv1 = btype.build(slot.cin, slot.cout, slot.stride)
            self.bn1 = self.conv2 = None
        self.bn2 = nn.BatchNorm2d(slot.cout)
        self.relu = nn.ReLU()
        self.relu_out = nn.ReLU()
        self.probe = nn.Identity()
        self.downsample = (nn.Sequential(nn.Conv2d(slot.cin, slot.cout, 1, slot.stride, bias=False),
                                         nn.BatchNorm2d(slot.cout)) if slot.has_shortcut_conv else None)

    def forward(self, x):
        out = self.conv1(x)
        if self.conv2 is not None:
            out = self.conv2(self.relu(self.bn1(out)))
        out = self.bn2(self.probe(out))
        return self.relu_out(out + (x if self.downsample is None else self.downsample(x)))


class Network(nn.Module):
    """stem → groups of blocks → head → pool → fc; forward returns (logits, group outputs).

    Parts are named as the reference implementations name them (WRN: conv1, block1-3, bn, fc;
    ResNet: conv1, bn1, relu, maxpool, layer1-4, avgpool, fc), so state dicts line up.
    """

    def __init__(self, stem: dict[str, nn.Module], groups: dict[str, list[nn.Module]],
                 head: dict[str, nn.Module], features: int, num_classes: int, pool_name: str = "pool"):
        super().__init__()
        self.stem_names, self.group_names, self.head_names = list(stem), list(groups), list(head)
        for name, module in {**stem, **{k: nn.Sequential(*v) for k, v in groups.items()}, **head}.items():
            self.add_module(name, module)
        self.pool_name = pool_name
        self.add_module(pool_name, nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(features, num_classes)

    @property
    def blocks(self) -> list[nn.Module]:
        return [b for name in self.group_names for b in getattr(self, name)]

    def forward(self, x):
        for name in self.stem_names:
            x = getattr(self, name)(x)
        points = []
        for name in self.group_names:
            x = getattr(self, name)(x)
            points.append(x)
        for name in self.head_names:
            x = getattr(self, name)(x)
        return self.fc(getattr(self, self.pool_name)(x).flatten(1)), points


class Architecture:
    """A network family member: its slots, fixed parts, per-block counts and a builder."""

    name: str
    default_in_channels: int
    default_num_classes: int
    default_image_size: int

    block_class: type[nn.Module]
    stage_prefix: str  # stage names in the state dict: block1… (WRN), layer1… (ResNet)
    stages: tuple[tuple[int, int, int], ...]  # (blocks, width, stride of the first block) per stage

    def stem_shape(self, image_size: int) -> tuple[int, int]:
        """(channels, side) of the stem's output."""
        raise NotImplementedError

    def slots(self, image_size: int) -> list[Slot]:
        (cin, size), slots = self.stem_shape(image_size), []
        for g, (n, cout, stride) in enumerate(self.stages):
            for j in range(n):
                s = stride if j == 0 else 1
                slots.append(Slot(len(slots), g, cin, cout, s, size))
                cin, size = cout, out_size(size, s)
        return slots

    def build_stages(self, genotype: "Genotype") -> dict[str, list[nn.Module]]:
        slots = self.slots(genotype.image_size)
        blocks = [self.build_block(s, get_block(n)) for n, s in zip(genotype.blocks, slots)]
        return {f"{self.stage_prefix}{g + 1}": [b for b, s in zip(blocks, slots) if s.group == g]
                for g in range(len(self.stages))}

    def build_block(self, slot: Slot, btype: BlockType) -> nn.Module:
        return self.block_class(btype, slot)

    def build(self, genotype: "Genotype") -> Network:
        raise NotImplementedError

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


def _branch_count(slot: Slot, btype: BlockType, what: str) -> int:
    """`what` ('macs' or 'relus') of the branch; a per-conv branch has a ReLU between its convs."""
    count = getattr(btype, what)
    first = count(slot.cin, slot.cout, slot.stride, slot.size)
    if btype.kind != PER_CONV:
        return first
    middle = slot.cout * slot.out_size ** 2 if what == "relus" else 0
    return first + middle + count(slot.cout, slot.cout, 1, slot.out_size)


def _shortcut_macs(slot: Slot) -> int:
    return slot.cin * slot.cout * slot.out_size ** 2 if slot.has_shortcut_conv else 0


class WRN(Architecture):
    """Pre-activation wide ResNet WRN-d-k: three groups of n=(d-4)/6 blocks, widths 16k, 32k, 64k."""

    default_in_channels, default_num_classes, default_image_size = 3, 10, 32
    block_class = PreActBlock
    stage_prefix = "block"

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

    def build(self, genotype):
        bn, relu = bn_relu(self.widths[-1])
        stem = {"conv1": nn.Conv2d(genotype.in_channels, 16, 3, 1, 1, bias=False)}
        net = Network(stem, self.build_stages(genotype), {"bn": bn, "relu": relu}, self.widths[-1],
                      genotype.num_classes)
        conv_init_(net)
        return net

    def fixed_params(self, in_channels, num_classes):
        c = self.widths[-1]
        return 9 * in_channels * 16 + 2 * c + c * num_classes + num_classes

    def fixed_ops(self, in_channels, num_classes, image_size):
        c, final = self.widths[-1], self.slots(image_size)[-1].out_size
        stem = 9 * in_channels * 16 * image_size ** 2
        linear = c * num_classes
        return stem + 2 * c * final ** 2 + linear + num_classes, stem + linear

    def block_params(self, slot, btype):
        return 2 * slot.cin + _branch_params(slot, btype) + (slot.cin * slot.cout if slot.has_shortcut_conv else 0)

    def block_macs(self, slot, btype):
        return _branch_count(slot, btype, "macs") + _shortcut_macs(slot)

    def block_relus(self, slot, btype):  # the input BN-ReLU
        return slot.cin * slot.size ** 2 + _branch_count(slot, btype, "relus")


class ResNet(Architecture):
    """torchvision-layout ResNet with basic blocks: 7×7/2 stem + max-pool, post-activation blocks."""

    default_in_channels, default_num_classes, default_image_size = 3, 1000, 224
    block_class = PostActBlock
    stage_prefix = "layer"

    def __init__(self, name: str, layers: tuple[int, ...]):
        self.name = name
        self.widths = (64, 128, 256, 512)
        self.stages = tuple((n, w, 1 if g == 0 else 2) for g, (n, w) in enumerate(zip(layers, self.widths)))

    @staticmethod
    def _stem_sizes(image_size):
        conv = (image_size + 2 * 3 - 7) // 2 + 1
        return conv, (conv + 2 * 1 - 3) // 2 + 1

    def min_image_size(self):
        return 32

    def stem_shape(self, image_size):
        return 64, self._stem_sizes(image_size)[1]

    def build(self, genotype):
        stem = {"conv1": nn.Conv2d(genotype.in_channels, 64, 7, 2, 3, bias=False), "bn1": nn.BatchNorm2d(64),
                "relu": nn.ReLU(), "maxpool": nn.MaxPool2d(3, 2, 1)}
        net = Network(stem, self.build_stages(genotype), {}, self.widths[-1], genotype.num_classes,
                      pool_name="avgpool")
        conv_init_(net)
        return net

    def fixed_params(self, in_channels, num_classes):
        return 49 * in_channels * 64 + 2 * 64 + 512 * num_classes + num_classes

    def fixed_ops(self, in_channels, num_classes, image_size):
        conv, _ = self._stem_sizes(image_size)
        final = self.slots(image_size)[-1].out_size
        stem = 49 * in_channels * 64 * conv ** 2
        linear = 512 * num_classes
        return stem + 64 * conv ** 2 + 512 * final ** 2 + linear + num_classes, stem + linear

    def block_params(self, slot, btype):
        downsample = slot.cin * slot.cout + 2 * slot.cout if slot.has_shortcut_conv else 0
        return _branch_params(slot, btype) + 2 * slot.cout + downsample

    def block_macs(self, slot, btype):
        return _branch_count(slot, btype, "macs") + _shortcut_macs(slot)

    def block_relus(self, slot, btype):  # the ReLU after the residual addition
        return _branch_count(slot, btype, "relus") + slot.cout * slot.out_size ** 2


# --- the registry ------------------------------------------------------------------------------
_MODELS: dict[str, Callable[[], Architecture]] = {}
_PATTERNS: list[tuple[re.Pattern, Callable[..., Architecture], str]] = []


def register_model(name: str):
    """Register a fixed architecture factory under `name` (timm style)."""
    def wrap(factory):
        _MODELS[name] = factory
        return factory
    return wrap


def register_model_pattern(pattern: str, example: str):
    """Register a parametrised family; the regex groups are passed to the factory as ints."""
    def wrap(factory):
        _PATTERNS.append((re.compile(pattern), factory, example))
        return factory
    return wrap


@register_model("resnet18")
def resnet18() -> Architecture:
    return ResNet("resnet18", (2, 2, 2, 2))


@register_model("resnet34")
def resnet34() -> Architecture:
    return ResNet("resnet34", (3, 4, 6, 3))


@register_model_pattern(r"wrn-(\d+)-(\d+)", "wrn-40-2")
def wrn(depth: int, width: int) -> Architecture:
    return WRN(depth, width)


def model_names() -> list[str]:
    """Registered names; parametrised families are listed by an example ('wrn-40-2')."""
    return list(_MODELS) + [example for _, _, example in _PATTERNS]


def get_architecture(name: str) -> Architecture:
    if name in _MODELS:
        return _MODELS[name]()
    for pattern, factory, _ in _PATTERNS:
        match = pattern.fullmatch(str(name))
        if match:
            return factory(*map(int, match.groups()))
    raise BlockswapError(unknown_name_message("model", name, model_names())
                         + " WRNs take any wrn-<depth>-<width> with depth 6n+4.")


def create_model(genotype: "Genotype", device: str | torch.device | None = None) -> Network:
    """Build the network of a (validated) genotype, on `device` if given."""
    net = get_architecture(genotype.model).build(genotype)
    return net.to(device) if device is not None else net
