"""Data-parallel training: `torchrun --nproc-per-node 2 -m blockswap train` on the CPU (gloo).

What two processes must compute. Each rank trains its half of every global batch and DDP averages the
gradients, so the gradient is that of the global batch's mean loss - except through BatchNorm: without SyncBN
(which torch runs on GPUs only) each rank normalises its half by the half's own statistics, and the running
statistics kept (and saved) are rank 0's. A plain single-process run with the same global batch therefore
differs by much more than rounding (measured: 4.8e-2 after 4 steps), and comparing with it could only
use a tolerance too loose to catch a wrong gradient. The reference here is that single process with the
per-rank BatchNorm written out: the same seeded batches, split in halves, each half through the network
alone, the loss the mean of the halves' means, and rank 0's running statistics kept. It can differ from the
two-process run only in how float32 sums are taken (the gradient all-reduce: (g0 + g1) / 2 against
g0 / 2 + g1 / 2), so the weights must agree to 1e-5, which leaves room for other sum orders (more processes,
nccl's ring). Measured here: 0 - halving is exact in binary floating point, so with 2 processes the two sums
are the same bits.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blockswap import cli
from blockswap.core.genotype import Genotype
from blockswap.core.recipe import TrainConfig, learning_rate
from blockswap.data.datasets import default_augment, iterate_batches, load_dataset
from blockswap.detection import train as detection_train
from blockswap.nn.models import create_model
from blockswap.training import train as train_module
from blockswap.training.checkpoint import load_model
from blockswap.training.engine import evaluate
from blockswap.training.losses import Objective
from blockswap.training.train import train
from test_detection_models import CANVAS, StopAfter, _write_coco

from conftest import require_fashion_mnist

# 4 steps of 32 (16 a process); a test subset whose 99 examples do not split evenly between the ranks.
SETTINGS = dict(dataset="fashion-mnist", subset=128, test_subset=99, epochs=1, batch_size=32, threads=1,
                device="cpu", progress=False)
TOLERANCE = 1e-5


def _flags(config: dict) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in config.items() if k not in ("progress", "dataset")]


def _per_rank_bn_reference(data_dir: str, ranks: int) -> dict:
    """The weights `ranks` processes reach, computed in one process (see the module docstring) with one
    thread, as each of the processes runs: other thread counts sum convolutions in other orders."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _reference_weights(data_dir, ranks)
    finally:
        torch.set_num_threads(threads)


def _reference_weights(data_dir: str, ranks: int) -> dict:
    config = TrainConfig(**SETTINGS, data_dir=data_dir)
    train_set = load_dataset(config.dataset, data_dir, "train", config.subset, config.subset_seed)
    genotype = Genotype.uniform("wrn-10-1", "Conv", in_channels=1, num_classes=10, image_size=28)
    torch.manual_seed(config.seed)
    model = create_model(genotype).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    objective = Objective.from_config(config)
    steps = len(train_set) // config.batch_size
    batches = iterate_batches(train_set, config.batch_size, train=True, seed=config.seed, epoch=0,
                              augment=default_augment(train_set, True))
    for step, (images, labels) in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, 0, step, steps)
        optimizer.zero_grad()
        for rank, (x, y) in enumerate(zip(images.chunk(ranks), labels.chunk(ranks))):
            logits, points = model(x)
            # Each half's backward before the next forward updates the running statistics it saved.
            (objective(logits, points, y)[0] / ranks).backward()
            if rank == 0:
                kept = [b.clone() for b in model.buffers()]
        with torch.no_grad():
            for b, k in zip(model.buffers(), kept):
                b.copy_(k)
        optimizer.step()
    return model.state_dict()


