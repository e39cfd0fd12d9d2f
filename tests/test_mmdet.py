"""The mmdetection backend (`make mmdet`), run for real: the BlockSwapResNet backbone in mmdet's registry against
the torchvision backend's body, every config in workflow/mmdet/, mmdet's COCO metric, training and resume.
Skipped where mmdet is not installed (the default install); .ci/run installs it and runs these."""

import json
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
from torch import nn

# The mmdetection stack (mmengine 0.10, mmcv 2.x, their dependencies) raises deprecation warnings from its own
# code that we cannot fix; pyproject.toml turns them into errors everywhere else. Ours are checked there.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    pytest.importorskip("mmdet", reason="the mmdet backend is opt-in: `make mmdet`")
    pytest.importorskip("mmcv.ops", reason="mmcv without its compiled ops: reinstall with `make mmdet`")
    from mmdet.registry import MODELS  # noqa: E402
    from mmdet.utils import register_all_modules  # noqa: E402
    from mmengine.config import Config  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]

from torchvision.models._utils import IntermediateLayerGetter  # noqa: E402

from blockswap.cli import main  # noqa: E402
from blockswap.core.errors import BlockswapError  # noqa: E402
from blockswap.core.genotype import Genotype  # noqa: E402
from blockswap.detection.backbone import build_body  # noqa: E402
from blockswap.detection.embedded import build_embedded_set  # noqa: E402
from blockswap.detection.settings import DetectTrainConfig  # noqa: E402
from blockswap.integrations import mmdet_train  # noqa: E402
from blockswap.integrations.mmdet import BlockSwapResNet  # noqa: E402
from blockswap.nn.models import create_model  # noqa: E402
from blockswap.training.checkpoint import save  # noqa: E402
from test_workflow import ROOT  # noqa: E402

from conftest import require_fashion_mnist  # noqa: E402

