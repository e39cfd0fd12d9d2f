"""The embedded detection set: real Fashion-MNIST garments composed on grey canvases, written as COCO, so
that the detection stage runs on a CPU in minutes through the same reader and evaluator as COCO itself.

Each canvas (black, `canvas_size` pixels square) holds 2–6 items drawn at random from one split (train
canvases from the train split, val canvases from the test split):
  * size: each item first draws a COCO area range — small (< 32²), medium, large (> 96²) with weights
    `RANGE_WEIGHTS`, at most one large per canvas — then a target area log-uniform inside it; the item is
    resized (bilinear, aspect ratio jittered by up to 1.25×) so that its garment pixels cover about that
    area. Occlusion and the canvas edge move some items to a smaller range (on the default 160-pixel
    canvas about 48% of the instances end small, 45% medium, 7% large).
  * mask: the resized item's pixels of grey value ≥ `MASK_THRESHOLD`. Fashion-MNIST's background is 0, and
    resampling blurs a faint halo around each garment; 32 of 255 cuts the halo and keeps the dark parts of
    dark garments. Only mask pixels are painted, so the image is exactly its instances on black.
  * occlusion: items are painted largest first, so that later (smaller) ones lie on top and take their
    pixels out of the masks below. An item left with less than `MIN_VISIBLE` of its mask is removed from
    the canvas altogether (not just from the annotations: no unannotated fragment stays in the image), and
    the canvas is painted again without it, until every item left is visible enough.
  * annotations: the visible mask as a compressed RLE (`counts` a string), `area` its pixel count, `bbox`
    the tightest box around it, category ids 1..10 in Fashion-MNIST's class order, and the source item's
    index in its split (`fashion_mnist_index`).
The same arguments write byte-identical files: every draw comes from a generator seeded by (seed, split).

Layout: FOLDER/instances_train.json, FOLDER/instances_val.json, FOLDER/train/000001.png … (grey PNG), with
file names relative to FOLDER, so `CocoDetection(FOLDER, FOLDER / "instances_train.json")` reads it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .. import __version__
from ..core.errors import BlockswapError
from ..core.files import atomic_dir
from .instances import rle_for_json

CANVAS_SIZE = 160
MIN_CANVAS_SIZE = 64  # below it a medium item (≥ 32²) leaves little room for the others
ITEMS_PER_CANVAS = (2, 6)
MASK_THRESHOLD = 32
MIN_VISIBLE = 0.5
MIN_FILL = 0.15  # items whose garment covers less of their 28×28 square are nearly blank: not drawn
MIN_SIDE = 8
SMALL, LARGE = 32**2, 96**2  # COCO's area ranges: small < 32², large > 96²
# Target areas per range; large ones aim above 96² by a margin, as the items on top take some of their area.
AREA_RANGES = {"small": (10**2, SMALL), "medium": (SMALL, LARGE), "large": (1.5 * LARGE, None)}
RANGE_WEIGHTS = {"small": 0.40, "medium": 0.35, "large": 0.25}
LARGE_CANVAS_SHARE = 0.8  # the largest target area, as a share of the canvas
MIN_CANVAS_FOR_LARGE = math.ceil(math.sqrt(AREA_RANGES["large"][0] / LARGE_CANVAS_SHARE))  # 132 pixels
SPLITS = {"train": "train", "val": "test"}  # set split → Fashion-MNIST split
LICENSE = {"id": 1, "name": "MIT License", "url": "https://github.com/zalandoresearch/fashion-mnist"}


def build_embedded_set(output: str | os.PathLike, *, train_images: int, val_images: int, seed: int = 0,
                       canvas_size: int = CANVAS_SIZE, data_dir=None) -> dict:
    """Write the set into the new (or empty) folder `output`, atomically; returns the counts per split."""
    if canvas_size < MIN_CANVAS_SIZE:
        raise BlockswapError(f"canvas size {canvas_size} is below {MIN_CANVAS_SIZE} pixels")
    summary = {"folder": str(output), "seed": seed, "canvas_size": canvas_size}
    with atomic_dir(output) as folder:
        for split_code, (split, count) in enumerate((("train", train_images), ("val", val_images))):
            rng = np.random.default_rng([seed, split_code])
            data = _write_split(folder, split, count, rng, canvas_size, data_dir)
            data["info"]["seed"] = seed
            (folder / f"instances_{split}.json").write_text(json.dumps(data, separators=(",", ":")) + "\n")
            summary[split] = {"images": count, "annotations": len(data["annotations"]),
                              **area_range_counts(a["area"] for a in data["annotations"])}
    return summary


def _write_split(folder: Path, split: str, count: int, rng: np.random.Generator, canvas_size: int,
                 data_dir) -> dict:
    """Write the split's canvases as PNG files under folder/split; returns its COCO instances."""
    from ..data.datasets import FASHION_MNIST_CLASSES, load_dataset

    source = load_dataset("fashion-mnist", data_dir, split=SPLITS[split])
    items, labels = source.images[:, 0].numpy(), source.labels.numpy()
    usable = np.flatnonzero((items >= MASK_THRESHOLD).mean(axis=(1, 2)) >= MIN_FILL)
    (folder / split).mkdir()
    images, annotations = [], []
    for image_id in range(1, count + 1):
        canvas, instances = compose_canvas(items, labels, usable, rng, canvas_size)
        file_name = f"{split}/{image_id:06d}.png"
        Image.fromarray(canvas).save(folder / file_name, format="PNG")
        images.append({"id": image_id, "file_name": file_name, "width": canvas_size, "height": canvas_size,
                       "license": LICENSE["id"]})
        annotations += [{"id": len(annotations) + k + 1, "image_id": image_id, **inst}
                        for k, inst in enumerate(instances)]
    info = {"description": f"blockswap embedded detection set: Fashion-MNIST {SPLITS[split]}-split items on "
                           f"{canvas_size}×{canvas_size} canvases",
            "version": __version__, "contributor": "blockswap", "url": LICENSE["url"],
            "canvas_size": canvas_size, "mask_threshold": MASK_THRESHOLD, "min_visible": MIN_VISIBLE}
    categories = [{"id": k + 1, "name": name, "supercategory": "fashion"}
                  for k, name in enumerate(FASHION_MNIST_CLASSES)]
    return {"info": info, "licenses": [LICENSE], "images": images, "annotations": annotations,
            "categories": categories}


