"""`blockswap detect score`: rank candidate backbones by Fisher potential through a detector (BlockSwap §7).

Every candidate is scored on the same minibatch of detection images (the first batch `detect train` reads
with the same seed: flipped as in training, crowd annotations left out), with the detector's FPN and heads
initialised alike (`detection.fisher`). The
output is the CSV of `blockswap score` with one proxy column, `fisher`, so `blockswap select` reads it.
"""

from __future__ import annotations

from .args import add_field_option, int_at_least
from .detect_train import detector_options


def cmd_detect_score(args) -> None:
    import torch

    from ..core.scores import PROXY_SIGNS
    from ..detection.coco import CocoDetection, aspect_ratio_batches
    from ..detection.detectors import DetectorConfig
    from ..detection.fisher import fisher_batch, score_backbones
    from ..search.proxies import Scores, rank
    from ..training.engine import resolve_device
    from .search import load_candidates, write_scores

    genotypes = load_candidates(args.candidates)
    options = detector_options(args)
    DetectorConfig(**options)  # checks the detector settings before any data is read
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = CocoDetection(args.images, args.annotations, train=True, seed=args.seed)
    detector = DetectorConfig(**{"num_classes": data.num_classes, **options})
    images, targets = fisher_batch(data, args.batch_size, args.seed, batches=aspect_ratio_batches)
    scores = score_backbones(genotypes, images, targets, detector, args.seed, args.seed, device, not args.quiet)
    write_scores(args, genotypes, [Scores({"fisher": s}) for s in scores], rank(scores, PROXY_SIGNS["fisher"]),
                 ["fisher"])


def add_score_command(detect_subparsers) -> None:
    """Add `score` to the `detect` command group."""
    from ..detection.detectors import FIELDS

    p = detect_subparsers.add_parser("score", help="rank candidate backbones by Fisher potential through a detector")
    p.add_argument("candidates", help="candidates .jsonl of ResNet genotypes (from `blockswap sample`)")
    p.add_argument("--images", required=True, help="folder of the detection images to score on")
    p.add_argument("--annotations", required=True, help="their COCO instances JSON")
    p.add_argument("--batch-size", type=int_at_least(1), default=16,
                   help="images in the minibatch: the training batch size, as the paper scores (default 16)")
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="picks the minibatch (detect train --seed S's first), the heads' initialisation and every "
                        "candidate's")
    p.add_argument("--slim", type=int_at_least(32), metavar="CANVAS",
                   help="start from the CPU preset for CANVAS-pixel images (slim heads, anchors 8…128, no resizing)")
    for f in FIELDS.values():
        add_field_option(p, f, given_only=True)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int_at_least(1), help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", help="scores .csv (default: print)")
    p.add_argument("--best", help="also write the top-ranked genotype to this JSON file")
    p.set_defaults(func=cmd_detect_score, outputs=("output", "best"))
