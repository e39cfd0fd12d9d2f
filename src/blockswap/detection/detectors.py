"""The detectors: torchvision's Mask R-CNN, Faster R-CNN, RetinaNet and FCOS built around a genotype backbone.

Built directly from torchvision's classes (its builder functions would download ImageNet weights). Every size
that matters for speed is a `DetectorConfig` setting whose default is torchvision's; `DetectorConfig.slim`
is the preset for minutes-long CPU runs on small canvases (sizes measured on 2 CPU cores: FPN 64, box fc 256,
mask head 64, 128 RoIs per image, images kept at the canvas size, anchors 8…128 px).

Every detector takes 5 pyramid levels: the R-CNNs P2–P5 plus a max-pooled P6 (torchvision's default),
RetinaNet and FCOS P3–P5 plus P6/P7 convolved from P5 (`LastLevelP6P7`), so `anchor_sizes` has one base
size per level. `num_classes` counts the background as class 0 in all four, as torchvision's COCO models
do (RetinaNet and FCOS never predict it): a set of K categories needs K + 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from ..core.errors import BlockswapError
from ..core.recipe import Settings, setting
from ..core.registry import Registry

NORMS = ("bn", "syncbn", "gn", "frozen_bn")  # backbone norms (see `backbone`)
STAGES = ("layer1", "layer2", "layer3", "layer4")  # a ResNet body's stages, strides 4, 8, 16, 32
LEVELS = 5
RCNN_ASPECT_RATIOS = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Detector:
    """A registered detector: which stages feed its FPN, its extra levels, how to build it, its losses."""
    name: str
    description: str
    returned: tuple[str, ...]  # body stages under the FPN
    p6p7: bool  # RetinaNet/FCOS: P6, P7 convolved from P5; else torchvision's max-pooled P6
    default_anchor_sizes: tuple[int, ...]
    losses: tuple[str, ...]  # the loss dict's keys in training mode
    build: Callable  # (backbone with FPN, DetectorConfig) -> nn.Module


DETECTORS: Registry[Detector] = Registry("detector")


def detector_names() -> list[str]:
    return DETECTORS.names()


@dataclass(frozen=True)
class DetectorConfig(Settings):
    """What a detector is: its kind, backbone norm and every head/image size. Saved with its checkpoints."""
    what = "detector"
    detector: str = setting("maskrcnn", "maskrcnn, fasterrcnn, retinanet or fcos")
    num_classes: int = setting(91, "classes including the background (K categories: K + 1; COCO: 91)")
    norm: str = setting("bn", "backbone norm: bn (trained from scratch), syncbn (multi-GPU), gn (GroupNorm) "
                        "or frozen_bn (with --init weights)", choices=NORMS)
    gn_groups: int = setting(32, "groups of --norm gn (must divide every channel count of the backbone)")
    fpn_channels: int = setting(256, "FPN width, also the RPN/RetinaNet/FCOS head width (FCOS: a multiple of 32)")
    min_size: int = setting(800, "images are resized so that their short side is this (pixels)")
    max_size: int = setting(1333, "…unless that makes the long side longer than this")
    anchor_sizes: tuple[int, ...] | None = setting(
        None, "base anchor size per pyramid level, 5 values (default: the detector's, 32…512, FCOS 8…128)",
        "int_list")
    box_fc: int = setting(1024, "R-CNN box head: width of its two fully connected layers")
    mask_head_channels: int = setting(256, "Mask R-CNN mask head: width of its four 3×3 convs")
    rois_per_image: int = setting(512, "R-CNN: RoIs sampled per image to train the box (and mask) head")
    rpn_proposals_train: int = setting(2000, "R-CNN: proposals kept after the RPN's NMS, training")
    rpn_proposals_test: int = setting(1000, "R-CNN: proposals kept after the RPN's NMS, evaluation")

    def __post_init__(self):
        if self.anchor_sizes is not None:
            object.__setattr__(self, "anchor_sizes", tuple(int(s) for s in self.anchor_sizes))
        self._validate()

    def _validate(self):
        def need(ok, msg):
            if not ok:
                raise BlockswapError(msg)
        DETECTORS.get(self.detector)
        need(self.norm in NORMS, f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        for name in ("gn_groups", "fpn_channels", "min_size", "max_size", "box_fc", "mask_head_channels",
                     "rois_per_image", "rpn_proposals_train", "rpn_proposals_test"):
            value = getattr(self, name)
            need(isinstance(value, int) and value >= 1, f"{name} must be a positive integer, got {value!r}")
        need(self.num_classes >= 2, f"num_classes counts the background too: at least 2, got {self.num_classes}")
        need(self.min_size <= self.max_size, f"min_size {self.min_size} is larger than max_size {self.max_size}")
        sizes = self.anchor_sizes
        need(sizes is None or (len(sizes) == LEVELS and all(s >= 1 for s in sizes)),
             f"anchor_sizes needs {LEVELS} positive sizes, one per pyramid level, got {list(sizes or ())}")
        need(self.detector != "fcos" or self.fpn_channels % 32 == 0,
             f"FCOS heads use GroupNorm(32): fpn_channels must be a multiple of 32, got {self.fpn_channels}")

    @property
    def kind(self) -> Detector:
        return DETECTORS.get(self.detector)

    @property
    def anchors(self) -> tuple[int, ...]:
        return self.anchor_sizes or self.kind.default_anchor_sizes

    @classmethod
    def slim(cls, canvas: int, **overrides) -> DetectorConfig:
        """The CPU preset for `canvas`-pixel images (`slim_settings`), then `overrides`."""
        return cls(**{**slim_settings(canvas), **overrides})



FIELDS = {f.name: f for f in dataclasses.fields(DetectorConfig)}
SLIM = {"fpn_channels": 64, "box_fc": 256, "mask_head_channels": 64, "rois_per_image": 128,
        "rpn_proposals_train": 500, "rpn_proposals_test": 300, "anchor_sizes": (8, 16, 32, 64, 128)}


def slim_settings(canvas: int) -> dict:
    """The CPU preset for `canvas`-pixel images: slim heads (`SLIM`), images kept at their size, anchors 8…128."""
    return {**SLIM, "min_size": canvas, "max_size": canvas}


def _rcnn_parts(backbone, config: DetectorConfig) -> dict:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

    resolution = 7  # torchvision's box RoIAlign output
    return dict(min_size=config.min_size, max_size=config.max_size,
                rpn_anchor_generator=AnchorGenerator(tuple((s,) for s in config.anchors),
                                                     (RCNN_ASPECT_RATIOS,) * LEVELS),
                rpn_post_nms_top_n_train=config.rpn_proposals_train, rpn_post_nms_top_n_test=config.rpn_proposals_test,
                box_batch_size_per_image=config.rois_per_image,
                box_head=TwoMLPHead(backbone.out_channels * resolution ** 2, config.box_fc),
                box_predictor=FastRCNNPredictor(config.box_fc, config.num_classes))


def _faster_rcnn(backbone, config):
    from torchvision.models.detection import FasterRCNN

    return FasterRCNN(backbone, None, **_rcnn_parts(backbone, config))


def _mask_rcnn(backbone, config):
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    width = config.mask_head_channels
    return MaskRCNN(backbone, None, **_rcnn_parts(backbone, config),
                    mask_head=MaskRCNNHeads(backbone.out_channels, (width,) * 4, 1),
                    mask_predictor=MaskRCNNPredictor(width, width, config.num_classes))


def _retinanet(backbone, config):
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.retinanet import RetinaNetHead

    # Three scales per octave, as torchvision's RetinaNet: s, s·2^(1/3), s·2^(2/3).
    sizes = tuple(tuple(int(s * 2 ** (k / 3)) for k in range(3)) for s in config.anchors)
    anchors = AnchorGenerator(sizes, (RCNN_ASPECT_RATIOS,) * LEVELS)
    head = RetinaNetHead(backbone.out_channels, anchors.num_anchors_per_location()[0], config.num_classes)
    return RetinaNet(backbone, config.num_classes, config.min_size, config.max_size, anchor_generator=anchors,
                     head=head)


def _fcos(backbone, config):
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    # One point per location; the sizes set each level's range of object scales (4s to 8s).
    anchors = AnchorGenerator(tuple((s,) for s in config.anchors), ((1.0,),) * LEVELS)
    return FCOS(backbone, config.num_classes, config.min_size, config.max_size, anchor_generator=anchors)


_RCNN_LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
_PYRAMID = (32, 64, 128, 256, 512)
for _entry in (
    Detector("maskrcnn", "Mask R-CNN: RPN + box and mask heads on RoIs (BlockSwap §7)", STAGES, False, _PYRAMID,
             _RCNN_LOSSES[:2] + ("loss_mask",) + _RCNN_LOSSES[2:], _mask_rcnn),
    Detector("fasterrcnn", "Faster R-CNN: RPN + box head on RoIs", STAGES, False, _PYRAMID, _RCNN_LOSSES,
             _faster_rcnn),
    Detector("retinanet", "RetinaNet: dense anchors, focal loss, P3–P7", STAGES[1:], True, _PYRAMID,
             ("classification", "bbox_regression"), _retinanet),
    Detector("fcos", "FCOS: anchor-free, centre-ness, GroupNorm heads, P3–P7", STAGES[1:], True,
             tuple(s // 4 for s in _PYRAMID), ("classification", "bbox_regression", "bbox_ctrness"), _fcos),
):
    DETECTORS.add(_entry.name, _entry)


def backbone_params(model) -> int:
    """Learnable parameters of the body (the genotype's network without its classifier)."""
    return sum(p.numel() for p in model.backbone.body.parameters())

