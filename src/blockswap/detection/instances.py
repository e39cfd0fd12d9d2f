"""Reading a COCO instances JSON into pycocotools' `COCO`, checked first so that a bad file ends in one line.

The format in full generality: image, annotation and category ids are any integers (0 and negative ones
included) and category ids need not be contiguous; an annotation may be a crowd region (`iscrowd` 1); its
`segmentation` may be polygons, an uncompressed RLE (`counts` a list of run lengths), a compressed RLE
(`counts` a string), or absent (boxes only). Fields the format lets a writer leave out get their standard
values: `iscrowd` 0, `area` the mask's pixel count (the box's area when there is no mask). A polygon of
fewer than three points encloses nothing and is left out (pycocotools would read a 4-number polygon as a
box). No torch here.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ..core.errors import BlockswapError
from ..core.files import read_json


def quiet():
    """pycocotools prints progress on stdout, which carries the commands' JSON answers: catch it."""
    return contextlib.redirect_stdout(io.StringIO())


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def load_instances(source: str | os.PathLike | dict, what: str = "COCO instances file") -> COCO:
    """A checked, completed copy of the instances file (or of an already parsed dict) as a `COCO`."""
    name = source if not isinstance(source, dict) else "instances"
    data = read_json(source, what) if not isinstance(source, dict) else source
    if isinstance(data, list):
        raise BlockswapError(f"{name}: holds a list, as a COCO results (predictions) file does; expected a "
                             "COCO instances file: an object with images, annotations and categories")
    if not isinstance(data, dict):
        raise BlockswapError(f"{name}: expected a COCO instances object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise BlockswapError(f"{name}: no list '{key}'; not a COCO instances file "
                                 "(images, annotations and categories are all required)")
    images = _by_id(name, "image", data["images"], ("width", "height"))
    categories = _by_id(name, "category", data["categories"], ())
    annotations = [_checked_annotation(name, a, images, categories) for a in data["annotations"]]
    _by_id(name, "annotation", annotations, ())  # unique ids
    coco = COCO()
    coco.dataset = {**data, "annotations": annotations}
    with quiet():
        coco.createIndex()
    return coco


def _by_id(name, kind: str, records: list, positive_ints: tuple[str, ...]) -> dict:
    seen = {}
    for record in records:
        if not isinstance(record, dict) or not is_int(record.get("id")):
            raise BlockswapError(f"{name}: {kind} {str(record)[:60]} has no integer 'id'")
        if record["id"] in seen:
            raise BlockswapError(f"{name}: {kind} id {record['id']} appears twice")
        for key in positive_ints:
            if not is_int(record.get(key)) or record[key] < 1:
                raise BlockswapError(f"{name}: {kind} {record['id']} has no positive integer '{key}'")
        seen[record["id"]] = record
    return seen


def _checked_annotation(name, ann, images: dict, categories: dict) -> dict:
    """The annotation with its optional fields filled in; any fault names the annotation and the field."""
    if not isinstance(ann, dict) or not is_int(ann.get("id")):
        raise BlockswapError(f"{name}: annotation {str(ann)[:60]} has no integer 'id'")
    where = f"{name}: annotation {ann['id']}"
    if not is_int(ann.get("image_id")) or ann["image_id"] not in images:
        raise BlockswapError(f"{where}: image_id {ann.get('image_id')!r} is not among the images")
    if not is_int(ann.get("category_id")) or ann["category_id"] not in categories:
        raise BlockswapError(f"{where}: category_id {ann.get('category_id')!r} is not among the categories "
                             f"({', '.join(map(str, sorted(categories)))})")
    box = ann.get("bbox")
    if not (isinstance(box, list) and len(box) == 4 and all(map(is_number, box)) and min(box[2:]) >= 0):
        raise BlockswapError(f"{where}: 'bbox' {box!r} is not [x, y, width, height] with width, height ≥ 0")
    if ann.get("iscrowd", 0) not in (0, 1):
        raise BlockswapError(f"{where}: 'iscrowd' must be 0 or 1, not {ann['iscrowd']!r}")
    image = images[ann["image_id"]]
    out = {**ann, "iscrowd": int(ann.get("iscrowd", 0))}
    segmentation = checked_segmentation(where, ann.get("segmentation"), image["height"], image["width"])
    if segmentation is None:
        out.pop("segmentation", None)
    else:
        out["segmentation"] = segmentation
    if "area" not in ann:
        out["area"] = (float(mask_utils.area(to_rle(segmentation, image["height"], image["width"])))
                       if segmentation is not None else float(box[2] * box[3]))
    elif not is_number(ann["area"]) or ann["area"] < 0:
        raise BlockswapError(f"{where}: 'area' {ann['area']!r} is not a number ≥ 0")
    return out


def checked_segmentation(where: str, segmentation, height: int, width: int):
    """Polygons (short ones dropped), an RLE whose size is the image's, or None for boxes only."""
    if segmentation is None or segmentation == []:
        return None
    if isinstance(segmentation, list):
        if not all(isinstance(p, list) and all(map(is_number, p)) and len(p) % 2 == 0 for p in segmentation):
            raise BlockswapError(f"{where}: polygon segmentation must be lists of x, y numbers (an even count)")
        polygons = [p for p in segmentation if len(p) >= 6]
        return polygons or None
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (list, str)):
        if segmentation.get("size") != [height, width]:
            raise BlockswapError(f"{where}: RLE size {segmentation.get('size')!r} is not the image's "
                                 f"[height, width] = [{height}, {width}]")
        counts = segmentation["counts"]
        if isinstance(counts, list) and (not all(map(is_int, counts)) or sum(counts) != height * width):
            raise BlockswapError(f"{where}: uncompressed RLE counts must be integers summing to "
                                 f"height × width = {height * width}")
        return segmentation
    raise BlockswapError(f"{where}: 'segmentation' is neither polygons nor an RLE {{size, counts}}")


def to_rle(segmentation, height: int, width: int) -> dict:
    """Any checked segmentation as one compressed RLE (counts as bytes, as pycocotools' own functions take)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}


def decode(rle: dict):
    """An RLE as a uint8 H×W numpy mask. pycocotools 2.0.11 builds its array in a way numpy 2 deprecates,
    warning on every call; the result is right, so the warning is silenced here rather than repeated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return mask_utils.decode(rle)


def rle_for_json(rle: dict) -> dict:
    """A compressed RLE with `counts` as a string, the form a JSON file holds."""
    counts = rle["counts"]
    return {"size": [int(s) for s in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
