"""`CocoDetection`: a COCO instances file and its image folder as the (image, target) pairs torchvision's
detectors take; the train-time flip; batches grouped by aspect ratio.

Item i is `(image, target)`:
  image   float32 3×H×W in [0, 1]. Grey images are repeated into three channels: torchvision's detectors
          normalise with a three-value image_mean/std, and COCO itself mixes grey and colour images.
  target  boxes    float32 N×4, x1 y1 x2 y2 in pixels
          labels   int64 N, contiguous 1..K (0 is the detectors' background); label i is category
                   `category_ids[i - 1]` — COCO's category ids may have gaps and start anywhere
          masks    uint8 N×H×W (0×H×W without instances); an annotation without a segmentation (boxes
                   only) gets its box filled, so a Mask R-CNN batch never lacks a mask
          image_id int, the image's COCO id;  area float32 N (COCO's);  iscrowd int64 N
Crowd regions are left out of training targets (train=True), as torchvision's references do: a crowd box
marks many objects, so as one positive it would teach the wrong box. With train=False they stay (iscrowd 1),
and evaluation keeps them: COCOeval reads the ground truth from `.coco`, where a detection on a crowd region
is ignored instead of counted false.
Boxes are clipped to the image, and one with no width or height left is dropped (with its mask): torchvision's
detectors refuse degenerate boxes in training, and no detection can overlap an empty box anyway.

Images are listed in ascending id (as torchvision's CocoDetection and COCOeval do), including images without
annotations: torchvision's detectors take empty targets, which teach what is not an object.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..core.errors import BlockswapError
from ..data.datasets import epoch_generator
from .instances import decode, load_instances, to_rle


class CocoDetection(torch.utils.data.Dataset):
    """The images of `annotation_file` (paths relative to `images_dir`); train=True mirrors each image (its
    boxes and masks too) with probability `flip` — 0.5, the standard detection augmentation; 0 where the
    objects have a handedness to keep (Fashion-MNIST's shoes all face left).

    The flip of item i depends only on (seed, epoch, i) — call `set_epoch` each epoch — so that a resumed
    run and any number of DataLoader workers see the same images. (Workers hold a copy of the dataset, so
    a loader with persistent_workers would keep the epoch it started with: make the loader per epoch.)
    """

    def __init__(self, images_dir: str | os.PathLike, annotation_file: str | os.PathLike, train: bool = False,
                 *, seed: int = 0, flip: float = 0.5):
        self.coco = load_instances(annotation_file)
        self.images_dir = Path(images_dir)
        self.train = train
        self.seed = seed
        self.flip = flip
        self.epoch = 0
        self.category_ids = sorted(self.coco.cats)
        self.label_of = {c: i + 1 for i, c in enumerate(self.category_ids)}
        self.image_ids = sorted(self.coco.imgs)
        self._check_image_files(annotation_file)

    def _check_image_files(self, annotation_file) -> None:
        """Every listed image must be there before training starts, not at hour three."""
        names = [self.coco.imgs[i].get("file_name") for i in self.image_ids]
        bad = next((i for i, n in zip(self.image_ids, names) if not isinstance(n, str) or not n), None)
        if bad is not None:
            raise BlockswapError(f"{annotation_file}: image {bad} has no 'file_name'")
        missing = [n for n in names if not (self.images_dir / n).is_file()]
        if missing:
            raise BlockswapError(f"{self.images_dir / missing[0]} not found ({len(missing)} of the {len(names)} "
                                 f"images of {annotation_file} are missing); pass the folder holding its images")

    @property
    def num_classes(self) -> int:
        """Categories plus the background class, as torchvision's detectors count them."""
        return len(self.category_ids) + 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        image = self._read_image(info)
        anns = [a for a in self.coco.imgToAnns[image_id] if not (self.train and a["iscrowd"])]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).tolist()
        anns = [a for a, k in zip(anns, keep) if k]
        boxes = boxes[torch.tensor(keep, dtype=torch.bool)].float()
        masks = torch.zeros((len(anns), height, width), dtype=torch.uint8)
        for mask, ann, box in zip(masks, anns, boxes):
            if "segmentation" in ann:
                mask.copy_(torch.from_numpy(decode(to_rle(ann["segmentation"], height, width))))
            else:
                x1, y1, x2, y2 = box.tolist()
                mask[int(y1): int(np.ceil(y2)), int(x1): int(np.ceil(x2))] = 1
        if self.train and np.random.default_rng([self.seed, self.epoch, index]).random() < self.flip:
            image, masks = image.flip(-1), masks.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        target = {
            "boxes": boxes,
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64),
            "masks": masks,
            "image_id": image_id,
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
            "iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.int64),
        }
        return image, target

    def _read_image(self, info: dict) -> torch.Tensor:
        path = self.images_dir / info["file_name"]
        try:
            with Image.open(path) as img:
                pixels = np.array(img.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise BlockswapError(f"{path}: cannot read the image ({e}); replace the file") from None
        if pixels.shape[:2] != (info["height"], info["width"]):
            raise BlockswapError(f"{path} is {pixels.shape[1]}×{pixels.shape[0]} pixels but its annotations "
                                 f"say {info['width']}×{info['height']}; the image and the annotations disagree")
        return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255)


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """(images, targets) as two lists: detectors take images of different sizes, so nothing is stacked."""
    return [image for image, _ in batch], [target for _, target in batch]


def aspect_ratio_batches(dataset: CocoDetection, batch_size: int, *, seed: int = 0, epoch: int = 0,
                         drop_last: bool = False) -> list[list[int]]:
    """Batches of indices whose images are all landscape (width ≥ height) or all portrait, each bin filled
    in the order of `engine.batch_order` (the permutation of `data.epoch_generator(seed, epoch)`); a
    DataLoader's `batch_sampler`.

    Why: a detector pads every image of a batch to the batch's largest height and width, so a portrait image
    among landscape ones at COCO scale (640×480 and 480×640) computes almost twice the pixels it holds.
    Two bins suffice for COCO, whose images are nearly all 4:3 one way or the other. The last, incomplete
    batch of each bin is kept (or dropped with drop_last).
    """
    if batch_size < 1:
        raise BlockswapError(f"batch size must be ≥ 1, got {batch_size}")
    order = torch.randperm(len(dataset), generator=epoch_generator(seed, epoch))
    pending: dict[bool, list[int]] = {True: [], False: []}
    batches = []
    for index in order.tolist():
        info = dataset.coco.imgs[dataset.image_ids[index]]
        group = pending[info["width"] >= info["height"]]
        group.append(index)
        if len(group) == batch_size:
            batches.append(group.copy())
            group.clear()
    if not drop_last:
        batches += [group for group in pending.values() if group]
    return batches
