"""`blockswap detect train`: train (or, with --test-only, evaluate) a detector around a genotype backbone.

Options are built from the fields of `detection.detectors.DetectorConfig` (what the detector is) and
`detection.settings.DetectTrainConfig` (how it is trained), where their defaults and help are stated once.
`--slim CANVAS` starts the detector settings from the CPU preset for CANVAS-pixel images; any detector
option given beside it wins. `--backend mmdet --mmdet-config C.py` takes the detector from an mmdet config instead
(only --norm and --gn-groups apply to it) and trains it by the same recipe with mmengine's Runner
(`integrations.mmdet_train`; install it with `make mmdet`).
"""

from __future__ import annotations

import json
import sys

from ..core.errors import BlockswapError
from .args import add_field_option, int_at_least, parse_labels


def detector_options(args) -> dict:
    """The detector settings the command names: the --slim preset's, then the options given."""
    from ..detection.detectors import FIELDS, slim_settings

    given = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    return {**(slim_settings(args.slim) if args.slim else {}), **given}


def _genotype(args):
    """--genotype G.json (or C.jsonl --index I), or --model M [--block B]: every block of M one type."""
    from ..core.genotype import Genotype, load

    if args.block and not args.model:
        raise BlockswapError("--block goes with --model (every block of that model one type)")
    if args.index is not None and not args.genotype:
        raise BlockswapError("--index goes with --genotype C.jsonl")
    if args.model:
        return Genotype.uniform(args.model, args.block or "Conv")
    return load(args.genotype, args.index) if args.genotype else None


def _dataset(images, annotations, what: str, train: bool, seed: int = 0):
    from ..detection.coco import CocoDetection

    if (images is None) != (annotations is None):
        raise BlockswapError(f"--{what}-images and --{what}-annotations go together")
    return None if images is None else CocoDetection(images, annotations, train=train, seed=seed)


def _categories(train_set, val_set, args) -> list:
    categories = list(train_set.category_ids)
    if val_set is not None and list(val_set.category_ids) != categories:
        raise BlockswapError(f"{args.val_annotations} has other categories than {args.train_annotations} "
                             f"({list(val_set.category_ids)} vs {categories}): labels would not match")
    return categories


def _train(args, config, genotype, options: dict) -> dict:
    from ..core.files import check_output
    from ..data.distributed import is_main
    from ..detection.backbone import build_body, check_resnet, init_weights
    from ..detection.detectors import DetectorConfig
    from ..detection.train import check_processes, train
    from ..training.runner import Preempted

    if genotype is None:
        raise BlockswapError("name the backbone: --genotype G.json or --model resnet34 [--block B]")
    check_resnet(genotype)
    if args.init:
        init_weights(genotype, args.init)
    if options.get("norm") == "gn":  # whether GroupNorm fits every layer is known once the body is built
        build_body(genotype, "gn", DetectorConfig(**options).gn_groups)
    check_output(args.checkpoint, "--checkpoint")
    check_processes(DetectorConfig(**options), config)
    if args.train_images is None:
        raise BlockswapError("training needs --train-images and --train-annotations")
    train_set = _dataset(args.train_images, args.train_annotations, "train", train=True, seed=config.seed)
    val_set = _dataset(args.val_images, args.val_annotations, "val", train=False)
    categories = _categories(train_set, val_set, args)
    detector = DetectorConfig(**{"num_classes": len(categories) + 1, **options})
    if detector.num_classes < len(categories) + 1:
        raise BlockswapError(f"--num-classes {detector.num_classes} is too few for {len(categories)} categories "
                             "plus the background")
    from ..detection.coco import aspect_ratio_batches

    try:
        return train(genotype, detector, config, train_set, val_set, out_checkpoint=args.checkpoint,
                     metrics_path=args.output, resume_path=args.resume, init=args.init, labels=parse_labels(args.label),
                     batches=aspect_ratio_batches)
    except Preempted as e:  # SLURM preemption/time limit: not an error, the job is to be requeued
        if is_main():
            print(f"blockswap detect train: {e}", file=sys.stderr)
        raise SystemExit(e.exit_status) from None


