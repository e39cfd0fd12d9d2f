"""A student that stands alone: eval-mode loading, logits only, ONNX and TorchScript files checked against PyTorch,
preprocess.json, and `blockswap predict`."""

import json

import numpy as np
import pytest
import torch

import blockswap
from blockswap.cli import main
from blockswap.compress import deploy
from blockswap.core.errors import BlockswapError
from blockswap.core.genotype import Genotype
from blockswap.data.datasets import default_augment, iterate_batches, load_dataset
from blockswap.data.imagefolder import encode_png
from blockswap.nn.models import create_model
from blockswap.training.checkpoint import load_model, save
from test_compress import image_folder, trained_checkpoint

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")]


def checkpoint(path, genotype, seed=0):
    """A checkpoint of `genotype` with random weights, the classifier's too (initialised to zero), and batch-norm
    statistics unlike a fresh net's (so that train and eval mode compute different logits)."""
    torch.manual_seed(seed)
    net = create_model(genotype)
    torch.nn.init.normal_(net.fc.weight, std=0.5)
    for name, t in net.state_dict().items():
        if name.endswith("running_mean"):
            t.copy_(torch.randn_like(t) * 0.1)
        elif name.endswith("running_var"):
            t.copy_(torch.rand_like(t) + 0.5)
    save({"genotype": genotype.to_dict(), "config": {"dataset": "folder"}, "state_dict": net.state_dict(),
          "metrics": {}, "provenance": {}}, path)
    return net


GRAY = Genotype("wrn-10-1", ("Conv", "G2B2", "DConv"), in_channels=1, num_classes=3, image_size=28)


def test_load_model_returns_the_net_in_eval_mode(tmp_path):
    net = checkpoint(tmp_path / "m.pt", GRAY)
    loaded, _ = load_model(tmp_path / "m.pt")
    assert not any(m.training for m in loaded.modules())
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], net.eval()(x)[0]) and not torch.equal(net.train()(x)[0], loaded(x)[0])


def test_blockswap_load_gives_logits_alone_in_eval_mode(tmp_path):
    net = checkpoint(tmp_path / "student" / "model.pt", GRAY)
    x = torch.randn(2, 1, 28, 28)
    for path in (tmp_path, tmp_path / "student", tmp_path / "student" / "model.pt"):
        student = blockswap.load(path)
        with torch.no_grad():
            logits = student(x)
        assert isinstance(logits, torch.Tensor) and not student.training
        assert torch.equal(logits, net.eval()(x)[0])
    with pytest.raises(BlockswapError, match="nowhere: no such file or folder; give the output folder"):
        blockswap.load(tmp_path / "nowhere")
    with pytest.raises(BlockswapError, match="empty: holds no model.pt"):
        blockswap.load((tmp_path / "empty").mkdir() or tmp_path / "empty")


@pytest.mark.parametrize("channels,side", [(1, 28), (3, 80)])  # in memory (≤ 64 px); decoded lazily at 224
def test_an_image_file_is_prepared_as_training_tests_it(tmp_path, channels, side):
    root = image_folder(tmp_path / "d", per_class=2, channels=channels, side=side)
    odd = (torch.rand(channels, side + 5, side - 3) * 255).to(torch.uint8)  # another size: resized as training does
    encode_png(odd, root / "val" / "class2" / "9.png")
    train, test = load_dataset("folder", root, "train"), load_dataset("folder", root, "test")
    spec = deploy.preprocessing(train)
    ours = deploy.prepare(sorted(str(p) for p in (root / "val").glob("*/*.png")), spec)  # the set's order
    (theirs, _), = iterate_batches(test, 64, train=False, workers=0)
    assert ours.shape == theirs.shape and torch.equal(ours, theirs)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A compress job's folder: a WRN-16-1 teacher (a few SGD steps) and a 3-class grayscale folder, 1 epoch."""
    tmp = tmp_path_factory.mktemp("deploy")
    root = image_folder(tmp / "data", per_class=16, channels=1, side=28)
    trained_checkpoint(Genotype.uniform("wrn-16-1", "Conv", in_channels=1, num_classes=3, image_size=28), root,
                       tmp / "teacher.pt")
    out = tmp / "job"
    assert main(["compress", "--teacher", str(tmp / "teacher.pt"), "--data", str(root), "--budget", "40K",
                 "--samples", "2", "--epochs", "1", "--batch-size", "8", "--threads", "1", "--quiet",
                 "-o", str(out)]) == 0
    return out, root


