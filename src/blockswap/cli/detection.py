"""detect: object detection on COCO-format data. Each subcommand is one `add_*` function below, so that
`detect train` and others join the same group."""

from __future__ import annotations

import sys

from ..core.errors import BlockswapError
from . import detect_score, detect_train
from .args import emit, int_at_least


# --- detect evaluate ---------------------------------------------------------------------------------
def cmd_evaluate(args) -> None:
    from ..detection.evaluate import coco_evaluate

    log = lambda text: print(text, file=sys.stderr)  # noqa: E731 - stdout carries the JSON answer
    emit(coco_evaluate(args.annotations, args.predictions, args.iou_type, log=log), args.output)


def add_evaluate(dsub) -> None:
    from ..detection.evaluate import IOU_TYPES

    q = dsub.add_parser("evaluate", help="COCO AP of predictions (pycocotools COCOeval), boxes and masks",
                        description="Prints {\"bbox\": {AP, AP50, AP75, APs, APm, APl}, \"segm\": {…}} on COCOeval's "
                                    "0–1 scale (-1: no ground truth in that area range); segm when the "
                                    "predictions carry segmentations. COCOeval's full summary goes to stderr.")
    q.add_argument("--annotations", required=True, metavar="GT.json", help="COCO instances file (ground truth)")
    q.add_argument("--predictions", required=True, metavar="DT.json",
                   help="COCO results file: [{image_id, category_id, bbox [x, y, w, h], score, "
                        "segmentation (RLE, optional)}, …]")
    q.add_argument("--iou-type", nargs="+", choices=IOU_TYPES,
                   help="what to evaluate (default: bbox, and segm when the predictions carry segmentations)")
    q.add_argument("-o", "--output", help="write the JSON here instead of printing it")
    q.set_defaults(func=cmd_evaluate, outputs=("output",))


# --- detect make-set ---------------------------------------------------------------------------------
def cmd_make_set(args) -> None:
    from ..detection.embedded import build_embedded_set

    emit(build_embedded_set(args.output, train_images=args.train_images, val_images=args.val_images,
                            seed=args.seed, canvas_size=args.canvas_size, data_dir=args.data_dir), None)


def add_make_set(dsub) -> None:
    from ..detection.embedded import CANVAS_SIZE, MIN_CANVAS_FOR_LARGE, MIN_CANVAS_SIZE

    q = dsub.add_parser("make-set", help="the embedded detection set: Fashion-MNIST garments on canvases, as COCO",
                        description="Writes FOLDER/instances_{train,val}.json and FOLDER/{train,val}/*.png "
                                    "(train canvases from the train split, val from the test split) and prints "
                                    "the instance counts per COCO area range.")
    q.add_argument("--dataset", choices=("fashion-mnist",), default="fashion-mnist",
                   help="source of the items (its garments lie on a black background, which gives their masks)")
    q.add_argument("--data-dir", help="folder of the dataset's files (default: the standard places)")
    q.add_argument("--train-images", type=int_at_least(1), required=True, help="training canvases")
    q.add_argument("--val-images", type=int_at_least(1), required=True, help="validation canvases")
    q.add_argument("--seed", type=int_at_least(0), default=0, help="the same seed writes byte-identical files")
    q.add_argument("--canvas-size", type=int_at_least(MIN_CANVAS_SIZE), default=CANVAS_SIZE,
                   help=f"canvas side in pixels (default {CANVAS_SIZE}; large objects, over 96², need "
                        f"≥ {MIN_CANVAS_FOR_LARGE})")
    q.add_argument("-o", "--output", required=True, metavar="FOLDER", help="a new (or empty) folder")
    q.set_defaults(func=cmd_make_set, output_dirs=("output",))


# --- detect show -------------------------------------------------------------------------------------
def _named_model(text: str) -> tuple[str, str]:
    import argparse

    title, sep, path = text.partition("=")
    if not sep or not title or not path:
        raise argparse.ArgumentTypeError(f"expected TITLE=CHECKPOINT, got {text!r}")
    return title, path


def cmd_show(args) -> None:
    import torch

    from ..detection.coco import CocoDetection
    from ..detection.show import detections_figure
    from ..report.figures import FIGURE_FORMATS, save_figure
    from ..training.engine import resolve_device

    bad = [p for p in args.output if p.rsplit(".", 1)[-1] not in FIGURE_FORMATS]
    if bad:
        raise BlockswapError(f"-o {bad[0]}: the suffix picks the format; use one of "
                             f"{', '.join('.' + f for f in FIGURE_FORMATS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = CocoDetection(args.images, args.annotations, train=False)
    fig = detections_figure(args.model, data, args.count, args.score_threshold, args.top, resolve_device(args.device))
    emit({"written": [str(save_figure(fig, p)) for p in args.output]}, None)


def add_show(dsub) -> None:
    q = dsub.add_parser("show", help="a figure of trained detectors' boxes and masks beside the ground truth",
                        description="Rows: the first --count images of the set; columns: the ground truth, then "
                                    "each --model's detections scoring at least --score-threshold (at most --top "
                                    "per image).")
    q.add_argument("--model", type=_named_model, action="append", required=True, metavar="TITLE=CHECKPOINT",
                   help="a final `detect train` checkpoint and its column title (repeatable, in column order)")
    q.add_argument("--images", required=True, help="folder of the images")
    q.add_argument("--annotations", required=True, help="their COCO instances JSON (the ground truth drawn)")
    q.add_argument("--count", type=int_at_least(1), default=4, help="images shown (default 4)")
    q.add_argument("--score-threshold", type=float, default=0.5, help="draw detections scoring at least this")
    q.add_argument("--top", type=int_at_least(1), default=10,
                   help="…and at most this many per image, the highest-scoring (default 10)")
    q.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    q.add_argument("--threads", type=int_at_least(1), help="torch threads (default: torch's choice)")
    q.add_argument("-o", "--output", nargs="+", required=True, metavar="FILE",
                   help="the figure's files, format by suffix (.png, .pdf, .svg)")
    q.set_defaults(func=cmd_show, outputs=("output",))


def add_commands(sub) -> None:
    p = sub.add_parser("detect", help="object detection: COCO evaluation, the embedded detection set")
    dsub = p.add_subparsers(dest="detect_command", required=True, metavar="SUBCOMMAND")
    add_evaluate(dsub)
    add_make_set(dsub)
    add_show(dsub)
    detect_train.add_train_command(dsub)
    detect_score.add_score_command(dsub)
