"""A detector built: the genotype's backbone body (`backbone`), its FPN and the heads of a `DetectorConfig`
(`detectors`), which itself stays free of torch for the command line."""

from __future__ import annotations

import os

from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from ..core.errors import BlockswapError
from .backbone import build_body, with_fpn
from .detectors import DetectorConfig


def build_detector(genotype, config: DetectorConfig, init: str | os.PathLike | None = None):
    """The detector of `config` around the genotype's backbone (randomly initialised, or its body from the
    classification checkpoint `init`)."""
    return assemble(build_body(genotype, config.norm, config.gn_groups, init), genotype, config)


def assemble(body, genotype, config: DetectorConfig):
    """FPN and heads of `config` around a built body (apart so a search can fix their initialisation)."""
    if genotype.in_channels != 3:
        raise BlockswapError(f"detection images are RGB: the backbone needs in_channels 3, not {genotype.in_channels}")
    kind, width = config.kind, config.fpn_channels
    extra = LastLevelP6P7(width, width) if kind.p6p7 else None
    return kind.build(with_fpn(body, genotype, width, kind.returned, extra), config)
