"""COCO evaluation through pycocotools' `COCOeval`, for boxes and masks, and detector outputs as COCO results.

`coco_evaluate` returns {"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl"}, "segm": {…}}: `COCOeval.stats[0:6]`,
on its 0–1 scale, S/M/L split on the ground truth's `area` at 32² and 96². As in COCOeval, a value is -1
where it is undefined: no ground-truth instance in that area range.

Three pycocotools traps are handled here rather than left to the caller:
  * `COCO.loadRes` decides what kind of results it has from the first one, so an empty list (an untrained
    detector finds nothing) raises IndexError. The results are indexed here without loadRes; with no
    detections COCOeval then gives AP 0 wherever there is ground truth.
  * COCOeval stores the id of the ground truth a detection matched, and 0 as "unmatched": a match to an
    annotation whose id is 0 (a valid COCO id) counts as a false positive. Evaluation renumbers the ground
    truth's annotations 1..N; their ids mean nothing else to COCOeval.
  * loadRes gives results that carry both a box and a mask the box's area, so mask AP would split S/M/L
    by box area. Each kind is evaluated on its own: mask results get the mask's area and box.
No torch here: detector outputs are read through their tensor methods.
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..core.errors import BlockswapError
from ..core.files import read_json
from .instances import checked_segmentation, is_int, is_number, load_instances, quiet, rle_for_json, to_rle

IOU_TYPES = ("bbox", "segm")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]
MASK_THRESHOLD = 0.5  # a pixel is in a predicted mask when its probability exceeds this (torchvision's choice)


def coco_evaluate(gt: COCO | str | os.PathLike, predictions: list[dict] | str | os.PathLike,
                  iou_types: list[str] | None = None, log=None) -> dict:
    """Box AP (and mask AP when the predictions carry segmentations, or as `iou_types` says) of COCO results.

    `log`, if given, receives COCOeval's printed summary (all 12 numbers) of each kind.
    """
    gt_name = "ground truth" if isinstance(gt, COCO) else gt
    coco_gt = load_instances(gt.dataset if isinstance(gt, COCO) else gt, "COCO instances file (ground truth)")
    name = "predictions" if isinstance(predictions, list) else predictions
    if not isinstance(predictions, list):
        predictions = read_json(predictions, "COCO results file (predictions)")
    results = _checked_results(name, predictions, coco_gt, gt_name)
    if iou_types is None:
        iou_types = ["bbox", "segm"] if any("segmentation" in r for r in results) else ["bbox"]
    unknown = [t for t in iou_types if t not in IOU_TYPES]
    if unknown:
        raise BlockswapError(f"unknown evaluation kind {unknown[0]!r}; valid: {', '.join(IOU_TYPES)}")
    coco_gt = _renumbered(coco_gt)
    scores = {}
    for iou_type in iou_types:
        if iou_type == "segm":
            _check_masks(name, results, coco_gt, gt_name)
        evaluation = COCOeval(coco_gt, _results_coco(coco_gt, results, iou_type), iou_type)
        printed = io.StringIO()
        with redirect_stdout(printed):
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        scores[iou_type] = {stat: float(evaluation.stats[i]) for i, stat in enumerate(STAT_NAMES)}
        if log:
            summary = [line for line in printed.getvalue().splitlines() if line.lstrip().startswith("Average")]
            log("\n".join([f"{iou_type}:", *summary]))
    return scores


def _checked_results(name, predictions, gt: COCO, gt_name) -> list[dict]:
    """Each result names a ground-truth image and category and has a score, and a box or a mask."""
    if not isinstance(predictions, list):
        raise BlockswapError(f"{name}: expected a COCO results list [{{image_id, category_id, bbox, score}}, …]")
    for k, r in enumerate(predictions):
        where = f"{name}: prediction {k}"
        if not isinstance(r, dict):
            raise BlockswapError(f"{where} is not an object {{image_id, category_id, bbox, score}}")
        if not is_int(r.get("image_id")) or r["image_id"] not in gt.imgs:
            raise BlockswapError(f"{where}: image_id {r.get('image_id')!r} is not an image of {gt_name}")
        if not is_int(r.get("category_id")) or r["category_id"] not in gt.cats:
            raise BlockswapError(f"{where}: category_id {r.get('category_id')!r} is not a category of {gt_name} "
                                 f"({', '.join(map(str, sorted(gt.cats)))})")
        if not is_number(r.get("score")):
            raise BlockswapError(f"{where}: 'score' {r.get('score')!r} is not a finite number")
        box = r.get("bbox")
        if box is not None and not (isinstance(box, list) and len(box) == 4 and all(map(is_number, box))
                                    and min(box[2:]) >= 0):
            raise BlockswapError(f"{where}: 'bbox' {box!r} is not [x, y, width, height] with width, height ≥ 0")
        image = gt.imgs[r["image_id"]]
        if r.get("segmentation") is not None:
            if checked_segmentation(where, r["segmentation"], image["height"], image["width"]) is None:
                raise BlockswapError(f"{where}: 'segmentation' holds no polygon of three points or more")
        elif box is None:
            raise BlockswapError(f"{where} has neither a 'bbox' nor a 'segmentation'")
    return predictions


def _check_masks(name, results, gt: COCO, gt_name) -> None:
    missing = next((k for k, r in enumerate(results) if r.get("segmentation") is None), None)
    if missing is not None:
        raise BlockswapError(f"{name}: prediction {missing} has no 'segmentation'; mask AP needs one for each")
    box_only = next((a["id"] for a in gt.dataset["annotations"] if "segmentation" not in a), None)
    if box_only is not None:
        raise BlockswapError(f"{gt_name}: an annotation has no 'segmentation', so mask AP is undefined; "
                             "evaluate boxes only (--iou-type bbox)")


def _renumbered(gt: COCO) -> COCO:
    renumbered = COCO()
    renumbered.dataset = {**gt.dataset, "annotations": [{**a, "id": k + 1}
                                                        for k, a in enumerate(gt.dataset["annotations"])]}
    with quiet():
        renumbered.createIndex()
    return renumbered


def _results_coco(gt: COCO, results: list[dict], iou_type: str) -> COCO:
    """The results of one kind as the `COCO` object COCOeval reads (what loadRes builds, also when empty)."""
    annotations = []
    for k, r in enumerate(results):
        ann = {"id": k + 1, "image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"],
               "iscrowd": 0}
        if iou_type == "segm" or r.get("bbox") is None:
            image = gt.imgs[r["image_id"]]
            rle = to_rle(r["segmentation"], image["height"], image["width"])
            mask_box = [float(v) for v in mask_utils.toBbox(rle)]
        if iou_type == "segm":
            ann.update(segmentation=rle, area=float(mask_utils.area(rle)), bbox=mask_box)
        else:
            box = r["bbox"] if r.get("bbox") is not None else mask_box
            ann.update(bbox=box, area=float(box[2] * box[3]))
        annotations.append(ann)
    coco = COCO()
    coco.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"],
                    "annotations": annotations}
    with quiet():
        coco.createIndex()
    return coco


def predictions_from_outputs(outputs: list[dict], image_ids: list[int], category_ids: list[int]) -> list[dict]:
    """torchvision detector outputs (one dict per image) as COCO results.

    Boxes x1 y1 x2 y2 → x y width height; contiguous label i → `category_ids[i - 1]`; masks N×1×H×W
    probabilities → compressed RLE of the pixels above `MASK_THRESHOLD` (counts as a string, JSON-ready).
    """
    if len(outputs) != len(image_ids):
        raise ValueError(f"{len(outputs)} outputs for {len(image_ids)} image ids")
    results = []
    for output, image_id in zip(outputs, image_ids):
        boxes = output["boxes"].detach().cpu().tolist()
        labels = output["labels"].detach().cpu().tolist()
        scores = output["scores"].detach().cpu().tolist()
        rles = None
        if "masks" in output and len(boxes):
            masks = (output["masks"][:, 0] > MASK_THRESHOLD).detach().cpu().numpy().astype(np.uint8)
            rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
        for k, ((x1, y1, x2, y2), label, score) in enumerate(zip(boxes, labels, scores)):
            if not 1 <= label <= len(category_ids):
                raise ValueError(f"label {label} outside 1..{len(category_ids)} (0 is the background)")
            result = {"image_id": image_id, "category_id": category_ids[label - 1],
                      "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            if rles is not None:
                result["segmentation"] = rle_for_json(rles[k])
            results.append(result)
    return results
