"""What a profile's `detection:` section asks for (BlockSwap §7, Table 4), decided without torch like `plan`:
the cross-key checks the schema cannot express, the search budget and the data paths.

The backbone is a ResNet at its own (ImageNet) shape, and its budget counts the classification network's
params, as Table 3 does: ResNet-34-G(N) is 3.13M there, the "3M" of Table 4. The detector drops the
classifier, so the trained backbones are smaller than the budget by the classifier's params (the same for
every candidate), and the report gives both counts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..core.arch import ResNet
from ..core.datadirs import locate_fashion_mnist
from ..core.errors import BlockswapError
from ..core.genotype import Genotype
from ..core.sampling import CostTable

SPLITS = ("train", "val")
# The mmdet configs in workflow/mmdet/ by (detector, slim): COCO at paper scale, or the embedded set on the CPU.
MMDET_CONFIGS = {("maskrcnn", False): "mask-rcnn_blockswap-r34_fpn_1x_coco.py",
                 ("retinanet", False): "retinanet_blockswap-r34_fpn_1x_coco.py",
                 ("maskrcnn", True): "mask-rcnn_blockswap_slim_embedded.py",
                 ("retinanet", True): "retinanet_blockswap_slim_embedded.py"}
MMDET_SLIM_CANVAS = 160  # the slim configs keep images at this size


def enabled(config: dict) -> bool:
    return config["detection"]["enabled"]


def embedded(config: dict) -> bool:
    """True when the profile names no COCO files: the embedded set is built by a rule."""
    d = config["detection"]
    return all(d[s]["images"] is None and d[s]["annotations"] is None for s in SPLITS)


def single_genotype(config: dict) -> Genotype:
    d = config["detection"]
    return Genotype.uniform(d["model"], d["single_block"])


def budget(config: dict) -> int:
    """detection.budget, else the params of the all-`single_block` network (the paper's comparison)."""
    from ..core.counting import analytic

    return config["detection"]["budget"] or analytic(single_genotype(config)).params


def mmdet_config(config: dict, root: str | Path = ".") -> str | None:
    """The mmdet config of the trainings when detection.backend is mmdet: detection.mmdet_config, else the one in
    ROOT/workflow/mmdet/ for the detector and slim setting (None for the torchvision backend)."""
    d = config["detection"]
    if d["backend"] != "mmdet":
        return None
    if d["mmdet_config"]:
        return d["mmdet_config"]
    name = MMDET_CONFIGS.get((d["detector"], d["slim"] is not None))
    return None if name is None else str(Path(root) / "workflow" / "mmdet" / name)


def _check_mmdet(config: dict) -> None:
    d = config["detection"]
    if d["backend"] != "mmdet":
        return
    if d["mmdet_config"]:
        if not Path(d["mmdet_config"]).is_file():
            raise BlockswapError(f"detection.mmdet_config: {d['mmdet_config']} not found (configs: workflow/mmdet/)")
        return
    if (d["detector"], d["slim"] is not None) not in MMDET_CONFIGS:
        raise BlockswapError(f"detection.backend mmdet: workflow/mmdet/ has no config for detector {d['detector']} "
                             "(maskrcnn, retinanet); name one in detection.mmdet_config")
    if d["slim"] not in (None, MMDET_SLIM_CANVAS):
        raise BlockswapError(f"detection.backend mmdet: the slim configs in workflow/mmdet/ are for "
                             f"{MMDET_SLIM_CANVAS}-px canvases, not slim {d['slim']}; name a config in "
                             "detection.mmdet_config")


def check(config: dict) -> None:
    """The detection section's cross-key checks; raises BlockswapError naming the key."""
    if not enabled(config):
        return
    d = config["detection"]
    try:
        genotype = single_genotype(config)
    except BlockswapError as e:
        raise BlockswapError(f"detection.model/single_block: {e}") from None
    if not isinstance(genotype.architecture, ResNet):
        raise BlockswapError(f"detection.model: a detection backbone is a ResNet (resnet18, resnet34), "
                             f"not {d['model']}")
    for split in SPLITS:
        given = [k for k in ("images", "annotations") if d[split][k] is not None]
        if len(given) == 1:
            raise BlockswapError(f"detection.{split}: give both images and annotations (or neither, for the "
                                 "embedded set)")
    if not embedded(config) and not all(d[s]["images"] for s in SPLITS):
        raise BlockswapError("detection: name the COCO files of both train and val (or of neither)")
    _check_mmdet(config)
    search = config["search"]
    table = CostTable.build(d["model"], search["candidates"], "params")
    lo, hi = table.feasible_range
    b = budget(config)
    if not lo < b < hi:
        raise BlockswapError(f"detection.budget: {b:,} params is outside the feasible range {lo:,}–{hi:,} of "
                             f"{d['model']}")


def items_dir(config: dict) -> str | None:
    """The embedded set's Fashion-MNIST folder: detection.embedded.data_dir, else the profile's own when
    its dataset is Fashion-MNIST, else None (the standard places)."""
    data_dir = config["detection"]["embedded"]["data_dir"]
    if data_dir is None and config["dataset"]["name"] == "fashion-mnist":
        data_dir = config["dataset"]["data_dir"]
    return data_dir


def check_data(config: dict) -> None:
    """The detection data can be found: the COCO files named, or Fashion-MNIST for the embedded set."""
    if not enabled(config):
        return
    d = config["detection"]
    if d["backend"] == "mmdet" and not all(importlib.util.find_spec(m) for m in ("mmdet", "mmcv", "mmengine")):
        raise BlockswapError("detection.backend mmdet: mmdetection is not installed here; run `make mmdet` "
                             "(or set detection.backend: torchvision)")
    if embedded(config):
        try:
            locate_fashion_mnist(items_dir(config))
        except BlockswapError as e:
            raise BlockswapError(f"detection.embedded: {e}") from None
        return
    for split in SPLITS:
        images, annotations = Path(d[split]["images"]), Path(d[split]["annotations"])
        if not images.is_dir() or not annotations.is_file():
            what = images if not images.is_dir() else annotations
            raise BlockswapError(f"detection.{split}: {what} not found (COCO 2017: data/coco/{split}2017 and "
                                 f"data/coco/annotations/instances_{split}2017.json, from cocodataset.org)")