def test_compress_writes_onnx_torchscript_and_preprocess_json_checked_against_pytorch(job):
    import onnxruntime

    out, root = job
    folder = out / "student"
    train = load_dataset("folder", root, "train")
    spec = json.loads((folder / "preprocess.json").read_text())
    assert spec == {"format": "blockswap-preprocess-1", "decoder": deploy.DECODER,
                    "color": "grayscale", "channels": 1, "input_size": [28, 28], "layout": "NCHW, float32",
                    "resize": {"policy": "resize", "size": [28, 28], "antialias": True},
                    "normalize": "x = (pixels / 255 - mean) / std", "mean": list(train.mean), "std": list(train.std),
                    "normalize_from": "folder", "classes": ["class0", "class1", "class2"]}
    report = json.loads((out / "report.json").read_text())
    record = report["export"]
    assert record == json.loads((folder / "export.json").read_text())
    assert record["images"] == 48 and record["onnx_opset"] == deploy.ONNX_OPSET
    for runtime in ("onnx", "torchscript"):
        assert record[runtime]["max_abs_diff"] <= deploy.TOLERANCE and record[runtime]["top1_agreement"] == 1.0
    card = (out / "model_card.md").read_text()
    assert f"`blockswap.load(\"{folder}\")`" in card
    diff = record["onnx"]["max_abs_diff"]
    assert f"model.onnx: largest |logit difference| {diff:.2g}, top-1 agreement 100.0%" in card
    # Any batch size, without blockswap's code: ONNX Runtime and torch.jit.load give the logits of blockswap.load.
    student = blockswap.load(out)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(folder / "model.torchscript.pt"))
    for n in (1, 5):
        x = torch.randn(n, 1, 28, 28)
        with torch.no_grad():
            expected = student(x)
            assert torch.allclose(scripted(x), expected, atol=1e-5)
        assert np.allclose(session.run(None, {"image": x.numpy()})[0], expected.numpy(), atol=1e-4)
    # Done: a rerun leaves the exports as they are.
    before = (folder / "model.onnx").stat().st_mtime_ns
    assert deploy.export(folder, train, root, None) == record and (folder / "model.onnx").stat().st_mtime_ns == before


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_predict_prints_the_top_classes_by_name(job, capsys, runtime):
    out, root = job
    images = [str(root / "val" / c / "1.png") for c in ("class2", "class0", "class1")]
    assert main(["predict", str(out), *images, "-k", "2", "--runtime", runtime]) == 0
    lines = capsys.readouterr().out.splitlines()
    # What the student says of the same images as its validation set holds them (1.png: second of its class).
    test = load_dataset("folder", root, "test")
    x = torch.stack([test.images[test.labels.tolist().index(k) + 1] for k in (2, 0, 1)])
    with torch.no_grad():
        probs = torch.softmax(blockswap.load(out)(default_augment(test, train=False)(x, torch.Generator())), 1)
    assert len(lines) == 3
    for line, path, p in zip(lines, images, probs):
        top = p.topk(2)
        expected = ", ".join(f"{test.classes[i]} {v:.3f}" for i, v in zip(top.indices.tolist(), top.values.tolist()))
        assert line == f"{path}: {expected}"


def test_predict_mistakes_are_one_line(job, tmp_path, capsys):
    out, root = job
    image = str(root / "val" / "class0" / "0.png")
    (tmp_path / "not-an-image.png").write_text("hello")
    cases = [([str(tmp_path / "nowhere"), image], "nowhere: no such folder; give the output folder"),
             ([str(tmp_path), image], "preprocess.json (written by `blockswap compress`) not found"),
             ([str(out), str(tmp_path / "missing.png")], "missing.png: no such image file"),
             ([str(out), str(tmp_path / "not-an-image.png")], "not-an-image.png: cannot decode image"),
             ([str(out), image, "--runtime", "tensorrt"], "unknown runtime 'tensorrt'; use one of torch, onnx")]
    for args, message in cases:
        assert main(["predict", *args]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err, captured.err


def test_an_export_unlike_pytorch_is_refused_and_not_written(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "d", per_class=2, channels=1, side=28)
    folder = tmp_path / "student"
    checkpoint(folder / "model.pt", GRAY)
    other = deploy.Logits(checkpoint(tmp_path / "other.pt", GRAY, seed=1).eval())
    write_onnx = deploy.write_onnx
    monkeypatch.setattr(deploy, "write_onnx", lambda net, example, path: write_onnx(other, example, path))
    from blockswap.core.recipe import TrainConfig

    with pytest.raises(BlockswapError, match=r"model.onnx: its logits differ from PyTorch's by up to .* on 6 "
                                             r"validation images \(tolerance 0.00113\)"):  # 1e-3 × its largest |logit|
        deploy.export(folder, load_dataset("folder", root, "train"), root, TrainConfig(dataset="folder"))
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt"]