register_all_modules()
CONFIGS = sorted((ROOT / "workflow/mmdet").glob("*.py"))
MIXED = Genotype("resnet18", ("DConv", "Conv", "A2B2", "G4B2", "Conv", "DConv", "A4B2", "Conv"))
SLIM = {"retinanet": ROOT / "workflow/mmdet/retinanet_blockswap_slim_embedded.py",
        "maskrcnn": ROOT / "workflow/mmdet/mask-rcnn_blockswap_slim_embedded.py"}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A small embedded set (real Fashion-MNIST garments on 160-px canvases): 12 train, 6 val canvases."""
    folder = tmp_path_factory.mktemp("mmdet") / "set"
    build_embedded_set(folder, train_images=12, val_images=6, seed=0, data_dir=require_fashion_mnist())
    return {"train": (folder, folder / "instances_train.json"), "val": (folder, folder / "instances_val.json")}


def test_backbone_outputs_equal_the_torchvision_backends_body():
    """Same weights, same four stage outputs, to the bit."""
    body = build_body(MIXED)
    ours = BlockSwapResNet(genotype=MIXED.to_dict(), norm_cfg=dict(type="BN"))
    missing, unexpected = ours.load_state_dict(body.state_dict(), strict=False)
    assert missing == [] and sorted(unexpected) == ["fc.bias", "fc.weight"]
    getter = IntermediateLayerGetter(body, {f"layer{i}": str(i) for i in range(1, 5)}).eval()
    x = torch.randn(2, 3, 96, 128)
    expected = list(getter(x).values())
    got = ours.eval()(x)
    assert [t.shape[1] for t in got] == [64, 128, 256, 512] == ours.out_channels
    assert [t.shape[-2:] for t in got] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_backbone_options_behave_like_mmdets_resnet():
    built = MODELS.build(dict(type="BlockSwapResNet", model="resnet34", block="DConv", out_indices=(1, 3),
                              frozen_stages=1, norm_eval=True))
    assert isinstance(built, BlockSwapResNet) and built.genotype == Genotype.uniform("resnet34", "DConv")
    assert built.out_channels == [128, 512]
    assert [t.shape[1] for t in built(torch.randn(1, 3, 64, 64))] == [128, 512]
    built.train()
    frozen = [*built.conv1.parameters(), *built.bn1.parameters(), *built.layer1.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in built.layer2.parameters())
    assert not built.layer1.training and built.layer2.training
    assert all(not m.training for m in built.modules() if isinstance(m, nn.BatchNorm2d))  # norm_eval

    gn = BlockSwapResNet(model="resnet18", blocks=list(MIXED.blocks), norm_cfg=dict(type="GN", num_groups=16))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    assert {m.num_groups for m in gn.modules() if isinstance(m, nn.GroupNorm)} == {16}
    fixed = BlockSwapResNet(model="resnet18", norm_cfg=dict(type="BN", requires_grad=False), norm_eval=False)
    assert not any(p.requires_grad for m in fixed.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    fixed.train()
    assert fixed.bn1.training  # statistics still train without norm_eval
    sync = BlockSwapResNet(model="resnet18", norm_cfg=dict(type="SyncBN"))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in sync.modules())
    assert not hasattr(BlockSwapResNet(model="resnet18", out_indices=(0, 1)), "layer3")  # later stages never run


@pytest.mark.parametrize("kwargs,message", [
    ({}, "give genotype"),
    ({"model": "resnet18", "blocks": ["Conv"]}, "field 'blocks' has 1 names but resnet18 has 8 blocks"),
    ({"model": "resnet18", "norm_cfg": {"type": "LN"}}, "norm_cfg type 'LN' is not supported"),
    ({"model": "resnet18", "out_indices": (4,)}, "out_indices must be stages 0-3"),
    ({"model": "wrn-16-1"}, "needs a ResNet genotype"),
])
def test_backbone_mistakes_are_one_line(kwargs, message):
    with pytest.raises(BlockswapError, match=message) as e:
        BlockSwapResNet(**kwargs)
    assert "\n" not in str(e.value)


def test_pretrained_init_cfg_loads_a_blockswap_checkpoint(tmp_path):
    torch.manual_seed(5)
    net = create_model(MIXED)
    save({"genotype": MIXED.to_dict(), "config": {}, "state_dict": net.state_dict(), "metrics": {},
          "provenance": {}}, tmp_path / "student.pt")
    ours = BlockSwapResNet(genotype=MIXED.to_dict(), init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path /
                                                                                                   "student.pt")))
    ours.init_weights()  # as the Runner calls it: the loaded weights stay
    saved = net.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in ours.state_dict().items())
    assert len(ours.state_dict()) == len(saved) - 2  # all but the classifier's weight and bias
    with pytest.raises(BlockswapError, match="initialise from a checkpoint of the same blocks"):
        BlockSwapResNet(model="resnet18", init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "student.pt")))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_builds_its_detector(path):
    """Each config parses (mmdet's `mmdet::` bases included) and its detector is built and counted."""
    cfg = Config.fromfile(str(path))
    model = MODELS.build(cfg.model)
    assert isinstance(model.backbone, BlockSwapResNet) and cfg.model.neck.in_channels == [64, 128, 256, 512]
    heads = [cfg.model.get("bbox_head"), cfg.model.get("roi_head", {}).get("bbox_head")]
    slim = "slim" in path.name
    assert [h["num_classes"] for h in heads if h] == [10 if slim else 80]
    assert cfg.train_dataloader.batch_size == (4 if slim else 2)
    assert ("SyncBN" in repr(cfg.model.backbone.norm_cfg)) == (not slim)
    dataset = cfg.train_dataloader.dataset
    expected = ("results/default/detection/set/", "instances_train.json") if slim else \
        ("data/coco/", "annotations/instances_train2017.json")
    assert (dataset.data_root, dataset.ann_file) == expected


def test_coco_metric_on_the_ground_truth_is_one(embedded):
    """mmdet's CocoMetric gives AP 1.0, boxes and masks, when the predictions are the validation set's truth."""
    from mmdet.evaluation import CocoMetric
    from pycocotools import mask as mask_utils

    images, annotations = embedded["val"]
    coco = json.loads(annotations.read_text())
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: i for i, c in enumerate(cats)}
    metric = CocoMetric(ann_file=str(annotations), metric=["bbox", "segm"])
    metric.dataset_meta = {"classes": tuple(c["name"] for c in cats)}
    samples = []
    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float32)
        masks = torch.from_numpy(mask_utils.decode([a["segmentation"] for a in anns])).permute(2, 0, 1).bool()
        samples.append({"img_id": image["id"], "ori_shape": (image["height"], image["width"]),
                        "pred_instances": {"bboxes": boxes, "scores": torch.ones(len(anns)), "masks": masks,
                                           "labels": torch.tensor([label_of[a["category_id"]] for a in anns])}})
    metric.process({}, samples)
    results = metric.evaluate(len(samples))
    assert results["coco/bbox_mAP"] == 1.0 and results["coco/segm_mAP"] == 1.0


def _config(**kw) -> DetectTrainConfig:
    return DetectTrainConfig(**{"epochs": 4, "batch_size": 2, "lr": 0.01, "warmup_iters": 0, "schedule": "cosine",
                                "eval_batch_size": 6, "threads": 1, "progress": False, **kw})


