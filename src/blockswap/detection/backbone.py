"""A ResNet genotype as a detection backbone: its stages `layer1..layer4` (strides 4, 8, 16, 32) under an FPN.

The body is the package's own network (`models.create_model`), so a genotype of mixed cheap blocks is the
same network here as in classification; its classifier (avgpool, fc) is dropped by torchvision's
`IntermediateLayerGetter`, which keeps the children up to the last stage returned. Stage widths come from
the architecture's slots, never from constants.

Norms (`NORMS`): "bn" trains BatchNorm from scratch (torchvision's choice when no pretrained weights are
used); "syncbn" is BatchNorm synchronised over the processes of a multi-GPU run (it computes as "bn" in a
single process); "gn" replaces every BatchNorm by GroupNorm with `gn_groups` groups, refused where a
layer's channel count is not a multiple of it; "frozen_bn" fixes the statistics and affine parameters,
which is meaningful only with weights from a classification checkpoint (refused without one).
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from ..core.arch import ResNet
from ..core.errors import BlockswapError
from ..core.genotype import Genotype
from ..nn.models import RESNET_BLOCKS, Network, create_model
from ..training.checkpoint import describe, load_checkpoint, weights_sha256
from .detectors import NORMS, STAGES  # defined there without torch, for the CLI

# The classifier's parameters: a classification checkpoint's weights other than these initialise the body.
CLASSIFIER_PREFIXES = ("fc.",)


def stage_channels(genotype: Genotype) -> list[int]:
    """Output channels of each stage of the genotype's network, from its slots."""
    slots = genotype.architecture.slots(genotype.image_size)
    return [[s.cout for s in slots if s.group == g][-1] for g in range(len(STAGES))]


def check_resnet(genotype: Genotype) -> None:
    if not isinstance(genotype.architecture, ResNet):
        raise BlockswapError(f"a detection backbone needs a ResNet genotype (resnet18, resnet34, resnet50, resnet101, "
                             f"wide_resnet50_2: stages of stride 4, 8, 16, 32), not {genotype.model}")


def _replace_norms(module: nn.Module, make) -> None:
    """Replace every BatchNorm2d below `module` by `make(bn, qualified name)`, in place."""
    for name, bn in [(n, m) for n, m in module.named_modules() if type(m) is nn.BatchNorm2d]:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name)
        setattr(parent, child, make(bn, name))


def _group_norm(groups: int):
    def make(bn: nn.BatchNorm2d, name: str) -> nn.GroupNorm:
        if bn.num_features % groups:
            raise BlockswapError(f"GroupNorm with {groups} groups cannot normalise the {bn.num_features} channels "
                                 f"of {name}; choose --gn-groups dividing every channel count of this genotype, "
                                 "or another --norm")
        return nn.GroupNorm(groups, bn.num_features, eps=bn.eps)
    return make


def _frozen(bn: nn.BatchNorm2d, name: str) -> FrozenBatchNorm2d:
    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
    with torch.no_grad():
        frozen.weight.copy_(bn.weight)
        frozen.bias.copy_(bn.bias)
        frozen.running_mean.copy_(bn.running_mean)
        frozen.running_var.copy_(bn.running_var)
    return frozen


def apply_norm(body: nn.Module, norm: str, gn_groups: int = 32) -> nn.Module:
    """`body` with its BatchNorms turned into `norm` (see the module's docstring)."""
    if norm == "bn":
        return body
    if norm == "syncbn":
        return nn.SyncBatchNorm.convert_sync_batchnorm(body)
    if norm == "gn":
        _replace_norms(body, _group_norm(gn_groups))
    elif norm == "frozen_bn":
        _replace_norms(body, _frozen)
    else:
        raise BlockswapError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    return body


def init_weights(genotype: Genotype, path: str | os.PathLike) -> dict:
    """The body's weights in classification checkpoint `path`, refused unless it holds the same network (its
    classifier, image size and class count aside)."""
    check_resnet(genotype)
    ckpt = load_checkpoint(path)
    saved = Genotype.from_dict(ckpt["genotype"], source=f"{path} (genotype)")
    if (saved.model, saved.blocks, saved.in_channels) != (genotype.model, genotype.blocks, genotype.in_channels):
        raise BlockswapError(f"{path} holds {describe(saved)}; the backbone is {describe(genotype)}: "
                             "initialise from a checkpoint of the same blocks")
    return {k: v for k, v in ckpt["state_dict"].items() if not k.startswith(CLASSIFIER_PREFIXES)}


def init_weights_sha256(genotype: Genotype, path: str | os.PathLike) -> str:
    """The identity of the weights a run starts from (checked as `init_weights` does)."""
    return weights_sha256(init_weights(genotype, path))


def load_body_weights(body: Network, genotype: Genotype, path: str | os.PathLike) -> None:
    """Initialise `body` from a classification checkpoint of the same network (its classifier aside)."""
    weights = init_weights(genotype, path)
    own = {k for k in body.state_dict() if not k.startswith(CLASSIFIER_PREFIXES)}
    if set(weights) != own:
        odd = sorted(set(weights) ^ own)[0]
        raise BlockswapError(f"{path}: its weights do not fit genotype {genotype.id} (tensor {odd!r})")
    try:
        body.load_state_dict(weights, strict=False)
    except RuntimeError as e:
        raise BlockswapError(f"{path}: its weights do not fit genotype {genotype.id} "
                             f"({str(e).splitlines()[-1].strip()})") from None


def build_body(genotype: Genotype, norm: str = "bn", gn_groups: int = 32,
               init: str | os.PathLike | None = None) -> Network:
    """The genotype's network (randomly initialised, or from classification checkpoint `init`) with `norm`."""
    check_resnet(genotype)
    if norm not in NORMS:
        raise BlockswapError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    if norm == "frozen_bn" and init is None:
        raise BlockswapError("frozen_bn keeps the statistics of trained weights: give a classification checkpoint "
                             "to start from (--init), or train the norms (bn, syncbn, gn)")
    body = create_model(genotype)
    if init is not None:
        load_body_weights(body, genotype, init)
    return apply_norm(body, norm, gn_groups)


def with_fpn(body: Network, genotype: Genotype, out_channels: int, returned: tuple[str, ...] = STAGES,
             extra_blocks: ExtraFPNBlock | None = None) -> BackboneWithFPN:
    """`body`'s stages `returned` under an FPN of width `out_channels` (torchvision's default extra level: a
    max-pooled P6). The FPN's outputs are named "0", "1", … in stage order."""
    channels = dict(zip(STAGES, stage_channels(genotype)))
    backbone = BackboneWithFPN(body, {name: str(i) for i, name in enumerate(returned)},
                               [channels[name] for name in returned], out_channels, extra_blocks)
    # The Fisher probes of the body's residual blocks, in forward order (a plain list: no second registration).
    backbone.probes = [m.probe for m in backbone.body.modules() if isinstance(m, RESNET_BLOCKS)]
    return backbone