def area_range_counts(areas) -> dict:
    """Instances per COCO area range: small < 32², medium, large > 96²."""
    counts = {"small": 0, "medium": 0, "large": 0}
    for area in areas:
        counts["small" if area < SMALL else "medium" if area <= LARGE else "large"] += 1
    return counts


def compose_canvas(items: np.ndarray, labels: np.ndarray, usable: np.ndarray, rng: np.random.Generator,
                   canvas_size: int) -> tuple[np.ndarray, list[dict]]:
    """One canvas (uint8 H×W) and its instances {category_id, segmentation, area, bbox, iscrowd, …}, from
    the items (N×28×28) whose indices are in `usable`."""
    placed = []
    for _ in range(rng.integers(ITEMS_PER_CANVAS[0], ITEMS_PER_CANVAS[1] + 1)):
        has_large = any(p["range"] == "large" for p in placed)
        index = int(usable[rng.integers(len(usable))])
        placed.append(_place(items[index], rng, canvas_size, allow_large=not has_large)
                      | {"index": index, "label": int(labels[index])})
    return settle(placed, canvas_size)


def settle(placed: list[dict], canvas_size: int) -> tuple[np.ndarray, list[dict]]:
    """Paint the placed items largest first, remove those left less than MIN_VISIBLE visible, annotate the rest.

    An item is {"pixels": uint8 h×w, "mask": bool h×w, "x", "y": its top left corner, "label", "index"}.
    """
    placed = sorted((p for p in placed if p["mask"].any()), key=lambda p: -int(p["mask"].sum()))  # stable
    while True:
        canvas, owner = paint(placed, canvas_size)
        visible = [np.count_nonzero(owner == k) / np.count_nonzero(p["mask"]) for k, p in enumerate(placed)]
        if not placed or min(visible) >= MIN_VISIBLE:
            break
        del placed[int(np.argmin(visible))]  # the least visible first: removing it uncovers the others
    return canvas, [_instance(owner == k, p) for k, p in enumerate(placed)]


def _place(item: np.ndarray, rng: np.random.Generator, canvas_size: int, allow_large: bool) -> dict:
    """The item resized to a target area in a randomly drawn COCO area range, at a random position."""
    largest = LARGE_CANVAS_SHARE * canvas_size**2
    ranges = [r for r in AREA_RANGES if r != "large" or (allow_large and canvas_size >= MIN_CANVAS_FOR_LARGE)]
    weights = np.array([RANGE_WEIGHTS[r] for r in ranges])
    chosen = ranges[rng.choice(len(ranges), p=weights / weights.sum())]
    low, high = AREA_RANGES[chosen]
    area = math.exp(rng.uniform(math.log(low), math.log(high or largest)))
    aspect = math.exp(rng.uniform(-math.log(1.25), math.log(1.25)))
    side = math.sqrt(area / np.mean(item >= MASK_THRESHOLD))
    stretch = math.sqrt(aspect)
    width, height = (min(canvas_size, max(MIN_SIDE, round(side * f))) for f in (stretch, 1 / stretch))
    pixels = np.asarray(Image.fromarray(item).resize((width, height), Image.Resampling.BILINEAR))
    x, y = (int(rng.integers(canvas_size - s + 1)) for s in (width, height))
    return {"range": chosen, "pixels": pixels, "mask": pixels >= MASK_THRESHOLD, "x": x, "y": y}


def paint(placed: list[dict], canvas_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The canvas and, per pixel, the index of the item on top (-1: background), painting in list order."""
    canvas = np.zeros((canvas_size, canvas_size), np.uint8)
    owner = np.full((canvas_size, canvas_size), -1, np.int64)
    for k, p in enumerate(placed):
        h, w = p["mask"].shape
        region = (slice(p["y"], p["y"] + h), slice(p["x"], p["x"] + w))
        canvas[region][p["mask"]] = p["pixels"][p["mask"]]
        owner[region][p["mask"]] = k
    return canvas, owner


def _instance(visible: np.ndarray, placed: dict) -> dict:
    ys, xs = np.nonzero(visible)
    rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
    return {"category_id": placed["label"] + 1, "segmentation": rle_for_json(rle), "area": float(len(ys)),
            "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
            "iscrowd": 0, "fashion_mnist_index": placed["index"]}

