"""COCO instances reading, COCOeval through `blockswap detect evaluate`, and the embedded detection set.

The mini COCO files are written here, with every kind of id starting at 0, category ids with gaps listed out
of order, a crowd region, polygon, uncompressed-RLE and compressed-RLE masks, a box-only annotation, a
degenerate box and an image without annotations.
"""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from blockswap.cli import main
from blockswap.core.errors import BlockswapError
from blockswap.detection.coco import CocoDetection, aspect_ratio_batches, collate
from blockswap.detection.embedded import MIN_VISIBLE, build_embedded_set, settle
from blockswap.detection.engine import batch_order
from blockswap.detection.evaluate import coco_evaluate, predictions_from_outputs
from blockswap.detection.instances import decode, to_rle

from conftest import require_fashion_mnist


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
    never = CocoDetection(images, instances, train=True, seed=3, flip=0.0)
    for epoch in range(8):
        never.set_epoch(epoch)
        assert never[0][1]["boxes"][0].tolist() == [2, 3, 12, 13]


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
    order = sum(batch_order(ds, len(ds), seed=1, epoch=0), [])  # the same permutation, binned as it comes
    assert [i for b in batches if b[0] % 3 for i in b] == [i for i in order if i % 3]
    assert [i for b in batches if not b[0] % 3 for i in b] == [i for i in order if not i % 3]
    images, targets = collate([ds[0], ds[1]])
    assert [im.shape for im in images] == [(3, 30, 20), (3, 20, 30)] and targets[1]["image_id"] == 1


# ------------------------------------------------------------------------------------------ evaluation
def ground_truth_outputs(ds: CocoDetection, shift: float = 0.0) -> list[dict]:
    """Detector outputs that are the ground truth (crowds left out), score 1, boxes moved right by `shift`
    of their width; masks as the N×1×H×W probabilities a Mask R-CNN returns."""
    outputs = []
    for i in range(len(ds)):
        _, target = ds[i]
        keep = target["iscrowd"] == 0
        boxes = target["boxes"][keep].clone()
        boxes[:, 0::2] += shift * (boxes[:, 2:3] - boxes[:, 0:1])
        outputs.append({"boxes": boxes, "labels": target["labels"][keep], "scores": torch.ones(int(keep.sum())),
                        "masks": target["masks"][keep][:, None].float() * 0.9})
    return outputs


def evaluate_cli(gt, predictions: list, tmp_path, *extra) -> tuple[int, dict | None]:
    (tmp_path / "dt.json").write_text(json.dumps(predictions))
    out = tmp_path / "ap.json"
    code = main(["detect", "evaluate", "--annotations", str(gt), "--predictions", str(tmp_path / "dt.json"),
                 "-o", str(out), *extra])
    return code, json.loads(out.read_text()) if code == 0 else None


