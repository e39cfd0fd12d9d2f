"""detect: object detection on COCO-format data. Each subcommand is one `add_*` function below, so that
`detect train` and others join the same group."""

from __future__ import annotations

import sys

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


def add_commands(sub) -> None:
    p = sub.add_parser("detect", help="object detection: COCO evaluation, the embedded detection set")
    dsub = p.add_subparsers(dest="detect_command", required=True, metavar="SUBCOMMAND")
    add_evaluate(dsub)
    add_make_set(dsub)
    detect_train.add_train_command(dsub)
    detect_score.add_score_command(dsub)
