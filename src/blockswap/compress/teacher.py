"""The teacher of a compress job: a torchvision ResNet's state dict or a blockswap checkpoint told apart by its
tensors, its genotype and preprocessing, and the refusal of a teacher that cannot be told from chance."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ..core.arch import get_architecture
from ..core.errors import BlockswapError
from ..core.genotype import Genotype
from ..report.figures import rehearsal

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "wide_resnet50_2")  # torchvision's and ours
Z95 = 1.959964  # the normal quantile of a two-sided 95% interval


def wilson_interval(errors: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of an error rate errors/n, in percent."""
    p, z2 = errors / n, Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return 100 * (centre - half), 100 * (centre + half)


def torchvision_model(state_dict: dict, path) -> str:
    """Which registered ResNet a torchvision state dict is, from its tensor names and layer1's first 3×3; one line
    naming the supported ones if none is (ResNet-152, a ResNeXt's grouped 3×3s, a Wide ResNet-101-2)."""
    found = state_layout(state_dict)
    known = {registered_layout(name): name for name in TORCHVISION_RESNETS}
    if found in known:
        return known[found]
    blocks, depth, conv = found
    grouped = f", its 3×3s grouped ({conv[0] // conv[1]} groups, as a ResNeXt's)" if conv and conv[0] != conv[1] else ""
    raise BlockswapError(f"{path} is a torchvision ResNet of {blocks} blocks that the registry lacks (blocks per stage "
                         f"{depth}, layer1's 3×3 {conv[0] if conv else '?'} wide{grouped}); compress takes "
                         f"{', '.join(f'{n} {describe_layout(registered_layout(n))}' for n in TORCHVISION_RESNETS)} - "
                         "or a blockswap checkpoint")


def state_layout(state_dict: dict) -> tuple:
    """(blocks: "basic" or "bottleneck", blocks per stage, layer1's first 3×3 as (out, in per group)) of a
    torchvision ResNet state dict."""
    blocks = "bottleneck" if any(k.endswith("conv3.weight") for k in state_dict) else "basic"
    depth = tuple(len({k.split(".")[1] for k in state_dict if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    conv = state_dict.get("layer1.0.conv2.weight")
    return blocks, depth, None if conv is None else tuple(conv.shape[:2])


def registered_layout(name: str) -> tuple:
    """`state_layout` of the registered ResNet `name` with every block `Conv`, from its architecture."""
    arch = get_architecture(name)
    first = arch.slots(arch.default_image_size)[0]
    width = first.width or first.cout
    return arch.blocks_word, tuple(n for n, _, _ in arch.stages), (width, width)


def describe_layout(layout: tuple) -> str:
    return f"({layout[0]}, {'-'.join(map(str, layout[1]))}, {layout[2][0]} wide)"


def teacher_file(teacher: str) -> Path:
    """The teacher's weights file: `teacher` itself, or a torchvision name's weights in torch's hub cache."""
    if Path(teacher).is_file():
        return Path(teacher)
    if teacher in TORCHVISION_RESNETS:
        import torch
        from torchvision.models import get_model_weights

        url = get_model_weights(teacher).DEFAULT.url
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if not path.is_file():
            raise BlockswapError(f"--teacher {teacher}: its weights are not in {path.parent}; download {url} "
                                 "there, or pass the weights file")
        return path
    raise BlockswapError(f"--teacher {teacher}: no such file, and not a torchvision name "
                         f"({', '.join(TORCHVISION_RESNETS)})")


def teacher_genotype(path: Path, dataset):
    """The teacher's genotype, shaped for `dataset`, its state dict and the --normalize it was trained with
    (`teacher_normalize`); refuses weights that do not fit the genotype or the folder's classes."""
    from ..nn.models import create_model
    from ..training.pretrained import check_fits, read_weights

    state_dict, genotype, record = read_weights(path)
    if genotype is None:  # a torchvision state dict
        fc = state_dict.get("fc.weight")
        genotype = Genotype.uniform(torchvision_model(state_dict, path), "Conv",
                                    in_channels=dataset.in_channels, image_size=dataset.image_size,
                                    num_classes=dataset.num_classes if fc is None else fc.shape[0])
    if genotype.num_classes != dataset.num_classes:
        raise BlockswapError(f"{path} has {genotype.num_classes} outputs, the folder {dataset.num_classes} classes; "
                             "the teacher must be trained on these classes (one output per class folder)")
    if (genotype.in_channels, genotype.image_size) != (dataset.in_channels, dataset.image_size):
        raise BlockswapError(f"{path} takes {genotype.in_channels}×{genotype.image_size}² images, the folder holds "
                             f"{dataset.in_channels}×{dataset.image_size}²")
    check_fits(state_dict, create_model(genotype), path, f"{genotype.model} {genotype.id}")
    return genotype, state_dict, teacher_normalize(record)


def teacher_normalize(record: dict | None) -> str | None:
    """The --normalize a teacher was trained with: torchvision's ImageNet mean and std for a torchvision state
    dict (`record` None: torchvision's models are trained so, and users train theirs as its reference scripts
    do); for a blockswap checkpoint the mean and std its metrics record, else (a checkpoint from before they were
    recorded) its config's --normalize, else its dataset's own - None for a folder, which is what `load_dataset`
    gives it by default."""
    from ..data.datasets import DATASET_STATISTICS
    from ..data.imagefolder import normalize_spec

    if record is None:
        return "imagenet"
    recorded = (record.get("metrics") or {}).get("preprocess")
    if recorded:
        return normalize_spec(recorded["mean"], recorded["std"])
    config = record.get("config") or {}
    if config.get("normalize"):
        return config["normalize"]
    stats = DATASET_STATISTICS.get(config.get("dataset"))
    return normalize_spec(*stats) if stats else None


def check_beats_chance(metrics: dict, classes: int, path, preprocess) -> None:
    """Refuse a teacher whose tested error cannot be told from chance, 1 - 1/classes: its 95% Wilson interval
    reaches it (or lies above it). Such a teacher mostly sees inputs unlike its training's - another mean and std,
    or its classes in another order - and a student distilled from it learns nothing. In a rehearsal (tiny,
    barely trained teachers) it is only said."""
    n, error = metrics["test_examples"], metrics["test_top1_error"]
    low, high = wilson_interval(round(error * n / 100), n)
    chance = 100 * (1 - 1 / classes)
    if high < chance:
        return
    message = (f"teacher {path}: its test error {error:.2f}% (95% interval {low:.1f}-{high:.1f}%, {n} images) "
               f"cannot be told from chance ({chance:.2f}% for {classes} classes); it was most likely trained with "
               f"other preprocessing than {preprocess.describe()} - give the teacher's with --normalize imagenet, "
               "folder or MEAN:STD (or its classes are in another order than the folder's sorted class folders)")
    if not rehearsal():
        raise BlockswapError(message)
    print(f"rehearsal, not refused: {message}", file=sys.stderr)