def test_ground_truth_as_predictions_scores_ap_one_for_boxes_and_masks(mini, tmp_path):
    images, _, gt = mini
    ds = CocoDetection(images, gt)
    predictions = predictions_from_outputs(ground_truth_outputs(ds), ds.image_ids, ds.category_ids)
    assert predictions[0] == {"image_id": 0, "category_id": 7, "bbox": [2.0, 3.0, 10.0, 10.0], "score": 1.0,
                              "segmentation": predictions[0]["segmentation"]}
    assert mask_utils.area(predictions[0]["segmentation"]) == 100  # 0.9 > 0.5: the whole mask
    code, ap = evaluate_cli(gt, predictions, tmp_path)
    assert code == 0
    every_instance_small = {"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "APs": 1.0, "APm": -1.0, "APl": -1.0}
    assert ap == {"bbox": pytest.approx(every_instance_small), "segm": pytest.approx(every_instance_small)}


def test_annotation_id_zero_would_count_as_a_false_positive_in_plain_cocoeval(mini):
    """Why evaluation renumbers annotations: COCOeval marks 'unmatched' with id 0."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, _, gt = mini
    ds = CocoDetection(images, gt)
    predictions = predictions_from_outputs(ground_truth_outputs(ds), ds.image_ids, ds.category_ids)
    plain_gt = COCO(str(gt))
    plain = COCOeval(plain_gt, plain_gt.loadRes([{k: v for k, v in p.items() if k != "segmentation"}
                                                 for p in predictions]), "bbox")
    plain.evaluate(), plain.accumulate(), plain.summarize()
    assert plain.stats[0] < 0.9
    assert coco_evaluate(gt, predictions)["bbox"]["AP"] == pytest.approx(1.0)


def test_shifted_boxes_lower_ap_by_their_iou(mini):
    """A shift by s of the width leaves IoU (1-s)/(1+s): 0.818 at s=0.1 (a hit at thresholds 0.50…0.80, 7 of
    the 10), 0.667 at s=0.2 (0.50…0.65, 4 of 10)."""
    images, _, gt = mini
    ds = CocoDetection(images, gt)
    ap = {}
    for shift in (0.0, 0.1, 0.2):
        predictions = predictions_from_outputs(ground_truth_outputs(ds, shift), ds.image_ids, ds.category_ids)
        boxes_only = [{k: v for k, v in p.items() if k != "segmentation"} for p in predictions]
        ap[shift] = coco_evaluate(gt, boxes_only)
        assert list(ap[shift]) == ["bbox"]
    assert [ap[s]["bbox"]["AP"] for s in (0.0, 0.1, 0.2)] == pytest.approx([1.0, 0.7, 0.4])
    assert [ap[s]["bbox"]["AP75"] for s in (0.0, 0.1, 0.2)] == pytest.approx([1.0, 1.0, 0.0])
    assert ap[0.2]["bbox"]["AP50"] == pytest.approx(1.0) and ap[0.2]["bbox"]["AP"] < 0.5


def test_no_predictions_score_zero_where_there_is_ground_truth(mini, tmp_path):
    _, _, gt = mini
    zero = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": 0.0, "APm": -1.0, "APl": -1.0}
    assert evaluate_cli(gt, [], tmp_path) == (0, {"bbox": zero})
    assert evaluate_cli(gt, [], tmp_path, "--iou-type", "bbox", "segm") == (0, {"bbox": zero, "segm": zero})


@pytest.mark.parametrize("case, message", [
    ("missing", "dt.json: COCO results file (predictions) not found"),
    ("category", "prediction 0: category_id 4 is not a category of"),
    ("image", "prediction 0: image_id 1 is not an image of"),
    ("swapped", "holds a list, as a COCO results (predictions) file does"),
])
def test_evaluate_errors_are_one_line_and_exit_2(mini, tmp_path, capsys, case, message):
    _, _, gt = mini
    dt = tmp_path / "dt.json"
    good = {"image_id": 0, "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5}
    if case != "missing":
        bad = {"category": {**good, "category_id": 4}, "image": {**good, "image_id": 1}}.get(case, good)
        dt.write_text(json.dumps([bad]))
    args = ["--annotations", str(dt), "--predictions", str(gt)] if case == "swapped" else \
           ["--annotations", str(gt), "--predictions", str(dt)]
    assert main(["detect", "evaluate", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("blockswap detect: error: ")


def test_reader_errors_name_the_file(mini, tmp_path):
    images, instances, _ = mini
    data = mini_coco()
    data["images"][2]["width"] = 21
    (tmp_path / "wide.json").write_text(json.dumps(data))
    with pytest.raises(BlockswapError, match=r"c\.png is 20×20 pixels but its annotations say 21×20"):
        CocoDetection(images, tmp_path / "wide.json")[2]
    data = mini_coco()
    data["annotations"][1]["segmentation"]["size"] = [32, 32]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(BlockswapError, match=r"bad\.json: annotation 1: RLE size \[32, 32\] is not the image's"):
        CocoDetection(images, tmp_path / "bad.json")
    (images / "c.png").unlink()
    with pytest.raises(BlockswapError, match=r"c\.png not found \(1 of the 3 images"):
        CocoDetection(images, instances)


# ------------------------------------------------------------------------------------ the embedded set
@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The set built twice with one seed, by the command and by the function (and the command's summary),
    from the real Fashion-MNIST."""
    data_dir = require_fashion_mnist()
    root = tmp_path_factory.mktemp("embedded")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["detect", "make-set", "--train-images", "40", "--val-images", "12", "--seed", "7",
                     "--data-dir", str(data_dir), "-o", str(root / "a")]) == 0
    build_embedded_set(root / "b", train_images=40, val_images=12, seed=7, data_dir=data_dir)
    return root / "a", root / "b", json.loads(printed.getvalue())


