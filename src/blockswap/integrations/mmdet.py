"""A BlockSwap ResNet as an mmdetection backbone: importing this module registers `BlockSwapResNet` in mmdet's
model registry (an mmdet config names it through `custom_imports`; see workflow/mmdet/ for configs).

    custom_imports = dict(imports=["blockswap.integrations.mmdet"], allow_failed_imports=False)
    model = dict(backbone=dict(type="BlockSwapResNet", genotype="pick.json", out_indices=(0, 1, 2, 3),
                               frozen_stages=-1, norm_cfg=dict(type="BN", requires_grad=True), norm_eval=False,
                               init_cfg=dict(type="Pretrained", checkpoint="student.pt")),
                 neck=dict(in_channels=[64, 128, 256, 512]))  # BlockSwapResNet.stage_channels(...)

It behaves like mmdet's `ResNet`: `out_indices` picks stages (0-3: strides 4, 8, 16, 32), `frozen_stages` k
freezes the stem and the first k stages (-1: none), `norm_eval` keeps BatchNorm statistics fixed in training,
`norm_cfg` is BN, SyncBN or GN (`num_groups`), `requires_grad=False` fixes the norms' affine parameters. The
network is the package's own (`detection.backbone.build_body`), so its weights are those of the torchvision
backend's body. A `Pretrained` init_cfg names a blockswap classification checkpoint of the same genotype
(`blockswap train`/`distill`/`import-weights`); it is loaded when the backbone is built - before GroupNorm
replaces BatchNorm, as in the torchvision backend - and refused, in one line, if it holds another network.
Other init_cfg types are mmengine's, applied by `init_weights`.
"""

from __future__ import annotations

from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..core import genotype as genotypes
from ..core.errors import BlockswapError
from ..core.genotype import Genotype
from ..detection.backbone import build_body, stage_channels
from ..detection.detectors import STAGES

NORMS = {"BN": "bn", "BN2d": "bn", "SyncBN": "syncbn", "GN": "gn"}  # mmdet's norm_cfg types → ours


def resolve_genotype(genotype=None, model: str | None = None, blocks=None, block: str | None = None) -> Genotype:
    """The backbone's genotype: a genotype file or dict, or `model` with a block list or one `block` for all."""
    if genotype is not None:
        if model is not None or blocks is not None or block is not None:
            raise BlockswapError("BlockSwapResNet: give genotype, or model with blocks or block, not both")
        if isinstance(genotype, Genotype):
            return genotype
        return Genotype.from_dict(dict(genotype), "BlockSwapResNet genotype") if isinstance(genotype, dict) \
            else genotypes.load(genotype)
    if model is None:
        raise BlockswapError("BlockSwapResNet: give genotype (a file or dict), or model with blocks or block")
    if blocks is not None:
        if block is not None:
            raise BlockswapError("BlockSwapResNet: give blocks (one per block) or block (every block), not both")
        uniform = Genotype.uniform(model, "Conv")
        return Genotype.from_dict({**uniform.to_dict(), "blocks": list(blocks)}, "BlockSwapResNet blocks")
    return Genotype.uniform(model, block or "Conv")


def _norm(norm_cfg: dict) -> tuple[str, int, bool]:
    """(our norm name, GroupNorm groups, whether the norms' affine parameters train) of an mmdet norm_cfg."""
    cfg = dict(norm_cfg)
    kind = cfg.pop("type", None)
    if kind not in NORMS:
        raise BlockswapError(f"BlockSwapResNet: norm_cfg type {kind!r} is not supported; use {', '.join(NORMS)}")
    groups = cfg.pop("num_groups", 32)
    requires_grad = cfg.pop("requires_grad", True)
    cfg.pop("eps", None), cfg.pop("momentum", None)  # the network's own values stand
    if cfg:
        raise BlockswapError(f"BlockSwapResNet: unknown norm_cfg key {sorted(cfg)[0]!r}")
    return NORMS[kind], groups, requires_grad


@MODELS.register_module()
class BlockSwapResNet(BaseModule):
    def __init__(self, genotype=None, model: str | None = None, blocks=None, block: str | None = None,
                 out_indices=(0, 1, 2, 3), frozen_stages: int = -1, norm_cfg=None, norm_eval: bool = True,
                 init_cfg=None):
        checkpoint = None
        if isinstance(init_cfg, dict) and init_cfg.get("type") == "Pretrained":
            checkpoint, init_cfg = init_cfg.get("checkpoint"), None
            if not checkpoint:
                raise BlockswapError("BlockSwapResNet: a Pretrained init_cfg needs checkpoint=<blockswap checkpoint>")
        super().__init__(init_cfg)
        self.genotype = resolve_genotype(genotype, model, blocks, block)
        out_indices = tuple(out_indices)
        if not out_indices or any(i not in range(len(STAGES)) for i in out_indices):
            raise BlockswapError(f"BlockSwapResNet: out_indices must be stages 0-3, got {list(out_indices)}")
        if frozen_stages not in range(-1, len(STAGES) + 1):
            raise BlockswapError(f"BlockSwapResNet: frozen_stages must be -1 to 4, got {frozen_stages}")
        self.out_indices, self.frozen_stages, self.norm_eval = out_indices, frozen_stages, norm_eval
        self.checkpoint = checkpoint
        norm, groups, norms_train = _norm(norm_cfg or {"type": "BN"})
        body = build_body(self.genotype, norm, groups, checkpoint)
        # The stem and the stages up to the last one returned; the classifier and later stages never run.
        self.stem_names = list(body.stem_names)
        self.stage_names = list(STAGES[: max(out_indices) + 1])
        for name in self.stem_names + self.stage_names:
            self.add_module(name, getattr(body, name))
        self.out_channels = [stage_channels(self.genotype)[i] for i in out_indices]
        if not norms_train:
            for m in self.modules():
                if isinstance(m, (_BatchNorm, nn.GroupNorm)):
                    m.requires_grad_(False)
        self._freeze_stages()

    def init_weights(self):
        if self.checkpoint is None and self.init_cfg:  # weights from a checkpoint were loaded when built
            super().init_weights()
        self._is_init = True

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [getattr(self, n) for n in self.stem_names] + \
            [getattr(self, n) for n in self.stage_names[: self.frozen_stages]]

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            m.requires_grad_(False)

    def forward(self, x):
        for name in self.stem_names:
            x = getattr(self, name)(x)
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
