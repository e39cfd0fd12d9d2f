"""Fisher potential of a detection backbone, measured through a detector's loss on detection images.

BlockSwap §7 "apply[s] BlockSwap using COCO images": the candidates are ranked by how strongly the detection
task's loss responds to each block, so the loss back-propagated here is the detector's own - the sum of its
training losses (for Mask R-CNN: RPN objectness and box regression, RoI classification, box regression and
mask) - on one minibatch of detection images and their boxes, masks and labels. Δ is the classification
search's (BlockSwap §3.3, Eq. 2–3; `proxies`): at each residual branch's output, from activation gradients only, summed
over the blocks.

Everything but the backbone is held fixed across candidates: the FPN and heads are initialised from
`head_seed` (their shapes depend only on the stage widths, the same for every ResNet genotype), and the
detector's own random draws in the forward pass (the RPN's and RoI sampler's choice of anchors and
proposals) from the same seed, so two candidates differ only in their blocks and those blocks'
initialisation (`proxies.candidate_seed`, from the genotype's content).

The alternative would be a classification head on the backbone's pooled output, trained with a multi-label
loss on the categories present in each image: cheaper and without a detector head to fix, but its gradient
is that of another task (image-level recognition, at the last stage only), which is what BlockSwap's COCO
experiment set out to avoid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.errors import BlockswapError
from ..core.genotype import Genotype
from ..search.fisher import fisher_delta, probed
from ..search.proxies import candidate_seed
from .backbone import build_body, check_resnet
from .build import assemble
from .detectors import DetectorConfig


def detection_fisher(genotype: Genotype, images: Sequence[torch.Tensor], targets: Sequence[dict],
                     detector_config: DetectorConfig, seed: int = 0, head_seed: int = 0, device="cpu") -> float:
    """Σ over the backbone's blocks of Δ (BlockSwap Eq. 2-3), L = the detector's total training loss on
    (images, targets), the network in train mode at initialisation. Higher ranks better."""
    return float(detection_fisher_per_block(genotype, images, targets, detector_config, seed, head_seed,
                                            device).sum())


def detection_fisher_per_block(genotype: Genotype, images: Sequence[torch.Tensor], targets: Sequence[dict],
                               detector_config: DetectorConfig, seed: int = 0, head_seed: int = 0,
                               device="cpu") -> torch.Tensor:
    """Δ_block (float64, one per block in forward order); see `detection_fisher`."""
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(candidate_seed(seed, genotype.id))
        body = build_body(genotype, detector_config.norm, detector_config.gn_groups)
        torch.manual_seed(head_seed)
        model = assemble(body, genotype, detector_config).to(device).train()
        torch.manual_seed(head_seed)  # the detector's sampling of anchors and RoIs
        with probed(model, model.backbone.probes) as acts, torch.enable_grad():
            loss = sum(model(images, targets).values())
            grads = torch.autograd.grad(loss, acts)
            with torch.no_grad():
                return fisher_delta(acts, grads)


def fisher_batch(dataset, batch_size: int, seed: int, batches=None) -> tuple[list, list]:
    """The minibatch every candidate is scored on: the first of epoch 0's `batches` (default
    `engine.batch_order`) under `seed`, read from `dataset` at epoch 0. `detect score` passes a training set
    and COCO's aspect-ratio bins, so the batch is the first that `detect train` reads with that seed: flipped
    as in training, crowd annotations left out (as the classification search takes the first training batch)."""
    from .engine import batch_order

    if len(dataset) < batch_size:
        raise BlockswapError(f"the scoring set has {len(dataset)} images, fewer than the batch size {batch_size}")
    dataset.set_epoch(0)
    indices = (batches or batch_order)(dataset, batch_size, seed=seed, epoch=0)[0]
    images, targets = zip(*(dataset[i] for i in indices))
    return list(images), list(targets)


def score_backbones(genotypes: Sequence[Genotype], images, targets, detector_config: DetectorConfig, seed: int = 0,
                    head_seed: int = 0, device="cpu", progress: bool = False) -> list[float]:
    """`detection_fisher` of each genotype on the same minibatch, in order."""
    from ..training.runner import progress_bar

    for genotype in genotypes:
        check_resnet(genotype)
    return [detection_fisher(g, images, targets, detector_config, seed, head_seed, device)
            for g in progress_bar(progress, iterable=genotypes, desc="score", unit="net")]
