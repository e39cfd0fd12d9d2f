"""Pretrained teachers: torchvision's ResNet weights imported as a blockswap checkpoint, offline.

torchvision's resnet34/resnet18 are built without weights (nothing is downloaded) and their state dicts
saved with torch.save, as a file fetched with `weights="IMAGENET1K_V1"` would be. The ImageNet test set is a
folder of a few generated JPEGs in 3 classes, so the ResNets get a 3-class head.
"""

import json

import numpy as np
import pytest
import torch
import torchvision

from blockswap import cli
from blockswap.training.checkpoint import load_model
from blockswap.training.engine import evaluate
from blockswap.training.pretrained import import_weights

from conftest import write_jpeg

CLASSES = 3


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """train/ and val/ with CLASSES class folders of 2 random 64×48 JPEGs each."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(CLASSES):
            folder = root / split / f"n0{c}"
            folder.mkdir(parents=True)
            for i in range(2):
                image = torch.from_numpy(rng.integers(0, 256, (3, 48, 64), dtype=np.uint8))
                write_jpeg(image, folder / f"{i}.JPEG")
    return str(root)


def _torchvision(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None, num_classes=CLASSES).eval()


@pytest.mark.parametrize("name", ["resnet34", "resnet18", "resnet50"])
def test_torchvision_weights_become_a_teacher_with_the_same_logits(name, imagenet, tmp_path):
    theirs = _torchvision(name)
    # Non-trivial BatchNorm statistics, so that a mix-up of running mean and variance would show.
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(theirs.state_dict(), tmp_path / f"{name}.pth")
    out = tmp_path / "teacher"
    code = cli.main(["import-weights", "--weights", str(tmp_path / f"{name}.pth"), "--model", name, "--dataset",
                     "imagenet", "--data-dir", imagenet, "--device", "cpu", "--threads", "1", "--label",
                     "method=teacher", "--checkpoint", str(out / "model.pt"), "-o", str(out / "metrics.json")])
    assert code == 0
    ours, ckpt = load_model(out / "model.pt")
    ours.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], theirs(x), rtol=1e-5, atol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == {"method": "teacher"} and metrics["genotype"]["model"] == name
    assert metrics["test_examples"] == 2 * CLASSES and ckpt["config"]["dataset"] == "imagenet"
    assert metrics["params"] == sum(p.numel() for p in theirs.parameters())
    # Its test error is that of the network on the 6 validation images.
    from blockswap.data.datasets import load_dataset

    again = evaluate(ours, load_dataset("imagenet", imagenet, "test"), 500, "cpu")
    assert metrics["test_top1_error"] == again["top1_error"]


def test_mismatched_weights_fail_in_one_line_before_anything_is_written(imagenet, tmp_path, capsys):
    torch.save(_torchvision("resnet18").state_dict(), tmp_path / "resnet18.pth")
    args = ["import-weights", "--dataset", "imagenet", "--data-dir", imagenet, "--device", "cpu",
            "--checkpoint", str(tmp_path / "out" / "model.pt")]
    assert cli.main([*args, "--weights", str(tmp_path / "resnet18.pth"), "--model", "resnet34"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    # ResNet-34 has 8 more basic blocks (3,4,6,3 against 2,2,2,2), each 2 convolutions and 2 BatchNorms of 5 tensors.
    assert "does not hold resnet34 for imagenet (3 classes) weights: 96 of its tensors missing (first layer1.2." in err
    # Torchvision's own 1000-class head on a 3-class dataset: the head's shape is named.
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18-1000.pth")
    assert cli.main([*args, "--weights", str(tmp_path / "r18-1000.pth"), "--model", "resnet18"]) == 2
    assert "fc.weight is (1000, 512) there, resnet18 for imagenet (3 classes) needs (3, 512)" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    assert cli.main([*args, "--weights", str(tmp_path / "junk.pth"), "--model", "resnet18"]) == 2
    assert "not a readable weights file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_blockswap_checkpoint_is_accepted_and_checked(imagenet, tmp_path):
    torch.save(_torchvision("resnet18").state_dict(), tmp_path / "r18.pth")
    first = import_weights(tmp_path / "r18.pth", "resnet18", "imagenet", data_dir=imagenet,
                           out_checkpoint=tmp_path / "a.pt")
    again = import_weights(tmp_path / "a.pt", "resnet18", "imagenet", data_dir=imagenet,
                           out_checkpoint=tmp_path / "b.pt")
    assert again["test_loss"] == first["test_loss"]
    with pytest.raises(Exception, match="holds resnet18 .*, not resnet34"):
        import_weights(tmp_path / "a.pt", "resnet34", "imagenet", data_dir=imagenet, out_checkpoint=tmp_path / "c.pt")