@pytest.mark.parametrize("detector", ["retinanet", "maskrcnn"])
def test_a_few_epochs_lower_the_loss_and_write_table4_metrics(tmp_path, embedded, detector):
    out = tmp_path / "model.pt"
    metrics = mmdet_train.train(SLIM[detector], MIXED, _config(), train=embedded["train"], val=embedded["val"],
                                out_checkpoint=out, metrics_path=tmp_path / "metrics.json",
                                labels={"method": "blockswap"})
    losses = [e["train_loss"] for e in metrics["epochs"]]
    # The same 12 images each epoch, seeded: the epoch's mean loss falls every epoch.
    assert len(losses) == 4 and all(b < a for a, b in zip(losses, losses[1:])), losses
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    kinds = ["bbox", "segm"] if detector == "maskrcnn" else ["bbox"]
    for kind in kinds:
        assert set(metrics[kind]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert all(-1 <= v <= 1 for v in metrics[kind].values())
    assert ("segm" in metrics) == (detector == "maskrcnn")
    assert metrics["backend"] == "mmdet" and metrics["labels"] == {"method": "blockswap"}
    assert metrics["train_images"] == 12 and metrics["val_images"] == 6
    assert metrics["backbone_params"] == sum(p.numel() for n, p in create_model(MIXED).named_parameters()
                                             if not n.startswith("fc."))
    ckpt = torch.load(out, weights_only=False)
    assert ckpt["backend"] == "mmdet" and Genotype.from_dict(ckpt["genotype"]) == MIXED
    assert not list((tmp_path / "model.pt.work").glob("*.pth"))  # epoch checkpoints go once the run is done


def _weights(path) -> dict:
    return torch.load(path, weights_only=False)["state_dict"]


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, embedded):
    """SIGKILL after the first epoch checkpoint; the rerun resumes from it and ends bitwise where one run ends.
    RetinaNet without flips: its sampling is deterministic, so the only state is what the checkpoint holds."""
    config = tmp_path / "noflip.py"
    config.write_text(f"_base_ = ['{SLIM['retinanet']}']\n"
                      "train_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadImageFromFile'), "
                      "dict(type='LoadAnnotations', with_bbox=True), dict(type='PackDetInputs')]))\n")
    (images, train_ann), (_, val_ann) = embedded["train"], embedded["val"]

    def command(out, lr="0.01"):
        return [sys.executable, "-m", "blockswap", "detect", "train", "--backend", "mmdet", "--mmdet-config",
                str(config), "--model", "resnet18", "--block", "DConv", "--train-images", str(images),
                "--train-annotations", str(train_ann), "--val-images", str(images), "--val-annotations",
                str(val_ann), "--epochs", "3", "--batch-size", "2", "--lr", lr, "--warmup-iters", "2",
                "--eval-batch-size", "6", "--threads", "1", "--quiet", "--checkpoint", str(out)]

    subprocess.run(command(tmp_path / "whole.pt"), check=True, capture_output=True)
    run = subprocess.Popen(command(tmp_path / "cut.pt"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = tmp_path / "cut.pt.work/last_checkpoint"
    while not marker.exists() and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert marker.exists() and not (tmp_path / "cut.pt").exists()
    changed = subprocess.run(command(tmp_path / "cut.pt", lr="0.02"), capture_output=True, text=True)
    assert changed.returncode == 2 and changed.stderr.count("\n") == 1
    assert "holds checkpoints of another run (its config differs)" in changed.stderr
    resumed = subprocess.run(command(tmp_path / "cut.pt"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Load checkpoint from" in resumed.stdout + resumed.stderr
    whole, cut = _weights(tmp_path / "whole.pt"), _weights(tmp_path / "cut.pt")
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)


def test_cli_refuses_torchvision_options_with_mmdet_in_one_line(tmp_path, capsys):
    base = ["detect", "train", "--backend", "mmdet", "--model", "resnet18", "--checkpoint", str(tmp_path / "m.pt")]
    assert main(base) == 2
    assert main(base + ["--mmdet-config", str(SLIM["retinanet"]), "--slim", "160"]) == 2
    assert main(base + ["--mmdet-config", str(SLIM["retinanet"]), "--fpn-channels", "32"]) == 2
    assert main(base + ["--mmdet-config", str(SLIM["retinanet"]), "--test-only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["blockswap detect: error: --backend mmdet needs --mmdet-config C.py (an mmdet config; see "
                   "workflow/mmdet/)",
                   "blockswap detect: error: --slim is a torchvision-backend option; with --backend mmdet the "
                   "detector comes from --mmdet-config",
                   "blockswap detect: error: --fpn-channels is a torchvision-backend option; with --backend mmdet "
                   "the detector comes from --mmdet-config",
                   "blockswap detect: error: --backend mmdet resumes from <checkpoint>.work by itself and has no "
                   "--test-only"]
    assert not list(tmp_path.iterdir())


def test_workflow_detection_stage_on_the_mmdet_backend(tmp_path):
    """The detection stage alone, tiny, with detection.backend mmdet: both backbones trained by mmdet, Table 4."""
    from test_workflow import snakemake, write_config

    config = write_config(tmp_path / "mmdet.yaml", **{"detection.enabled": True, "detection.only": True,
                                                     "detection.backend": "mmdet", "detection.slim": 160,
                                                     "detection.samples": 2,
                                                     "detection.embedded": {"train_images": 8, "val_images": 4},
                                                     "detection.recipe": {"epochs": 1, "batch_size": 2,
                                                                          "warmup_iters": 0, "eval_batch_size": 4}})
    out = snakemake("--cores", 2, "--configfile", config, workdir=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    results = tmp_path / "results/test"
    table = (results / "tables/detection.md").read_text()
    assert "mmdet detectors" in table and "BlockSwap" in table and "resnet34-G(N)" in table
    for run in ("blockswap", "moonshine/DConv"):
        metrics = json.loads((results / f"detection/{run}/metrics.json").read_text())
        assert metrics["backend"] == "mmdet" and metrics["train_images"] == 8 and set(metrics) >= {"bbox", "segm"}
    assert not (results / "figures/detections.png").exists()
