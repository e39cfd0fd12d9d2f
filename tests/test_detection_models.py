"""Detection backbones, the four detectors, detection training with resume, and Fisher through a detector.

Everything runs on tiny synthetic images (64 px, a few coloured rectangles with their masks) and the slim
preset, so the whole file takes seconds on one core.
"""

import contextlib
import math
import signal

import pytest
import torch
from torch import nn

from blockswap.cli import main
from blockswap.core.errors import BlockswapError
from blockswap.core.genotype import Genotype
from blockswap.core.recipe import learning_rate
from blockswap.data.datasets import TensorDataset, iterate_batches
from blockswap.detection import train as detection_train
from blockswap.detection.backbone import build_body, stage_channels, with_fpn
from blockswap.detection.build import build_detector
from blockswap.detection.detectors import DETECTORS, DetectorConfig
from blockswap.detection.engine import batch_order
from blockswap.detection.fisher import detection_fisher, detection_fisher_per_block
from blockswap.detection.settings import DetectTrainConfig
from blockswap.nn.models import create_model
from blockswap.training.checkpoint import save
from blockswap.training.train import Preempted

CANVAS = 64


class Rectangles(torch.utils.data.Dataset):
    """`n` canvases with 1–2 rectangles of two classes (class 1 red, class 2 green) and their masks, in the
    (image, target) form of `coco.CocoDetection`; `train=True` flips half of the reads (global RNG). A
    detection dataset as `detection.train` takes one: no COCO categories, no per-epoch augmentation."""
    category_ids = None

    def set_epoch(self, epoch: int) -> None:
        pass

    def __init__(self, n: int, seed: int = 0, train: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.items, self.train = [], train
        for i in range(n):
            image = torch.rand(3, CANVAS, CANVAS, generator=g) * 0.2
            boxes, labels, masks = [], [], []
            for _ in range(1 + i % 2):
                x0, y0 = torch.randint(0, CANVAS // 2, (2,), generator=g).tolist()
                w, h = torch.randint(12, CANVAS // 2, (2,), generator=g).tolist()
                label = int(torch.randint(1, 3, (), generator=g))
                image[label - 1, y0:y0 + h, x0:x0 + w] = 1.0
                mask = torch.zeros(CANVAS, CANVAS, dtype=torch.uint8)
                mask[y0:y0 + h, x0:x0 + w] = 1
                boxes.append([x0, y0, x0 + w, y0 + h])
                labels.append(label)
                masks.append(mask)
            self.items.append((image, {"boxes": torch.tensor(boxes, dtype=torch.float32),
                                       "labels": torch.tensor(labels), "masks": torch.stack(masks),
                                       "image_id": i}))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        image, target = self.items[i]
        if self.train and torch.rand(()) < 0.5:
            boxes = target["boxes"].clone()
            boxes[:, [0, 2]] = CANVAS - target["boxes"][:, [2, 0]]
            return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}
        return image, target


def slim(detector="maskrcnn", **kw):
    return DetectorConfig.slim(CANVAS, detector=detector, num_classes=3, **kw)


RESNET18 = Genotype.uniform("resnet18", "Conv", image_size=CANVAS)


# ------------------------------------------------------------------------------------------------ backbones
def test_backbone_channels_come_from_the_genotype_and_strides_are_4_8_16_32():
    g = Genotype("resnet34", ("ConvB4", "DConv", "G8B2") * 5 + ("Conv",), image_size=CANVAS)
    assert stage_channels(g) == [64, 128, 256, 512]
    backbone = with_fpn(build_body(g), g, out_channels=32)
    x = torch.randn(2, 3, CANVAS, CANVAS)
    stages = backbone.body(x)
    assert [tuple(t.shape[1:]) for t in stages.values()] == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
    # the channels really are the last block's output width in each stage
    layers = [getattr(backbone.body, f"layer{i}") for i in range(1, 5)]
    assert [layer[-1].bn2.num_features for layer in layers] == stage_channels(g)
    pyramid = backbone(x)
    assert list(pyramid) == ["0", "1", "2", "3", "pool"]
    assert [CANVAS // t.shape[-1] for t in pyramid.values()] == [4, 8, 16, 32, 64]
    assert all(t.shape[1] == 32 for t in pyramid.values())
    assert len(backbone.probes) == 16  # one Fisher probe per block


def test_a_bottleneck_genotype_is_a_detector_backbone():
    """ResNet-50's stages (256-2048 channels) under the FPN of a Faster R-CNN, its probes one per block; the
    detector trains a step and predicts."""
    g = Genotype("resnet50", ("NeckA4B2", "DConv", "NeckD", "Conv") * 4, image_size=CANVAS)
    assert stage_channels(g) == [256, 512, 1024, 2048]
    model = build_detector(g, slim("fasterrcnn"))
    assert len(model.backbone.probes) == 16
    levels = model.backbone(torch.randn(1, 3, CANVAS, CANVAS))
    assert [CANVAS // t.shape[-1] for t in levels.values()] == [4, 8, 16, 32, 64]
    target = {"boxes": torch.tensor([[4.0, 4.0, 40.0, 40.0]]), "labels": torch.tensor([1])}
    losses = model.train()([torch.rand(3, CANVAS, CANVAS)], [target])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        assert set(model.eval()([torch.rand(3, CANVAS, CANVAS)])[0]) >= {"boxes", "labels", "scores"}


def test_retinanet_and_fcos_take_p3_to_p7():
    for name in ("retinanet", "fcos"):
        model = build_detector(RESNET18, slim(name))
        levels = model.backbone(torch.randn(1, 3, CANVAS, CANVAS))
        assert [CANVAS // t.shape[-1] for t in levels.values()][:3] == [8, 16, 32]
        assert len(levels) == 5


def test_norm_settings():
    g = Genotype.uniform("resnet18", "ConvB4", image_size=CANVAS)  # layer1's bottleneck has 64/4 = 16 channels
    assert not any(isinstance(m, nn.BatchNorm2d) for m in build_body(g, "gn", gn_groups=8).modules())
    with pytest.raises(BlockswapError, match="32 groups cannot normalise the 16 channels of layer1.0.conv1.1"):
        build_body(g, "gn", gn_groups=32)
    sync = build_body(RESNET18, "syncbn")
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in sync.modules()) == 1 + 8 * 2 + 3  # stem, blocks, shortcuts
    with pytest.raises(BlockswapError, match="frozen_bn keeps the statistics of trained weights"):
        build_body(RESNET18, "frozen_bn")
    with pytest.raises(BlockswapError, match="needs a ResNet genotype"):
        build_body(Genotype.uniform("wrn-16-1", "Conv"))


def test_detector_settings_are_checked():
    with pytest.raises(BlockswapError, match="multiple of 32, got 48"):
        DetectorConfig(detector="fcos", fpn_channels=48)
    with pytest.raises(BlockswapError, match="5 positive sizes"):
        DetectorConfig(anchor_sizes=(8, 16))
    with pytest.raises(BlockswapError, match="Did you mean 'retinanet'"):
        DetectorConfig(detector="retinenet")
    assert DetectorConfig.from_dict(slim().to_dict()) == slim()
    assert slim().min_size == slim().max_size == CANVAS and slim().anchors == (8, 16, 32, 64, 128)
    # torchvision's defaults where nothing is said
    assert (DetectorConfig().fpn_channels, DetectorConfig().box_fc, DetectorConfig().rois_per_image) == (256, 1024, 512)
    assert DetectorConfig(detector="fcos").anchors == (8, 16, 32, 64, 128)


# ------------------------------------------------------------------------------------------------ detectors
@pytest.mark.parametrize("name", list(DETECTORS))
def test_a_few_steps_lower_each_detectors_loss(name):
    torch.manual_seed(0)
    model = build_detector(RESNET18, slim(name)).train()
    images, targets = zip(*[Rectangles(2, seed=1)[i] for i in range(2)])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(6):
        parts = model(list(images), list(targets))
        assert set(parts) == set(DETECTORS.get(name).losses)
        loss = sum(parts.values())
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.95 * losses[0], losses


def test_predictions_have_the_evaluators_fields():
    model = build_detector(RESNET18, slim("maskrcnn")).eval()
    with torch.no_grad():
        out = model([torch.rand(3, CANVAS, CANVAS)])[0]
    assert set(out) == {"boxes", "labels", "scores", "masks"}
    assert out["masks"].shape[1:] == (1, CANVAS, CANVAS)


# ------------------------------------------------------------------------------------------------- training
def test_learning_rate_warms_up_then_steps():
    c = DetectTrainConfig(epochs=4, lr=0.1, milestones=(2, 3), gamma=0.1, warmup_iters=10, warmup_factor=0.01)
    assert learning_rate(c, 0, 0, 100) == pytest.approx(0.001)
    assert learning_rate(c, 0, 5, 100) == pytest.approx(0.1 * (0.01 * 0.5 + 0.5))
    assert learning_rate(c, 0, 10, 100) == learning_rate(c, 1, 0, 100) == pytest.approx(0.1)
    assert learning_rate(c, 2, 0, 100) == pytest.approx(0.01) and learning_rate(c, 3, 0, 100) == pytest.approx(0.001)
    assert learning_rate(c, 0, 1, 4) == pytest.approx(0.1 * (0.01 * 2 / 3 + 1 / 3))  # warm-up capped at steps − 1
    cosine = DetectTrainConfig(epochs=4, lr=0.1, schedule="cosine", warmup_iters=0)
    assert [learning_rate(cosine, e, 0, 10) for e in range(4)] == pytest.approx(
        [0.1 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])


def test_batch_order_depends_only_on_seed_and_epoch():
    data = range(7)
    a = batch_order(data, 3, seed=1, epoch=2)
    assert a == batch_order(data, 3, seed=1, epoch=2) != batch_order(data, 3, seed=1, epoch=3)
    assert [len(b) for b in a] == [3, 3, 1] and sorted(sum(a, [])) == list(range(7))


def test_detection_draws_the_batch_order_classification_draws():
    n = 7
    images = torch.zeros((n, 1, 4, 4), dtype=torch.uint8)
    ids = TensorDataset("ids", images, torch.arange(n), tuple("abcdefg"), (0.0,), (1.0,), {})
    classified = [i for _, y in iterate_batches(ids, 3, train=True, seed=1, epoch=2) for i in y.tolist()]
    assert classified == sum(batch_order(range(n), 3, seed=1, epoch=2), [])[:6]  # classification drops the 7th


RUN = DetectTrainConfig(epochs=2, batch_size=2, lr=0.01, warmup_iters=1, device="cpu", threads=1, progress=False)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_resume_after_an_interruption_ends_equal_to_an_uninterrupted_run(tmp_path, monkeypatch):
    """Bitwise equal: the resumed run restores weights, momentum, RNG states (the RPN's and the flips' draws)
    and redraws the same batch order, on the same device and thread count."""
    data, detector = Rectangles(4, train=True), slim("fasterrcnn")
    whole = detection_train.train(RESNET18, detector, RUN, data, out_checkpoint=tmp_path / "whole.pt")
    assert [e["epoch"] for e in whole["epochs"]] == [1, 2] and whole["val_images"] is None
    assert set(whole["epochs"][0]) >= {"train_loss", "train_loss_classifier", "train_loss_objectness", "lr"}

    real, calls = detection_train.train_one_epoch, []

    def dies_in_epoch_2(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(detection_train, "train_one_epoch", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        detection_train.train(RESNET18, detector, RUN, data, out_checkpoint=tmp_path / "cut.pt")
    assert (tmp_path / "cut.pt.resume").exists() and not (tmp_path / "cut.pt").exists()
    monkeypatch.setattr(detection_train, "train_one_epoch", real)

    with pytest.raises(BlockswapError, match="other training settings .lr: 0.01 there, 0.02 now"):
        detection_train.train(RESNET18, detector, DetectTrainConfig(**{**RUN.to_dict(), "lr": 0.02}), data,
                              out_checkpoint=tmp_path / "cut.pt")
    with pytest.raises(BlockswapError, match="other detector settings .fpn_channels: 64 there, 32 now"):
        detection_train.train(RESNET18, slim("fasterrcnn", fpn_channels=32), RUN, data,
                              out_checkpoint=tmp_path / "cut.pt")
    resumed = detection_train.train(RESNET18, detector, RUN, data, out_checkpoint=tmp_path / "cut.pt")
    assert resumed["provenance"]["resumes"] == 1 and not (tmp_path / "cut.pt.resume").exists()
    a, b = _weights(tmp_path / "whole.pt"), _weights(tmp_path / "cut.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in whole["epochs"]]


class StopAfter(list):
    """A stop-request list that turns true (SIGTERM received) after `checks` checks."""

    def __init__(self, checks: int):
        super().__init__([signal.SIGTERM])
        self.checks = checks

    def __bool__(self):
        self.checks -= 1
        return self.checks < 0


def test_a_preempted_run_resumes_mid_epoch_to_the_same_weights(tmp_path, monkeypatch):
    data, detector = Rectangles(6, train=True), slim("retinanet")
    whole = detection_train.train(RESNET18, detector, RUN, data, out_checkpoint=tmp_path / "whole.pt")

    @contextlib.contextmanager
    def stops_in_epoch_2():
        yield StopAfter(4)  # epoch 1 checks before its 3 batches and after them; the 5th check, at its end, stops

    monkeypatch.setattr(detection_train, "_stop_requests", stops_in_epoch_2)
    with pytest.raises(Preempted, match="stopped by SIGTERM in epoch 2 after 0 steps") as e:
        detection_train.train(RESNET18, detector, RUN, data, out_checkpoint=tmp_path / "cut.pt")
    assert e.value.exit_status == 128 + signal.SIGTERM
    assert torch.load(tmp_path / "cut.pt.resume", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(detection_train, "_stop_requests", lambda: contextlib.nullcontext(StopAfter(1)))
    with pytest.raises(Preempted, match="in epoch 2 after 1 steps"):
        detection_train.train(RESNET18, detector, RUN, data, out_checkpoint=tmp_path / "cut.pt")
    state = torch.load(tmp_path / "cut.pt.resume", weights_only=True)
    assert (state["epoch"], state["step"], state["resumes"]) == (1, 1, 1)
    monkeypatch.setattr(detection_train, "_stop_requests", lambda: contextlib.nullcontext([]))
    resumed = detection_train.train(RESNET18, detector, RUN, data, out_checkpoint=tmp_path / "cut.pt")
    a, b = _weights(tmp_path / "whole.pt"), _weights(tmp_path / "cut.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["train_loss"] for e in resumed["epochs"]] == pytest.approx([e["train_loss"] for e in whole["epochs"]],
                                                                          rel=1e-12)


def _classification_checkpoint(path, genotype):
    torch.manual_seed(3)
    net = create_model(genotype)
    save({"genotype": genotype.to_dict(), "config": {}, "state_dict": net.state_dict(), "metrics": {},
          "provenance": {}}, path)
    return net


def test_test_only_refuses_a_set_without_coco_categories_in_one_line(tmp_path):
    """A checkpoint trained on data without COCO categories stores None; evaluating it on such a set is one
    error (COCO AP names the labels by the set's category ids), not a TypeError from list(None)."""
    run = DetectTrainConfig(**{**RUN.to_dict(), "epochs": 1})
    detection_train.train(RESNET18, slim("fasterrcnn"), run, Rectangles(2, train=True),
                          out_checkpoint=tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=True)["category_ids"] is None
    with pytest.raises(BlockswapError, match="the validation set has no COCO categories"):
        detection_train.test_only(tmp_path / "m.pt", Rectangles(2), run)


def test_backbone_from_a_classification_checkpoint(tmp_path):
    net = _classification_checkpoint(tmp_path / "cls.pt", Genotype.uniform("resnet18", "Conv", num_classes=10))
    body = build_body(RESNET18, init=tmp_path / "cls.pt")
    assert torch.equal(body.layer3[1].conv2.weight, net.layer3[1].conv2.weight)
    frozen = build_body(RESNET18, "frozen_bn", init=tmp_path / "cls.pt")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert torch.equal(frozen.layer1[0].bn1.running_var, net.layer1[0].bn1.running_var)
    assert sum(p.numel() for p in frozen.parameters()) < sum(p.numel() for p in body.parameters())


def test_a_bad_or_mismatched_checkpoint_is_one_line(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    _classification_checkpoint(tmp_path / "other.pt", Genotype.uniform("resnet18", "DConv"))
    for path, message in (("junk.pt", "not a readable checkpoint"), ("other.pt", "initialise from a checkpoint of "
                                                                                 "the same blocks"),
                          ("missing.pt", "checkpoint not found")):
        with pytest.raises(BlockswapError, match=message) as e:
            build_body(RESNET18, init=tmp_path / path)
        assert "\n" not in str(e.value)
    with pytest.raises(BlockswapError, match="not a blockswap detection checkpoint") as e:
        detection_train.load_detector(tmp_path / "other.pt")


def test_cli_errors_are_one_line_before_any_work(tmp_path, capsys):
    base = ["detect", "train", "--model", "resnet18", "--checkpoint", str(tmp_path / "m.pt")]
    assert main(base + ["--detector", "fcos", "--fpn-channels", "48"]) == 2
    assert main(base + ["--block", "DConv", "--slim", "64", "--norm", "gn", "--gn-groups", "24"]) == 2
    assert main(["detect", "train", "--checkpoint", str(tmp_path / "m.pt")]) == 2
    assert main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["blockswap detect: error: FCOS heads use GroupNorm(32): fpn_channels must be a multiple of 32, "
                   "got 48",
                   "blockswap detect: error: GroupNorm with 24 groups cannot normalise the 64 channels of bn1; "
                   "choose --gn-groups dividing every channel count of this genotype, or another --norm",
                   "blockswap detect: error: name the backbone: --genotype G.json or --model resnet34 [--block B]",
                   "blockswap detect: error: training needs --train-images and --train-annotations"]
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------- Fisher
def test_detection_fisher_is_finite_deterministic_and_tells_genotypes_apart():
    images, targets = zip(*[Rectangles(2, seed=2)[i] for i in range(2)])
    config = slim("maskrcnn")
    conv, dconv = RESNET18, Genotype.uniform("resnet18", "DConv", image_size=CANVAS)
    torch.manual_seed(123)
    before = torch.rand(1)
    first = detection_fisher(conv, images, targets, config, seed=0)
    assert math.isfinite(first) and first > 0
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG is left alone
    assert detection_fisher(conv, images, targets, config, seed=0) == first
    assert detection_fisher(conv, images, targets, config, seed=1) != first
    assert detection_fisher(dconv, images, targets, config, seed=0) != first
    per_block = detection_fisher_per_block(dconv, images, targets, config)
    assert per_block.shape == (8,) and torch.all(per_block >= 0)


# ------------------------------------------------------------------------------------------- the command
def _write_coco(folder, n, seed):
    """`n` PNG canvases of `Rectangles` and their COCO instances file (polygons; category ids 0 and 7)."""
    import json

    from PIL import Image

    data, images, annotations = Rectangles(n, seed=seed), [], []
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for i, (image, target) in enumerate(data.items):
        name = f"img/{seed}_{i}.png"
        Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()).save(folder / name)
        images.append({"id": 10 * i, "file_name": name, "width": CANVAS, "height": CANVAS})
        for (x0, y0, x1, y1), label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            annotations.append({"id": len(annotations), "image_id": 10 * i, "category_id": (0, 7)[label - 1],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
    path = folder / f"instances_{seed}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 0, "name": "red"}, {"id": 7, "name": "green"}]}))
    return path


def test_detect_train_then_test_only(tmp_path, capsys):
    import json

    pytest.importorskip("blockswap.detection.coco")
    train_json, val_json = _write_coco(tmp_path, 4, seed=0), _write_coco(tmp_path, 2, seed=1)
    data = ["--train-images", str(tmp_path), "--train-annotations", str(train_json), "--val-images", str(tmp_path),
            "--val-annotations", str(val_json)]
    run = ["detect", "train", "--model", "resnet18", "--detector", "maskrcnn", "--slim", str(CANVAS), "--epochs", "1",
           "--batch-size", "2", "--lr", "0.005", "--warmup-iters", "1", "--threads", "1", "--device", "cpu", "--quiet",
           "--checkpoint", str(tmp_path / "m.pt")]
    assert main(run + data + ["-o", str(tmp_path / "metrics.json"), "--label", "method=blockswap"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["detector"]["num_classes"] == 3 and metrics["detector"]["fpn_channels"] == 64
    assert set(metrics["bbox"]) == set(metrics["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert metrics["labels"] == {"method": "blockswap"} and metrics["provenance"]["seed"] == 0
    assert metrics["backbone_params"] == 11_689_512 - 513_000  # torchvision's ResNet-18 without its fc
    assert set(metrics["epochs"][0]) >= {"train_loss_mask", "bbox_AP", "segm_AP"}
    assert not (tmp_path / "m.pt.resume").exists()

    test = ["detect", "train", "--test-only", "--checkpoint", str(tmp_path / "m.pt"), "--threads", "1",
            "--device", "cpu", "--eval-batch-size", "2"]
    assert main(test + data[4:] + ["-o", str(tmp_path / "test.json")]) == 0
    again = json.loads((tmp_path / "test.json").read_text())
    assert again["bbox"] == metrics["bbox"] and again["segm"] == metrics["segm"]
    capsys.readouterr()
    assert main(test + data[4:] + ["--detector", "fasterrcnn"]) == 2
    assert "other detector settings (detector: 'maskrcnn' there, 'fasterrcnn' now)" in capsys.readouterr().err
    assert main(test + data[4:] + ["--model", "resnet18", "--block", "DConv"]) == 2
    assert "but this run has resnet18" in capsys.readouterr().err
    assert main(test + data[4:6] + ["--val-annotations", str(train_json)]) == 0  # the same categories: fine
    assert metrics["category_ids"] == [0, 7]


def test_detect_score_ranks_backbones_by_fisher_through_the_detector(tmp_path):
    import json

    coco = pytest.importorskip("blockswap.detection.coco")
    from blockswap.core.scores import read_scores
    from blockswap.detection.fisher import fisher_batch

    annotations = _write_coco(tmp_path, 4, seed=0)
    instances = json.loads(annotations.read_text())
    for ann in instances["annotations"][::2]:  # crowd regions, which training (and so scoring) leaves out
        ann["iscrowd"] = 1
    annotations.write_text(json.dumps(instances))
    genotypes = [Genotype.uniform("resnet18", b, image_size=CANVAS) for b in ("Conv", "DConv", "ConvB2")]
    (tmp_path / "c.jsonl").write_text("".join(g.to_json() + "\n" for g in genotypes))
    assert main(["detect", "score", str(tmp_path / "c.jsonl"), "--images", str(tmp_path), "--annotations",
                 str(annotations), "--batch-size", "2", "--slim", str(CANVAS), "--detector", "fasterrcnn",
                 "--seed", "3", "--threads", "1", "--quiet", "-o", str(tmp_path / "s.csv"),
                 "--best", str(tmp_path / "best.json")]) == 0
    rows, columns = read_scores(tmp_path / "s.csv")
    assert columns == {"fisher": "fisher"} and [int(r["rank"]) for r in rows] == [1, 2, 3]
    train_set = coco.CocoDetection(tmp_path, annotations, train=True, seed=3)  # what `detect train --seed 3` reads
    first = coco.aspect_ratio_batches(train_set, 2, seed=3, epoch=0)[0]
    images, targets = fisher_batch(train_set, 2, seed=3, batches=coco.aspect_ratio_batches)
    assert [t["image_id"] for t in targets] == [train_set.image_ids[i] for i in first]
    config = slim("fasterrcnn")
    expected = {g.id: detection_fisher(g, images, targets, config, seed=3, head_seed=3) for g in genotypes}
    assert {r["id"]: r["fisher"] for r in rows} == pytest.approx(expected, rel=1e-12)
    evaluation_view = fisher_batch(coco.CocoDetection(tmp_path, annotations), 2, 3, coco.aspect_ratio_batches)
    assert sum(len(t["boxes"]) for t in evaluation_view[1]) > sum(len(t["boxes"]) for t in targets)  # the crowds'
    assert detection_fisher(genotypes[0], *evaluation_view, config, seed=3, head_seed=3) != \
        pytest.approx(expected[genotypes[0].id], rel=1e-6)
    assert [r["id"] for r in rows] == sorted(expected, key=expected.get, reverse=True)
    assert json.loads((tmp_path / "best.json").read_text()) == next(g.to_dict() for g in genotypes
                                                                   if g.id == rows[0]["id"])
