"""Networks built from a genotype: the nn.Modules of the core's architectures (`arch`).

`create_model(genotype)` builds a pre-activation WRN-d-k or a torchvision-layout ResNet (basic blocks: 18/34;
bottleneck blocks: 50/101, Wide ResNet-50-2) from the architecture's slots and the block types' modules
(`blocks`); `counting` checks the built network's counts against the analytic ones.

Every model's forward returns `(logits, attention_points)`: the group outputs (3 for WRN, 4 for
ResNet). Every residual block has a `probe` (an identity) on its branch output, before the residual
addition, where the Fisher potential is measured. `torch.jit.script` compiles every model, to the same numbers.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..core.arch import WRN, Architecture, BottleneckResNet, ResNet, Slot, get_architecture, middle
from ..core.blocktypes import PER_CONV, BlockType, get_block
from .blocks import bn_relu, build_module, conv_init_

if TYPE_CHECKING:
    from ..core.genotype import Genotype


class PreActBlock(nn.Module):
    """WRN block: BN-ReLU → branch, plus identity or a 1×1 shortcut on the pre-activated input."""

    def __init__(self, btype: BlockType, slot: Slot):
        super().__init__()
        self.bn1, self.relu1 = bn_relu(slot.cin)
        if btype.kind == PER_CONV:
            self.branch = nn.Sequential(build_module(btype, slot.cin, slot.cout, slot.stride),
                                        *bn_relu(slot.cout), build_module(btype, slot.cout, slot.cout, 1))
        else:
            self.branch = build_module(btype, slot.cin, slot.cout, slot.stride)
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
            self.conv1 = build_module(btype, slot.cin, slot.cout, slot.stride)
            self.bn1 = nn.BatchNorm2d(slot.cout)
            self.conv2 = build_module(btype, slot.cout, slot.cout, 1)
        else:
            self.conv1 = build_module(btype, slot.cin, slot.cout, slot.stride)
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
        # The Fisher probe reads the branch's output: after its last BN, before the addition (BlockSwap §3.3). Before
        # bn2, train-mode BN would hide the branch's scale from the probe's gradient.
        out = self.probe(self.bn2(out))
        return self.relu_out(out + (x if self.downsample is None else self.downsample(x)))


class BottleneckBlock(nn.Module):
    """torchvision Bottleneck layout (so an all-`Conv` genotype has torchvision's state-dict keys): 1×1, 3×3 (the
    type's module at the middle width, `arch.middle`), 1×1, each followed by its BN."""

    def __init__(self, btype: BlockType, slot: Slot):
        super().__init__()
        m = middle(slot, btype)
        self.conv1 = nn.Conv2d(slot.cin, m, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(m)
        self.conv2 = build_module(btype, m, m, slot.stride)
        self.bn2 = nn.BatchNorm2d(m)
        self.conv3 = nn.Conv2d(m, slot.cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(slot.cout)
        self.relu1, self.relu2, self.relu_out = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.probe = nn.Identity()
        self.downsample = (nn.Sequential(nn.Conv2d(slot.cin, slot.cout, 1, slot.stride, bias=False),
                                         nn.BatchNorm2d(slot.cout)) if slot.has_shortcut_conv else None)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.probe(self.bn3(self.conv3(out)))  # the branch's output, as in PostActBlock
        return self.relu_out(out + (x if self.downsample is None else self.downsample(x)))


RESNET_BLOCKS = (PostActBlock, BottleneckBlock)  # a ResNet's residual blocks, whose probes the detection Fisher reads


class Network(nn.Module):
    """stem → groups of blocks → head → pool → fc; forward returns (logits, group outputs).

    Parts are named as the reference implementations name them (WRN: conv1, block1-3, bn, fc;
    ResNet: conv1, bn1, relu, maxpool, layer1-4, avgpool, fc), so state dicts line up.
    """

    __jit_unused_properties__ = ["blocks"]  # for Python-side tools (Fisher probes), not the forward

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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # The children in the order registered, which is the forward order; a loop over them (not getattr by
        # name) is what torch.jit.script can compile.
        points: list[torch.Tensor] = []
        for name, module in self.named_children():
            if name == "fc":
                x = x.flatten(1)
            x = module(x)
            if name in self.group_names:
                points.append(x)
        return x, points


# --- building an architecture ------------------------------------------------------------------
@functools.singledispatch
def build_block(arch: Architecture, slot: Slot, btype: BlockType) -> nn.Module:
    """The residual block of `btype` at `slot` of `arch`, in that architecture's layout."""
    raise NotImplementedError(f"no network layout for {arch!r}")


@build_block.register(WRN)
def _preact_block(arch: WRN, slot: Slot, btype: BlockType) -> nn.Module:
    return PreActBlock(btype, slot)


@build_block.register(ResNet)
def _postact_block(arch: ResNet, slot: Slot, btype: BlockType) -> nn.Module:
    return PostActBlock(btype, slot)


@build_block.register(BottleneckResNet)
def _bottleneck_block(arch: BottleneckResNet, slot: Slot, btype: BlockType) -> nn.Module:
    return BottleneckBlock(btype, slot)


def build_stages(arch: Architecture, genotype: Genotype, prefix: str) -> dict[str, list[nn.Module]]:
    """The genotype's blocks grouped by stage, named `prefix`1… (block1… for WRN, layer1… for ResNet)."""
    slots = arch.slots(genotype.image_size)
    blocks = [build_block(arch, s, get_block(n)) for n, s in zip(genotype.blocks, slots)]
    return {f"{prefix}{g + 1}": [b for b, s in zip(blocks, slots) if s.group == g]
            for g in range(len(arch.stages))}


@functools.singledispatch
def build_network(arch: Architecture, genotype: Genotype) -> Network:
    """The initialised network of a (validated) genotype of `arch`."""
    raise NotImplementedError(f"no network layout for {arch!r}")


@build_network.register(WRN)
def _build_wrn(arch: WRN, genotype: Genotype) -> Network:
    bn, relu = bn_relu(arch.widths[-1])
    stem = {"conv1": nn.Conv2d(genotype.in_channels, 16, 3, 1, 1, bias=False)}
    net = Network(stem, build_stages(arch, genotype, "block"), {"bn": bn, "relu": relu}, arch.widths[-1],
                  genotype.num_classes)
    conv_init_(net)
    return net


@build_network.register(ResNet)
def _build_resnet(arch: ResNet, genotype: Genotype) -> Network:
    width = arch.stem_width
    stem = {"conv1": nn.Conv2d(genotype.in_channels, width, 7, 2, 3, bias=False), "bn1": nn.BatchNorm2d(width),
            "relu": nn.ReLU(), "maxpool": nn.MaxPool2d(3, 2, 1)}
    net = Network(stem, build_stages(arch, genotype, "layer"), {}, arch.widths[-1], genotype.num_classes,
                  pool_name="avgpool")
    conv_init_(net)
    return net


def create_model(genotype: Genotype, device: str | torch.device | None = None) -> Network:
    """Build the network of a (validated) genotype, on `device` if given."""
    net = build_network(get_architecture(genotype.model), genotype)
    return net.to(device) if device is not None else net


def shaped_like(net: nn.Module, state_dict: dict) -> nn.Module:
    """`net` with every Conv2d, BatchNorm2d and Linear resized to the tensors of `state_dict` (a structurally
    pruned copy of it: fewer channels, same layers), in place; returns it. Weights are not loaded."""
    for name, module in list(net.named_modules()):
        weight = state_dict.get(f"{name}.weight")
        if weight is None or not isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)) \
                or weight.shape == module.weight.shape:
            continue
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups == module.in_channels == module.out_channels > 1
            groups = weight.shape[0] if depthwise else module.groups
            new = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], module.kernel_size, module.stride,
                            module.padding, module.dilation, groups, module.bias is not None)
        elif isinstance(module, nn.BatchNorm2d):
            new = nn.BatchNorm2d(weight.shape[0], module.eps, module.momentum, module.affine,
                                 module.track_running_stats)
        else:
            new = nn.Linear(weight.shape[1], weight.shape[0], module.bias is not None)
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, child, new.to(module.weight.device))
    return net
