"""COCO instances reading, COCOeval through `blockswap detect evaluate`, and the embedded detection set.

The mini COCO files are written here, with every kind of id starting at 0, category ids with gaps listed out
of order, a crowd region, polygon, uncompressed-RLE and compressed-RLE masks, a box-only annotation, a
degenerate box and an image without annotations.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from blockswap.cli import main
from blockswap.detection.coco import CocoDetection, aspect_ratio_batches, collate
from blockswap.detection.evaluate import coco_evaluate, predictions_from_outputs
from blockswap.errors import BlockswapError


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a run of zeros."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + counts}


def block(shape, rows, cols) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[rows[0]: rows[1], cols[0]: cols[1]] = 1
    return mask


# Image 0 is 40 wide, 30 high (grey); image 5 is 32×32 (colour); image 9 (20×20) has no annotations.
MASK_RLE = block((30, 40), (15, 21), (20, 31))  # annotation 1, uncompressed RLE on image 0
MASK_COMPRESSED = block((32, 32), (4, 20), (10, 18))  # annotation 2, compressed RLE on image 5
MASK_CROWD = block((32, 32), (22, 30), (2, 30))  # annotation 3, a crowd region on image 5


def mini_coco(evaluable=False) -> dict:
    """evaluable=True leaves out the box-only and the empty-box annotations (mask AP needs masks everywhere)."""
    compressed = mask_utils.encode(np.asfortranarray(MASK_COMPRESSED))
    annotations = [
        {"id": 0, "image_id": 0, "category_id": 7, "iscrowd": 0, "area": 100.0, "bbox": [2, 3, 10, 10],
         "segmentation": [[2, 3, 12, 3, 12, 13, 2, 13]]},
        {"id": 1, "image_id": 0, "category_id": 0, "iscrowd": 0, "area": 66.0, "bbox": [20, 15, 11, 6],
         "segmentation": uncompressed_rle(MASK_RLE)},
        {"id": 2, "image_id": 5, "category_id": 3, "iscrowd": 0, "area": 128.0, "bbox": [10, 4, 8, 16],
         "segmentation": {"size": [32, 32], "counts": compressed["counts"].decode()}},
        {"id": 3, "image_id": 5, "category_id": 0, "iscrowd": 1, "area": 224.0, "bbox": [2, 22, 28, 8],
         "segmentation": uncompressed_rle(MASK_CROWD)},
    ]
    if not evaluable:
        annotations += [
            {"id": 4, "image_id": 5, "category_id": 7, "iscrowd": 0, "area": 0.0, "bbox": [5, 5, 0, 4]},
            {"id": 8, "image_id": 0, "category_id": 3, "bbox": [30.0, 20.0, 6.0, 5.0]},  # boxes only, no area
        ]
    return {
        "images": [{"id": 5, "file_name": "sub/b.png", "width": 32, "height": 32},
                   {"id": 0, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 9, "file_name": "c.png", "width": 20, "height": 20}],
        "annotations": annotations,
        "categories": [{"id": 0, "name": "zero"}, {"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
    }


@pytest.fixture
def mini(tmp_path):
    """(images folder, instances file, evaluable instances file)."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    Image.fromarray(np.arange(1200, dtype=np.uint8).reshape(30, 40)).save(images / "a.png")
    Image.fromarray(np.full((32, 32, 3), (10, 20, 30), np.uint8)).save(images / "sub" / "b.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(images / "c.png")
    (tmp_path / "instances.json").write_text(json.dumps(mini_coco()))
    (tmp_path / "gt.json").write_text(json.dumps(mini_coco(evaluable=True)))
    return images, tmp_path / "instances.json", tmp_path / "gt.json"


# ------------------------------------------------------------------------------------------ the reader
def test_reader_maps_ids_and_decodes_every_mask_encoding(mini):
    images, instances, _ = mini
    ds = CocoDetection(images, instances)
    assert ds.category_ids == [0, 3, 7] and ds.num_classes == 4
    assert ds.image_ids == [0, 5, 9] and len(ds) == 3

    image, target = ds[0]  # image 0: polygon (cat 7), uncompressed RLE (cat 0), box-only (cat 3)
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    assert torch.equal(image[0], image[2]) and image[1, 0, 5].item() == pytest.approx(5 / 255)
    assert target["image_id"] == 0
    assert target["boxes"].tolist() == [[2, 3, 12, 13], [20, 15, 31, 21], [30, 20, 36, 25]]
    assert target["labels"].tolist() == [3, 1, 2]
    assert target["masks"].shape == (3, 30, 40) and target["masks"].dtype == torch.uint8
    assert np.array_equal(target["masks"][0].numpy(), block((30, 40), (3, 13), (2, 12)))
    assert np.array_equal(target["masks"][1].numpy(), MASK_RLE)
    assert np.array_equal(target["masks"][2].numpy(), block((30, 40), (20, 25), (30, 36)))  # its box, filled
    assert target["area"].tolist() == [100.0, 66.0, 30.0]  # the box-only one: its box's area
    assert target["iscrowd"].tolist() == [0, 0, 0]

    image, target = ds[1]  # image 5: compressed RLE, a crowd region, a zero-width box (dropped)
    assert image[:, 0, 0].tolist() == pytest.approx([10 / 255, 20 / 255, 30 / 255])
    assert target["boxes"].tolist() == [[10, 4, 18, 20], [2, 22, 30, 30]]
    assert target["labels"].tolist() == [2, 1] and target["iscrowd"].tolist() == [0, 1]
    assert np.array_equal(target["masks"][0].numpy(), MASK_COMPRESSED)
    assert np.array_equal(target["masks"][1].numpy(), MASK_CROWD)

    _, target = ds[2]  # image 9: no annotations
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 20, 20)
    assert target["labels"].dtype == torch.int64