def _torchrun(data_dir: str, out: Path, **settings) -> subprocess.CompletedProcess:
    """`blockswap train` of wrn-10-1 in 2 processes (gloo), writing out/model.pt and out/metrics.json."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "blockswap", "train", "--model", "wrn-10-1", "--data-dir", data_dir,
           *_flags({**SETTINGS, **settings}), "--quiet", "--checkpoint", str(out / "model.pt"),
           "-o", str(out / "metrics.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def test_two_processes_train_the_global_batch(tmp_path):
    data_dir = str(require_fashion_mnist())
    out = tmp_path / "ddp"
    proc = _torchrun(data_dir, out)
    # One process wrote, once: the checkpoint and the metrics, no resume file left, one line per epoch.
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.pt"]
    assert proc.stderr.count("epoch 1/1:") == 1 and proc.stderr.count("training wrn-10-1") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["provenance"]["world_size"] == 2 and metrics["train_examples"] == 128
    assert metrics["provenance"]["config"]["batch_size"] == 32  # the global batch, as the recipe says

    ddp, ckpt = load_model(out / "model.pt")
    weights = ddp.state_dict()
    reference = _per_rank_bn_reference(data_dir, 2)
    difference = _max_difference(weights, reference)
    assert difference < TOLERANCE, difference
    assert all(torch.equal(weights[k], reference[k]) for k in weights if not weights[k].is_floating_point())

    # The test counts summed over the ranks' shares (50 + 49 images) are those of one process testing
    # the saved network.
    test_set = load_dataset("fashion-mnist", data_dir, "test", 99, 0)
    alone = evaluate(ddp, test_set, 500, "cpu")
    assert metrics["test_top1_error"] == alone["top1_error"] and metrics["test_top5_error"] == alone["top5_error"]
    # The loss to float32 rounding: a convolution of 50 images need not round as one of 99 does.
    assert abs(metrics["test_loss"] - alone["loss"]) < 1e-6 * alone["loss"]

    # A plain single process with the same global batch is farther away: per-rank BatchNorm is real.
    single = train(TrainConfig(**SETTINGS, data_dir=data_dir), "wrn-10-1", out_checkpoint=tmp_path / "one.pt")
    assert single["provenance"]["world_size"] == 1
    plain = _max_difference(weights, torch.load(tmp_path / "one.pt", weights_only=True)["state_dict"])
    assert plain > 100 * TOLERANCE, plain
    print(f"\nmax weight difference, 2 processes vs one with per-rank BatchNorm: {difference:.2e}; "
          f"vs a plain single process: {plain:.2e}")


def _as_rank_0_of_2(monkeypatch) -> None:
    """torchrun's environment of process 0 of 2, set here without starting processes."""
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)


