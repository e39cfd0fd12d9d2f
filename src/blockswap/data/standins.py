"""Stand-in data written in the real formats, for a rehearsal where the user's data are absent: CIFAR-10's python
batches, ImageNet's `train|val/<wnid>/*.JPEG`, a user's image folder of PNGs, a torchvision-format ResNet state
dict, a COCO instances file with polygon, RLE and crowd masks and category-id gaps. The pixels are seeded noise:
the readers are exercised for real (paths, formats, classes), nothing is learnt from them.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from ..core.files import write_text

STANDIN_SEED = 0


def _noise_images(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """n uint8 RGB images (n, h, w, 3): a smooth colour gradient per image plus noise, so JPEGs stay small."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(0, 255, (n, 1, 1, 3)) * (0.5 + 0.5 * (yy + xx)[None, :, :, None] / 2)
    return np.clip(base + rng.normal(0, 20, (n, h, w, 3)), 0, 255).astype(np.uint8)


def write_cifar10(folder: Path, per_batch: int = 20, n_test: int = 40) -> Path:
    """cifar-10-batches-py/ as torchvision's archive holds it: 5 pickled training batches, test_batch, meta."""
    rng = np.random.default_rng(STANDIN_SEED)
    root = folder / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        images = _noise_images(n, 32, 32, rng).transpose(0, 3, 1, 2).reshape(n, 3072)  # rows of R, G, B planes
        batch = {"batch_label": name, "labels": (np.arange(n) % 10).tolist(), "data": images,
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        (root / name).write_bytes(_python2_pickle(batch))
    meta = {"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": per_batch}
    (root / "batches.meta").write_bytes(_python2_pickle(meta))
    return folder


def _python2_pickle(mapping: dict) -> bytes:
    """A pickled dict as CIFAR-10's batches were written by Python 2: its keys and strings (str here, or lists
    of them) are Python 2 strings, which load as bytes with encoding="bytes" (as ours reads them) and as str
    with encoding="latin1" (as torchvision does). Assembled from opcodes; every other value is pickled on its
    own (its memo entries are written before they are read, so values never see each other's)."""
    def py2(text: str) -> bytes:
        raw = text.encode("latin1")
        return (pickle.SHORT_BINSTRING + bytes([len(raw)]) if len(raw) < 256
                else pickle.BINSTRING + len(raw).to_bytes(4, "little")) + raw

    def value(v) -> bytes:
        if isinstance(v, str):
            return py2(v)
        if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            return pickle.EMPTY_LIST + pickle.MARK + b"".join(map(py2, v)) + pickle.APPENDS
        return pickle.dumps(v, protocol=3)[2:-1]  # without its PROTO header and STOP

    items = b"".join(py2(k) + value(v) for k, v in mapping.items())
    return pickle.PROTO + bytes([3]) + pickle.EMPTY_DICT + pickle.MARK + items + pickle.SETITEMS + pickle.STOP


def write_imagenet(folder: Path, classes: int = 1000, per_class: int = 1) -> Path:
    """train/ and val/ with one `n0xxxxxxx` folder per class of `per_class` JPEGs of assorted sizes each."""
    from PIL import Image

    rng = np.random.default_rng(STANDIN_SEED)
    for split in ("train", "val"):
        for c in range(classes):
            d = folder / split / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = rng.integers(40, 120, 2)
                Image.fromarray(_noise_images(1, h, w, rng)[0]).save(d / f"{split}_{c}_{i}.JPEG", quality=75)
    return folder


def write_image_folder(folder: Path, classes: int = 3, per_class: int = 16, side: int = 32) -> Path:
    """DIR/train|val/class<c>/*.png: `per_class` RGB images of `side` px per class, as a user's folder is."""
    from PIL import Image

    rng = np.random.default_rng(STANDIN_SEED)
    for split in ("train", "val"):
        for c in range(classes):
            d = folder / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(_noise_images(per_class, side, side, rng)):
                Image.fromarray(image).save(d / f"{i}.png")
    return folder


def write_torchvision_resnet(path: Path, model: str, num_classes: int = 1000) -> Path:
    """A torchvision-format state dict of `model` (its own random initialisation), as `pretrained` takes."""
    import torch
    import torchvision

    torch.manual_seed(STANDIN_SEED)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(getattr(torchvision.models, model)(num_classes=num_classes).state_dict(), path)
    return path


COCO_CATEGORIES = ((1, "person"), (3, "car"), (18, "dog"), (44, "bottle"), (90, "toothbrush"))  # COCO's id gaps
COCO_SIZES = ((640, 480), (480, 640), (500, 375), (640, 427))  # (width, height) as COCO's images are


def write_coco(folder: Path, split: str, n: int, seed: int) -> tuple[Path, Path]:
    """`n` JPEGs at COCO's sizes and instances_<split>.json: per image a polygon, a compressed-RLE and, on
    every other image, a crowd with uncompressed RLE; category ids with COCO's gaps."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    images_dir = folder / split
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []

    def add(image_id, category, segmentation, box, area, crowd=0):
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                            "segmentation": segmentation, "bbox": [float(v) for v in box], "area": float(area),
                            "iscrowd": crowd})

    for i in range(n):
        w, h = COCO_SIZES[i % len(COCO_SIZES)]
        image_id = 1000 * (i + 1) + seed  # ids neither 0-based nor contiguous
        name = f"{image_id:012d}.jpg"
        Image.fromarray(_noise_images(1, h, w, rng)[0]).save(images_dir / name, quality=75)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        cats = [c for c, _ in COCO_CATEGORIES]
        x0, y0 = rng.integers(10, w // 3), rng.integers(10, h // 3)
        bw, bh = rng.integers(w // 6, w // 3), rng.integers(h // 6, h // 3)
        triangle = [x0, y0, x0 + bw, y0, x0 + bw // 2, y0 + bh]
        add(image_id, cats[i % len(cats)], [[float(v) for v in triangle]], (x0, y0, bw, bh), bw * bh / 2)
        m = np.zeros((h, w), np.uint8)
        cx, cy, r = w // 2 + w // 8, h // 2 + h // 8, min(w, h) // 6
        yy, xx = np.ogrid[:h, :w]
        m[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        add(image_id, cats[(i + 1) % len(cats)], {"size": [h, w], "counts": rle["counts"].decode()},
            mask_utils.toBbox(rle).tolist(), float(mask_utils.area(rle)))
        if i % 2 == 0:
            crowd = np.zeros((h, w), np.uint8)
            crowd[h - h // 4: h - 10, 10: w // 2] = 1
            flat = crowd.flatten(order="F")  # COCO's uncompressed RLE: column-major run lengths from a 0 run
            changes = np.flatnonzero(np.diff(flat)) + 1
            counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
            add(image_id, cats[(i + 2) % len(cats)], {"size": [h, w], "counts": counts},
                (10, h - h // 4, w // 2 - 10, h // 4 - 10), int(crowd.sum()), crowd=1)
    categories = [{"id": c, "name": name, "supercategory": "thing"} for c, name in COCO_CATEGORIES]
    ann = folder / "annotations" / f"instances_{split}.json"
    write_text(ann, json.dumps({"info": {"description": "blockswap rehearsal stand-in"}, "images": images,
                                "annotations": annotations, "categories": categories}))
    return images_dir, ann