def test_training_items_leave_out_crowds_and_flip_by_seed(mini):
    images, instances, _ = mini
    ds = CocoDetection(images, instances, train=True, seed=3)
    _, target = ds[1]
    assert target["labels"].tolist() == [2] and target["iscrowd"].tolist() == [0]
    flips = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        image, target = ds[0]
        flipped = target["boxes"][0].tolist() == [40 - 12, 3, 40 - 2, 13]
        assert flipped or target["boxes"][0].tolist() == [2, 3, 12, 13]
        assert np.array_equal(target["masks"][0].numpy(), block((30, 40), (3, 13), (28, 38) if flipped else (2, 12)))
        assert image[0, 0, 0].item() == pytest.approx((39 if flipped else 0) / 255)
        flips.append(flipped)
    assert 0 < sum(flips) < 8  # both happen
    again = CocoDetection(images, instances, train=True, seed=3)
    again.set_epoch(5)
    ds.set_epoch(5)
    assert torch.equal(again[0][1]["boxes"], ds[0][1]["boxes"])


def test_batches_group_by_orientation_and_collate_keeps_lists(tmp_path):
    data = {"images": [{"id": i, "file_name": f"{i}.png", "width": 30 if i % 3 else 20, "height": 20 if i % 3 else 30}
                       for i in range(11)], "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    for info in data["images"]:
        Image.fromarray(np.zeros((info["height"], info["width"]), np.uint8)).save(tmp_path / info["file_name"])
    (tmp_path / "i.json").write_text(json.dumps(data))
    ds = CocoDetection(tmp_path, tmp_path / "i.json")
    batches = aspect_ratio_batches(ds, 2, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(11))
    for b in batches:
        assert len({ds[i][0].shape for i in b}) == 1  # one orientation per batch
    assert sorted(map(len, batches)) == [1, 2, 2, 2, 2, 2]  # 7 landscape: 3 pairs and one left; 4 portrait: 2 pairs
    assert aspect_ratio_batches(ds, 2, seed=1, epoch=0) == batches != aspect_ratio_batches(ds, 2, seed=1, epoch=1)
    images, targets = collate([ds[0], ds[1]])
    assert [im.shape for im in images] == [(3, 30, 20), (3, 20, 30)] and targets[1]["image_id"] == 1