def test_settings_two_processes_cannot_run_are_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """Under torchrun (its environment, set here without starting processes): a batch that does not split
    evenly, and SyncBN on the CPU, each end in one line and exit status 2, with nothing written."""
    data_dir = str(require_fashion_mnist())
    _as_rank_0_of_2(monkeypatch)
    args = ["train", "--model", "wrn-10-1", "--data-dir", data_dir, "--device", "cpu", "--quiet",
            "--checkpoint", str(tmp_path / "m.pt")]
    assert cli.main([*args, "--batch-size", "33"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch size 33 does not divide among 2 processes" in err
    assert cli.main([*args, "--batch-size", "32", "--sync-bn", "true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sync_bn needs CUDA" in err
    assert list(Path(tmp_path).iterdir()) == []


def test_two_processes_resume_from_the_one_resume_file(tmp_path, monkeypatch):
    """A run stopped mid-epoch (here a single process, SIGTERM after step 2 of epoch 2) is finished by two
    processes that both load its resume file: the global batch, the schedule and the metrics so far carry on."""
    data_dir = str(require_fashion_mnist())
    real = train_module.learning_rate

    def signalling(config, epoch, step=0, steps_per_epoch=1):
        if (epoch, step) == (1, 1):
            os.kill(os.getpid(), signal.SIGTERM)
        return real(config, epoch, step, steps_per_epoch)

    monkeypatch.setattr(train_module, "learning_rate", signalling)
    with pytest.raises(train_module.Preempted):
        train(TrainConfig(**{**SETTINGS, "epochs": 2}, data_dir=data_dir), "wrn-10-1",
              out_checkpoint=tmp_path / "model.pt")
    state = torch.load(tmp_path / "model.pt.resume", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 2)

    proc = _torchrun(data_dir, tmp_path, epochs=2)
    assert proc.stderr.count("resuming from") == 1 and "epoch 2, step 2 of 4" in proc.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["provenance"]["world_size"] == 2 and metrics["provenance"]["resumes"] == 1
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert not (tmp_path / "model.pt.resume").exists()


# ------------------------------------------------------------------------------------------------ detection
def _detect_args(folder: Path, out: Path) -> list[str]:
    data = ["--train-images", str(folder), "--train-annotations", str(folder / "instances_0.json"),
            "--val-images", str(folder), "--val-annotations", str(folder / "instances_1.json")]
    return ["detect", "train", "--model", "resnet18", "--detector", "retinanet", "--slim", str(CANVAS), "--norm", "gn",
            "--epochs", "2", "--batch-size", "4", "--lr", "0.02", "--warmup-iters", "1", "--eval-batch-size", "1",
            "--threads", "1", "--device", "cpu", "--quiet", *data, "--checkpoint", str(out / "model.pt"),
            "-o", str(out / "metrics.json")]


def _detect_train(folder: Path, out: Path, processes: int) -> subprocess.CompletedProcess:
    """`blockswap detect train` of a RetinaNet around ResNet-18 (GroupNorm) on 8 training canvases, batch 4
    (2 epochs of 2 steps), evaluated one image at a time on 3, in `processes` processes (1: without torchrun)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    launch = (["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
              if processes > 1 else [])
    cmd = [sys.executable, *launch, "-m", "blockswap", *_detect_args(folder, out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_two_processes_train_a_detector_on_the_global_batch(tmp_path):
    """RetinaNet draws nothing at random in training and normalises each image's loss by its own anchors, and
    GroupNorm is per image, so two processes of 2 images a step compute the gradient one process computes
    on the 4: the weights differ only by float32 rounding (sums taken in other orders, convolutions of 2
    images against 4), far under the tolerance (measured: 7e-9 after 4 steps)."""
    _write_coco(tmp_path, 8, seed=0)
    _write_coco(tmp_path, 3, seed=1)
    proc = _detect_train(tmp_path, tmp_path / "two", 2)
    _detect_train(tmp_path, tmp_path / "one", 1)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["metrics.json", "model.pt"]
    assert proc.stderr.count("epoch 2/2:") == 1 and proc.stderr.count("2 processes of 2 images a step") == 1
    two, one = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("two", "one"))
    assert two["provenance"]["world_size"] == 2 and one["provenance"]["world_size"] == 1
    assert two["train_images"] == 8 and two["settings"]["batch_size"] == 4
    assert two["bbox"] == one["bbox"] and two["detections"] == one["detections"]  # none yet: see the next test
    # The epoch's mean losses are the global batch's, summed over the processes image-weighted.
    for key in ("train_loss", "train_classification", "train_bbox_regression"):
        assert two["epochs"][0][key] == pytest.approx(one["epochs"][0][key], rel=1e-5), key

    weights, reference = (torch.load(tmp_path / run / "model.pt", weights_only=True)["state_dict"]
                          for run in ("two", "one"))
    difference = _max_difference(weights, reference)
    assert difference < TOLERANCE, difference
    print(f"\ndetector weights, 2 processes vs one: max difference {difference:.2e}")


def test_two_processes_resume_a_detector_from_the_one_resume_file(tmp_path, monkeypatch):
    """A detector run stopped after step 1 of epoch 2 (here a single process) is finished by two processes that
    both load its resume file, and ends where an uninterrupted two-process run does."""
    _write_coco(tmp_path, 8, seed=0)
    _write_coco(tmp_path, 3, seed=1)
    _detect_train(tmp_path, tmp_path / "straight", 2)
    # Epoch 1 checks before each of its 2 steps, after them and at its end, epoch 2 before its first step:
    # the 6th check, before its second, stops it.
    monkeypatch.setattr(detection_train, "_stop_requests", lambda: contextlib.nullcontext(StopAfter(5)))
    with pytest.raises(SystemExit) as e:
        cli.main(_detect_args(tmp_path, tmp_path / "cut"))
    assert e.value.code == 128 + signal.SIGTERM
    state = torch.load(tmp_path / "cut" / "model.pt.resume", weights_only=True)
    assert (state["epoch"], state["step"], len(state["rng"])) == (1, 1, 1)

    proc = _detect_train(tmp_path, tmp_path / "cut", 2)
    assert proc.stderr.count("resuming from") == 1 and "epoch 2, step 1" in proc.stderr
    metrics = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert metrics["provenance"]["world_size"] == 2 and metrics["provenance"]["resumes"] == 1
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == ["metrics.json", "model.pt"]
    weights, straight = (torch.load(tmp_path / run / "model.pt", weights_only=True)["state_dict"]
                         for run in ("cut", "straight"))
    assert _max_difference(weights, straight) < TOLERANCE


def test_detection_settings_two_processes_cannot_run_are_refused_before_any_data(tmp_path, monkeypatch, capsys):
    _as_rank_0_of_2(monkeypatch)
    args = ["detect", "train", "--model", "resnet18", "--slim", "64", "--device", "cpu", "--quiet",
            "--train-images", str(tmp_path / "missing"), "--train-annotations", str(tmp_path / "missing.json"),
            "--checkpoint", str(tmp_path / "m.pt")]
    assert cli.main([*args, "--batch-size", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch size 3 does not divide among 2 processes" in err
    assert cli.main([*args, "--batch-size", "2", "--norm", "syncbn"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--norm syncbn needs CUDA with several processes" in err
    assert list(Path(tmp_path).iterdir()) == []


def _evaluate_part(rank: int, size: int, folder: Path) -> None:
    """Process `rank` of `size`: an untrained slim Faster R-CNN (seeded, the same in every process) evaluated
    by its part of the 5 canvases; rank 0 writes the result."""
    import torch.distributed as dist

    from blockswap.data.distributed import SINGLE, World
    from blockswap.detection.build import build_detector
    from blockswap.detection.coco import CocoDetection
    from blockswap.detection.detectors import DetectorConfig
    from blockswap.detection.engine import evaluate

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_detector(Genotype.uniform("resnet18", "Conv", image_size=CANVAS),
                           DetectorConfig.slim(CANVAS, detector="fasterrcnn", num_classes=3))
    val = CocoDetection(folder, folder / "instances_1.json", train=False)
    if size == 1:
        world = SINGLE
    else:
        dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=size)
        world = World(rank, size, rank, size)
    result = evaluate(model, val, 1, "cpu", world=world)
    if rank == 0:
        (folder / f"eval_{size}.json").write_text(json.dumps(result))
    if size > 1:
        dist.destroy_process_group()


def test_processes_evaluate_their_parts_and_score_all_predictions(tmp_path):
    """An untrained Faster R-CNN already detects (its box head's softmax over 3 classes is above the 0.05
    score threshold): two processes predicting 2 and 3 of the 5 canvases, one image at a time, gather the
    predictions of all 5 and score exactly what one process scores."""
    _write_coco(tmp_path, 5, seed=1)
    torch.multiprocessing.spawn(_evaluate_part, args=(2, tmp_path), nprocs=2)
    _evaluate_part(0, 1, tmp_path)
    two, one = (json.loads((tmp_path / f"eval_{n}.json").read_text()) for n in (2, 1))
    assert two == one and one["detections"] > 0