def files_of(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_embedded_set_is_seeded_and_fills_every_area_range(embedded):
    a, b, summary = embedded
    files = files_of(a)
    assert len(files) == 2 + 40 + 12 and files == files_of(b)
    assert summary["train"]["images"] == 40 and summary["val"]["images"] == 12 and summary["canvas_size"] == 160
    for split in ("train", "val"):
        counts = summary[split]
        assert min(counts["small"], counts["medium"], counts["large"]) > 0, counts
        assert counts["small"] + counts["medium"] + counts["large"] == counts["annotations"]
        assert counts["annotations"] >= counts["images"]  # a canvas keeps at least its top item


def test_embedded_annotations_are_the_visible_pixels(embedded):
    a, _, _ = embedded
    data = json.loads((a / "instances_train.json").read_text())
    assert [c["id"] for c in data["categories"]] == list(range(1, 11)) and data["categories"][9]["name"] == "Ankle boot"
    per_image: dict[int, list[np.ndarray]] = {}
    for ann in data["annotations"]:
        assert isinstance(ann["segmentation"]["counts"], str)
        mask = decode(to_rle(ann["segmentation"], 160, 160))
        ys, xs = np.nonzero(mask)
        assert ann["area"] == len(ys) > 0
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        per_image.setdefault(ann["image_id"], []).append(mask)
    for image in data["images"]:
        masks = np.stack(per_image[image["id"]])
        assert masks.sum(axis=0).max() == 1  # occlusion: no pixel belongs to two instances
        pixels = np.array(Image.open(a / image["file_name"]))
        assert pixels.shape == (160, 160) and np.array_equal(pixels > 0, masks.any(axis=0))


def test_later_items_occlude_earlier_ones_and_hidden_ones_leave_the_canvas():
    def item(side, value, x, y, label):
        return {"pixels": np.full((side, side), value, np.uint8), "mask": np.ones((side, side), bool),
                "x": x, "y": y, "label": label, "index": label}

    # The small item lies on top of the big one, which keeps 300 of its 400 pixels.
    canvas, instances = settle([item(10, 200, 5, 5, 1), item(20, 100, 0, 0, 0)], 32)
    big, small = instances
    assert (big["category_id"], big["area"], big["bbox"]) == (1, 300.0, [0.0, 0.0, 20.0, 20.0])
    assert (small["category_id"], small["area"], small["bbox"]) == (2, 100.0, [5.0, 5.0, 10.0, 10.0])
    big_mask = decode(to_rle(big["segmentation"], 32, 32))
    assert big_mask[5:15, 5:15].sum() == 0 and big_mask[:20, :20].sum() == 300
    assert canvas[7, 7] == 200 and canvas[2, 2] == 100 and canvas[25, 25] == 0
    # A 14×14 item under a 12×12 one keeps 52/196 < MIN_VISIBLE: it leaves the canvas, pixels and all.
    canvas, instances = settle([item(14, 100, 0, 0, 0), item(12, 200, 0, 0, 3)], 32)
    assert 52 / 196 < MIN_VISIBLE
    assert [i["category_id"] for i in instances] == [4] and np.count_nonzero(canvas) == 144


def test_embedded_set_loads_with_pycocotools_and_the_reader(embedded):
    from pycocotools.coco import COCO

    a, _, summary = embedded
    coco = COCO(str(a / "instances_val.json"))
    assert len(coco.getImgIds()) == 12 and len(coco.getAnnIds()) == summary["val"]["annotations"]
    ds = CocoDetection(a, a / "instances_val.json")
    image, target = ds[0]
    anns = coco.imgToAnns[ds.image_ids[0]]
    assert image.shape == (3, 160, 160) and torch.equal(image[0], image[1])
    assert target["labels"].tolist() == [a["category_id"] for a in anns]  # ids 1..10 are labels 1..10
    assert target["masks"].sum(dim=(1, 2)).tolist() == [a["area"] for a in anns]
    assert torch.equal((image[0] > 0), target["masks"].any(dim=0))


def test_make_set_refuses_a_folder_with_files(tmp_path, capsys):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "keep.txt").write_text("mine")
    assert main(["detect", "make-set", "--train-images", "1", "--val-images", "1", "-o", str(tmp_path / "set")]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "set").iterdir()] == ["keep.txt"]


def test_make_set_that_fails_leaves_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "new" / "set"
    assert main(["detect", "make-set", "--train-images", "1", "--val-images", "1", "--data-dir",
                 str(tmp_path / "empty"), "-o", str(out)]) == 2
    assert "Fashion-MNIST file" in capsys.readouterr().err
    assert list((tmp_path / "new").iterdir()) == []  # neither the folder nor its temporary twin