def _train_mmdet(args, config, genotype, options: dict) -> dict:
    from ..core.files import check_output
    from ..detection.backbone import check_resnet, init_weights
    from ..detection.detectors import DetectorConfig
    from ..detection.train import check_processes

    if args.mmdet_config is None:
        raise BlockswapError("--backend mmdet needs --mmdet-config C.py (an mmdet config; see workflow/mmdet/)")
    odd = ["slim"] if args.slim else sorted(set(options) - {"norm", "gn_groups"})
    if odd:
        raise BlockswapError(f"--{odd[0].replace('_', '-')} is a torchvision-backend option; with --backend mmdet "
                             "the detector comes from --mmdet-config")
    if args.test_only or args.resume:
        raise BlockswapError("--backend mmdet resumes from <checkpoint>.work by itself and has no --test-only")
    if genotype is None:
        raise BlockswapError("name the backbone: --genotype G.json or --model resnet34 [--block B]")
    check_resnet(genotype)
    if args.init:
        init_weights(genotype, args.init)
    check_output(args.checkpoint, "--checkpoint")
    check_processes(DetectorConfig(**options), config)
    if args.train_images is None or args.val_images is None:
        raise BlockswapError("--backend mmdet needs --train-images/--train-annotations and --val-images/"
                             "--val-annotations")
    try:
        from ..integrations import mmdet_train
    except ImportError as e:
        raise BlockswapError(f"the mmdet backend is not installed ({e}); run `make mmdet`") from None
    return mmdet_train.train(args.mmdet_config, genotype, config, train=(args.train_images, args.train_annotations),
                             val=(args.val_images, args.val_annotations), out_checkpoint=args.checkpoint,
                             metrics_path=args.output, norm=options.get("norm"),
                             gn_groups=options.get("gn_groups") or 32, init=args.init, labels=parse_labels(args.label))


def _test_only(args, config, genotype, options: dict) -> dict:
    """Evaluate --checkpoint; a backbone or detector option given must agree with the checkpoint's."""
    from ..detection.detectors import DetectorConfig
    from ..detection.train import read_checkpoint, test_only

    val_set = _dataset(args.val_images, args.val_annotations, "val", train=False)
    if val_set is None:
        raise BlockswapError("--test-only evaluates --checkpoint on --val-images and --val-annotations")
    saved = read_checkpoint(args.checkpoint)
    detector = DetectorConfig.from_dict({**saved["detector"], **options})
    return test_only(args.checkpoint, val_set, config, genotype, detector, args.output)


def cmd_detect_train(args) -> None:
    from ..data.distributed import is_main
    from ..detection.detectors import DetectorConfig
    from ..detection.settings import FIELDS, DetectTrainConfig

    config = DetectTrainConfig(**{name: getattr(args, name) for name in FIELDS if FIELDS[name].metadata["cli"]},
                               progress=not args.quiet)
    genotype = _genotype(args)
    options = detector_options(args)
    DetectorConfig(**options)  # checks the detector settings before any data is read
    run = _train_mmdet if args.backend == "mmdet" else _test_only if args.test_only else _train
    metrics = run(args, config, genotype, options)
    if not args.output and is_main():  # data-parallel: one process prints
        print(json.dumps(metrics, indent=2))


def add_train_command(detect_subparsers) -> None:
    """Add `train` to the `detect` command group."""
    from ..detection.detectors import FIELDS as DETECTOR_FIELDS
    from ..detection.settings import FIELDS as TRAIN_FIELDS

    p = detect_subparsers.add_parser("train", help="train a detector around a genotype backbone (or --test-only)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--genotype", help="genotype JSON of the backbone (or a .jsonl with --index)")
    which.add_argument("--model", help="e.g. resnet34: that network with every block --block")
    p.add_argument("--block", help="with --model: the block type of every block (default Conv)")
    p.add_argument("--index", type=int_at_least(0), help="with --genotype C.jsonl: its genotype number I (from 0)")
    p.add_argument("--init", help="initialise the backbone from this classification checkpoint of the same "
                                  "genotype (default: from scratch, as the paper)")
    for what in ("train", "val"):
        p.add_argument(f"--{what}-images", help=f"folder of the {what} images")
        p.add_argument(f"--{what}-annotations", help=f"COCO instances JSON of the {what} images")
    p.add_argument("--backend", choices=("torchvision", "mmdet"), default="torchvision",
                   help="who builds and trains the detector (default torchvision; mmdet: from --mmdet-config)")
    p.add_argument("--mmdet-config", metavar="C.py", help="with --backend mmdet: the mmdet config of the detector")
    p.add_argument("--slim", type=int_at_least(32), metavar="CANVAS",
                   help="start from the CPU preset for CANVAS-pixel images (slim heads, anchors 8…128, no resizing)")
    for f in DETECTOR_FIELDS.values():
        add_field_option(p, f, given_only=True)
    for f in TRAIN_FIELDS.values():
        if f.metadata["cli"]:
            add_field_option(p, f)
    p.add_argument("--quiet", action="store_true", help="no progress bar (one line per epoch still)")
    p.add_argument("--checkpoint", required=True,
                   help="final checkpoint .pt, written when training is done (--test-only: the one to evaluate)")
    p.add_argument("--resume", help="resume checkpoint, rewritten after every epoch (default: <checkpoint>.resume)")
    p.add_argument("--test-only", action="store_true", help="only evaluate --checkpoint on the validation set")
    p.add_argument("-o", "--output", help="metrics JSON (default: print)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="copied into the metrics' labels (repeatable)")
    p.set_defaults(func=cmd_detect_train, outputs=("output", "resume"))
