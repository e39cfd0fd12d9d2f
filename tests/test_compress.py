"""`blockswap compress`: a user's teacher and image folder in, a distilled student under a budget out."""

import fcntl
import json
import math
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pytest
import torch
import torchvision

from blockswap.cli import main
from blockswap.compress.teacher import teacher_genotype, torchvision_model, wilson_interval
from blockswap.core.counting import analytic
from blockswap.core.errors import BlockswapError
from blockswap.core.genotype import Genotype
from blockswap.data.datasets import load_dataset
from blockswap.data.imagefolder import encode_png
from blockswap.nn import latency
from blockswap.nn.measure import measured
from blockswap.nn.models import create_model
from blockswap.training.checkpoint import load_model, save


def image_folder(root, classes=3, per_class=8, channels=3, side=32, seed=0):
    """A folder of random PNG images, DIR/{train,val}/<class>/*.png, the class shifting the mean colour."""
    g = torch.Generator().manual_seed(seed)
    for split in ("train", "val"):
        for c in range(classes):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(per_class):
                img = (torch.rand(channels, side, side, generator=g) * 128 + 40 * c).clamp(0, 255).to(torch.uint8)
                encode_png(img, root / split / f"class{c}" / f"{i}.png")
    return root


def test_wilson_interval_against_the_formula():
    low, high = wilson_interval(10, 100)  # the textbook case: 10 errors in 100
    assert (round(low, 2), round(high, 2)) == (5.52, 17.44)
    low, high = wilson_interval(0, 50)
    assert low == pytest.approx(0, abs=1e-12) and high == pytest.approx(100 * 3.8415 / 53.8415, rel=1e-4)


def test_folder_dataset_small_images_in_memory(tmp_path):
    root = image_folder(tmp_path / "d", channels=1, side=28)
    train, test = load_dataset("folder", root, "train"), load_dataset("folder", root, "test")
    assert train.images.shape == (24, 1, 28, 28) and train.classes == ("class0", "class1", "class2")
    assert train.labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    pixels = train.images.double() / 255
    assert train.mean == (round(float(pixels.mean()), 4),) == test.mean  # the train split's statistics
    assert train.train_recipe == {"pad": 4, "flip": False, "cutout": 0}  # ⌈28/8⌉, grayscale: no flips


@pytest.mark.parametrize("damage,message", [
    (lambda r: [p.unlink() for p in (r / "train" / "class1").iterdir()], "class1 holds no"),
    (lambda r: (r / "val" / "class2").rename(r / "val" / "other"), "different class folders"),
])
def test_folder_mistakes_are_one_line(tmp_path, damage, message):
    root = image_folder(tmp_path / "d")
    damage(root)
    with pytest.raises(BlockswapError, match=message):
        load_dataset("folder", root, "train")


def test_one_class_is_refused(tmp_path):
    root = image_folder(tmp_path / "d", classes=1)
    with pytest.raises(BlockswapError, match="1 class folder .* needs 2 or more"):
        load_dataset("folder", root, "train")


def test_torchvision_teachers_are_recognised_and_checked(tmp_path):
    ds = load_dataset("folder", image_folder(tmp_path / "d"), "train")
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)
    g, state, normalize = teacher_genotype(path, ds)
    assert normalize == "imagenet"  # as torchvision trains its models
    assert state.keys() == torchvision.models.resnet18(num_classes=3).state_dict().keys()
    assert (g.model, g.num_classes, g.image_size, g.blocks) == ("resnet18", 3, 32, ("Conv",) * 8)
    torch.save(torchvision.models.resnet34(num_classes=3).state_dict(), path)
    assert teacher_genotype(path, ds)[0].model == "resnet34"
    torch.save(torchvision.models.resnet50(num_classes=3).state_dict(), path)
    assert teacher_genotype(path, ds)[0].model == "resnet50"
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), path)
    with pytest.raises(BlockswapError, match="1000 outputs, the folder 3 classes"):
        teacher_genotype(path, ds)
    state = torchvision.models.resnet18(num_classes=3).state_dict()
    state["layer2.0.conv1.weight"] = state["layer2.0.conv1.weight"][:64]
    torch.save(state, path)
    with pytest.raises(BlockswapError, match=r"layer2.0.conv1.weight is \(64, 64, 3, 3\) there"):
        teacher_genotype(path, ds)


@pytest.mark.parametrize("name", ["resnet101", "wide_resnet50_2"])
def test_torchvision_bottleneck_resnets_are_recognised(name):
    with torch.device("meta"):  # shapes only: nothing is allocated
        state = getattr(torchvision.models, name)(num_classes=3).state_dict()
    assert torchvision_model(state, "t.pth") == name


@pytest.mark.parametrize("name,words", [
    ("resnet152", r"bottleneck blocks that the registry lacks \(blocks per stage \(3, 8, 36, 3\), layer1's 3×3 64 "
                  r"wide\); compress takes resnet18 \(basic, 2-2-2-2, 64 wide\), .*resnet101 \(bottleneck, "
                  r"3-4-23-3, 64 wide\), wide_resnet50_2 \(bottleneck, 3-4-6-3, 128 wide\) - or a blockswap "
                  r"checkpoint"),
    ("wide_resnet101_2", r"\(3, 4, 23, 3\), layer1's 3×3 128 wide\)"),
    ("resnext50_32x4d", r"layer1's 3×3 128 wide, its 3×3s grouped \(32 groups, as a ResNeXt's\)")])
def test_a_torchvision_resnet_the_registry_lacks_is_named_with_the_supported_ones(name, words):
    with torch.device("meta"):
        state = getattr(torchvision.models, name)(num_classes=3).state_dict()
    with pytest.raises(BlockswapError, match=words):
        torchvision_model(state, "t.pth")


def trained_checkpoint(g: Genotype, root, path, steps=30, seed=0):
    """`g` trained a few SGD steps on the folder (its own normalisation) by a plain loop and saved as a checkpoint
    of the time before preprocessing was recorded: a teacher compress can tell from chance."""
    from blockswap.data.datasets import iterate_batches

    torch.manual_seed(seed)
    net, train_set = create_model(g), load_dataset("folder", root, "train")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(-(-steps * 8 // len(train_set))):
        for images, labels in iterate_batches(train_set, 8, train=True, seed=seed, epoch=epoch):
            loss = torch.nn.functional.cross_entropy(net(images)[0], labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    save({"genotype": g.to_dict(), "config": {"dataset": "folder"}, "state_dict": net.state_dict(),
          "metrics": {}, "provenance": {}}, path)


@pytest.fixture(scope="module")
def job(tmp_path_factory, one_thread):
    """A WRN-16-1 teacher (trained a few steps, a checkpoint) and a 3-class grayscale folder."""
    tmp = tmp_path_factory.mktemp("compress")
    root = image_folder(tmp / "data", per_class=16, channels=1, side=28)
    g = Genotype.uniform("wrn-16-1", "Conv", in_channels=1, num_classes=3, image_size=28)
    trained_checkpoint(g, root, tmp / "teacher.pt")
    return tmp, root


def compress(tmp, root, out, *extra):
    return main(["compress", "--teacher", str(tmp / "teacher.pt"), "--data", str(root), "--epochs", "1",
                 "--batch-size", "8", "--threads", "1", "--quiet", "-o", str(out), *extra])


def test_blockswap_student_in_budget_with_a_model_card_and_resume(job, capsys):
    tmp, root = job
    out = tmp / "blockswap"
    assert compress(tmp, root, out, "--budget", "40K", "--samples", "4") == 0
    assert "estimated training time: " in capsys.readouterr().err  # said after the first epoch
    report = json.loads((out / "report.json").read_text())
    pick = Genotype.from_dict(json.loads((out / "search" / "genotype.json").read_text()))
    fisher = json.loads((out / "search" / "fisher.json").read_text())
    assert len(fisher) == 4 and pick.id == max(fisher, key=lambda r: r["fisher"])["id"]
    assert report["student"]["params"] == analytic(pick).params and 39_000 < analytic(pick).params < 41_000
    net, ckpt = load_model(out / "student" / "model.pt")
    assert sum(p.numel() for p in net.parameters()) == report["student"]["params"]
    n, error = report["student"]["test_examples"], report["student"]["test_top1_error"]
    assert n == 48 and report["student"]["error_interval_95"] == list(wilson_interval(round(error * n / 100), n))
    card = (out / "model_card.md").read_text()
    assert f"| student | {analytic(pick).params:,} |" in card and "load_model(" in card
    # Latency: median and interquartile range over stated repeats, batch 1 and 32, runtime, threads, unit.
    eager, ort = report["latency"]["student"]  # the exported model.onnx is measured too
    assert (eager["runtime"], eager["threads"], eager["unit"]) == ("PyTorch eager", 1, "µs")
    assert (ort["runtime"], ort["threads"]) == ("ONNX Runtime", 1)
    one, many = eager["batch_1"], eager["batch_32_per_image"]
    assert one["q1"] <= one["median"] <= one["q3"] and (one["repeats"], many["repeats"]) == (30, 10)
    assert "| network | runtime | threads | µs at batch 1 | µs per image at batch 32 |" in card
    assert f"| student | PyTorch eager | 1 | {one['median']:,.0f} [{one['q1']:,.0f}, {one['q3']:,.0f}] (30 runs) |" \
        in card and "median [25th, 75th percentile]" in card and "| student | ONNX Runtime | 1 |" in card
    assert ort["batch_1"]["median"] > 0 and ort["batch_32_per_image"]["repeats"] == 10
    files = {name: ((out / name).read_bytes(), (out / name).stat().st_mtime_ns) for name in ("report.json",
                                                                                              "model_card.md")}
    capsys.readouterr()
    # done: a no-op that says so, also at another thread count (the same job)
    assert compress(tmp, root, out, "--budget", "40K", "--samples", "4", "--threads", "2") == 0
    assert "the job is finished (report.json, model_card.md); nothing to do" in capsys.readouterr().err
    assert files == {name: ((out / name).read_bytes(), (out / name).stat().st_mtime_ns) for name in files}
    assert compress(tmp, root, out, "--budget", "30K", "--samples", "4", "--lr", "0.2") == 2  # another job's folder
    err = capsys.readouterr().err
    assert "holds another job's results (budget: 40000.0 there, 30000.0 now; recipe.lr: 0.05 there, 0.2 now)" in err


@pytest.mark.parametrize("method", ["prune-magnitude", "prune-taylor"])
def test_pruned_student_under_budget_trained_from_the_pruned_weights(job, method):
    tmp, root = job
    out = tmp / method
    assert compress(tmp, root, out, "--budget", "40K", "--method", method) == 0
    pruned, ckpt = load_model(out / "search" / "pruned.pt")
    g = Genotype.from_dict(ckpt["genotype"])
    record = ckpt["pruned"]
    assert record["params"] == measured(pruned, g).params <= 40_000 < analytic(g).params
    assert record["params"] >= 0.975 * 40_000  # global pruning lands in the band BlockSwap's students keep
    assert record["ratio"] > 0 and math.isclose(record["budget"], 40_000)
    student, final = load_model(out / "student" / "model.pt")  # one call rebuilds the pruned widths
    assert final["metrics"]["params"] == measured(student, g).params == record["params"]
    report = json.loads((out / "report.json").read_text())
    assert report["student"]["params"] == record["params"] and report["teacher"]["params"] == analytic(g).params


def test_a_distilled_student_can_teach(job):
    """A blockswap checkpoint of mixed blocks is a teacher too: searched below, and pruned."""
    tmp, root = job
    g = Genotype("wrn-16-1", ("Conv", "G4B2", "Conv", "DConvB2", "Conv", "DConv"), in_channels=1, num_classes=3,
                 image_size=28)
    trained_checkpoint(g, root, tmp / "mixed.pt", seed=1)
    budget = analytic(g).params // 2
    for method in ("blockswap", "prune-magnitude"):
        out = tmp / f"mixed-{method}"
        assert main(["compress", "--teacher", str(tmp / "mixed.pt"), "--data", str(root), "--budget", str(budget),
                     "--method", method, "--samples", "3", "--epochs", "1", "--batch-size", "8", "--threads", "1",
                     "--quiet", "-o", str(out)]) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["teacher"]["params"] == analytic(g).params and report["teacher"]["genotype_id"] == g.id
        assert report["distillation"] == "AT" and report["student"]["params"] <= budget * 1.025
        student, _ = load_model(out / "student" / "model.pt")
        assert sum(p.numel() for p in student.parameters()) == report["student"]["params"]


def test_a_student_without_the_teachers_attention_points_is_distilled_by_kd(tmp_path):
    from blockswap.compress.pipeline import KD_ALPHA, distillation_for
    from blockswap.core.recipe import TrainConfig

    student = Genotype.uniform("wrn-16-1", "Conv", in_channels=1, num_classes=3, image_size=32)
    for name, model in (("wrn.pt", "wrn-40-1"), ("resnet.pt", "resnet18")):  # 3 points at 32/16/8; 4 points
        g = Genotype.uniform(model, "Conv", in_channels=1, num_classes=3, image_size=32)
        save({"genotype": g.to_dict(), "config": {"dataset": "folder"}, "state_dict": create_model(g).state_dict(),
              "metrics": {}, "provenance": {}}, tmp_path / name)
    config = TrainConfig(dataset="folder", at_beta=(1000.0,))
    assert distillation_for(config, student, None, tmp_path / "wrn.pt") == (config, "AT")
    kd, how = distillation_for(config, student, None, tmp_path / "resnet.pt")
    assert how == "KD (α = 0.9, T = 4)" and not kd.uses_at and kd.kd_alpha == KD_ALPHA == 0.9
    assert kd.to_dict() | {"at_beta": None, "kd_alpha": None} == config.to_dict() | {"at_beta": None, "kd_alpha": None}


def on_terminal(argv: list[str]) -> tuple[subprocess.Popen, int]:
    """Start `blockswap argv` with stderr on a pseudo-terminal of 120 columns (progress bars are drawn), SIGINT at
    its default (a background job may inherit it ignored; a terminal's program does not), in its own process
    group as a terminal's foreground job; returns the process and the terminal's reading end."""
    terminal, stderr = pty.openpty()
    fcntl.ioctl(stderr, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "blockswap", *argv], stderr=stderr, stdout=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(stderr)
    return proc, terminal


def read_until(terminal: int, pattern: bytes | None) -> str:
    """What the terminal shows until `pattern` appears (None: until the process has exited)."""
    seen = b""
    while pattern is None or not re.search(pattern, seen):
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the other end closed: the process has exited
            chunk = b""
        if not chunk:
            assert pattern is None, seen.decode()
            break
        seen += chunk
    return seen.decode().replace("\r\n", "\n")


def test_ctrl_c_keeps_a_resume_point_and_the_rerun_resumes_there(job, tmp_path, capsys):
    """Ctrl-C mid-distillation: the step in flight finishes, the resume file is written, one line, exit 130; the
    rerun skips the finished stages and resumes at the saved step; the total wall time adds both attempts."""
    tmp, root = job
    out = tmp_path / "job"
    argv = ["compress", "--teacher", str(tmp / "teacher.pt"), "--data", str(root), "--budget", "40K", "--samples",
            "2", "--epochs", "3", "--batch-size", "4", "--threads", "1", "-o", str(out)]
    proc, terminal = on_terminal(argv)
    read_until(terminal, rb"epoch 2/3[^\n]*\| *([1-9]|1[01])/12")  # the bar: some steps of the second epoch done
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does: the whole group
    err = read_until(terminal, None)
    proc.wait(timeout=60)
    os.close(terminal)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(r"blockswap compress: stopped by SIGINT in epoch \d after \d+ steps; resume checkpoint "
                        r"written to \S+model.pt.resume; run the same command again to resume", last), last
    state = torch.load(out / "student" / "model.pt.resume", weights_only=True)
    assert (state["epoch"], state["step"]) > (1, 0) and not (out / "report.json").exists()  # at a whole step
    first = json.loads((out / "wall_time.json").read_text())["seconds"]
    capsys.readouterr()
    assert main([*argv, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "teacher: tested already" in err and "search: done already" in err
    assert f"model.pt.resume: epoch {state['epoch'] + 1}, step {state['step']} of 12" in err  # where it stopped
    assert json.loads((out / "report.json").read_text())["wall_time_s"] > first


def test_sigterm_ends_compress_in_one_line_exit_143(job, tmp_path, capsys, monkeypatch):
    """SIGTERM (SLURM's preemption) in the distillation: exit 143, one line, the resume file written; between the
    stages: exit 143, one line, the finished stages kept (the search's, here) and the rerun goes on from there."""
    import blockswap.compress.pipeline as module

    tmp, root = job
    out = tmp_path / "job"
    argv = ["compress", "--teacher", str(tmp / "teacher.pt"), "--data", str(root), "--budget", "40K", "--samples",
            "2", "--epochs", "3", "--batch-size", "4", "--threads", "1", "--quiet", "-o", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "blockswap", *argv], stderr=subprocess.PIPE, text=True)
    while not (out / "student" / "model.pt.resume").exists():  # written after the first epoch
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert re.match(r"blockswap compress: stopped by SIGTERM in epoch \d after \d+ steps; resume checkpoint",
                    err.strip().splitlines()[-1]), err
    real = module.distillation_for

    def terminated(*args):  # SIGTERM once the search is done, before the distillation
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args)

    monkeypatch.setattr(module, "distillation_for", terminated)
    other = tmp_path / "other"
    assert main([*argv[:-1], str(other)]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"blockswap compress: stopped by SIGTERM; the finished stages are kept in {other}; run the "
                       "same command again to resume")
    assert (other / "search" / "genotype.json").exists() and not (other / "student").exists()


def test_a_latency_table_is_checked_against_the_jobs_threads_not_the_process(job, tmp_path, capsys, one_thread):
    """A table made at 2 threads serves a --threads 2 job and is refused for --threads 1, whatever this process
    runs at; a table of another image size is refused, each in one line before any work."""
    from blockswap.compress.job import check_inputs
    from blockswap.core.recipe import TrainConfig
    from blockswap.core.sampling import CostTable
    from blockswap.nn import latency

    tmp, root = job
    params = CostTable.build("wrn-16-1", "blockswap", "params", in_channels=1, num_classes=3, image_size=28)
    table = {"model": "wrn-16-1", "in_channels": 1, "num_classes": 3, "image_size": 28, "device": "cpu",
             "device_name": latency.device_name(torch.device("cpu")), "batch_size": 1, "threads": 2, "repeats": 30,
             "fixed_us": 100.0, "scale": 1.0, "calibration": [],
             "blocks": [{t: float(c) / 100 for t, c in zip(types, costs)}
                        for types, costs in zip(params.types, params.costs)]}
    path = tmp_path / "latency.json"
    path.write_text(json.dumps(table))
    budget = sum(params.feasible_range) / 200

    def inputs(threads):
        config = TrainConfig(dataset="folder", data_dir=str(root), at_beta=(1000.0,), threads=threads, batch_size=8)
        return check_inputs(str(tmp / "teacher.pt"), str(root), budget, config, "latency", "blockswap", str(path))

    torch.set_num_threads(1)
    assert inputs(2).table["threads"] == 2
    torch.set_num_threads(2)
    with pytest.raises(BlockswapError, match="measured at 2 threads, the job runs at 1; give --threads 2"):
        inputs(1)
    path.write_text(json.dumps({**table, "image_size": 32}))
    out = tmp_path / "job"
    assert compress(tmp, root, out, "--budget", str(budget), "--metric", "latency", "--latency-table", str(path),
                    "--threads", "2") == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("measured at image-size 32, not 28; measure a table at this shape") and "\n" not in err
    assert not out.exists()


def test_the_card_shows_a_latency_budget_predicted_against_measured_and_a_miss():
    from blockswap.compress.card import latency_lines

    figures = {"median": 12782.0, "q1": 12500.0, "q3": 13100.0, "repeats": 30}
    eager = {"runtime": "PyTorch eager", "threads": 2, "unit": "µs", "batch_1": figures,
             "batch_32_per_image": {**figures, "repeats": 10}}
    budget = {"budget_us": 12000.0, "predicted_us": 11900.0, "measured_us": figures, "batch_size": 1, "threads": 2,
              "runtime": "PyTorch eager", "error": round(11900 / 12782 - 1, 4), "met": False}
    lines = latency_lines({"device": "cpu", "student": [eager], "teacher": [eager]}, budget)
    assert "| student | PyTorch eager | 2 | 12,782 [12,500, 13,100] (30 runs) | 12,782 [12,500, 13,100] (10 runs) |" \
        in lines
    assert lines[-1] == ("Latency budget 12,000 µs (batch 1, PyTorch eager, 2 threads): predicted 11,900 µs, "
                         "measured 12,782 [12,500, 13,100] (30 runs) µs - prediction error -6.9%; budget **missed** "
                         "(measured 6.5% over).")
    assert latency_lines({"device": "cpu", "student": [eager], "teacher": [eager]},
                         {**budget, "met": True})[-1].endswith("budget met.")


def torchvision_teacher(root, path, steps=24, model="resnet18"):
    """A torchvision `model` trained as torchvision's reference does - ImageFolder, ToTensor, ImageNet's
    Normalize - by a plain loop, its state dict saved to `path`; returns its top-1 error (%) on DIR/val by the
    same plain loop."""
    from torchvision import datasets, transforms

    from blockswap.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD

    torch.manual_seed(0)
    preprocess = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    train = torch.utils.data.DataLoader(datasets.ImageFolder(root / "train", preprocess), batch_size=8,
                                        shuffle=True)
    net = getattr(torchvision.models, model)(num_classes=3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    step = 0
    while step < steps:
        for images, labels in train:
            loss = torch.nn.functional.cross_entropy(net(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    torch.save(net.state_dict(), path)
    net.eval()
    val = datasets.ImageFolder(root / "val", preprocess)
    with torch.no_grad():
        wrong = sum(int((net(x).argmax(1) != y).sum()) for x, y in torch.utils.data.DataLoader(val, batch_size=50))
    return 100 * wrong / len(val)


def test_a_torchvision_teacher_is_tested_as_torchvision_trains_it(tmp_path, one_thread):
    """The default for a torchvision state dict is ImageNet's mean and std: compress's teacher error is the
    engineer's own, and the student is trained and tested on the same inputs (recorded in job, metrics, report
    and card)."""
    root = image_folder(tmp_path / "d", per_class=16)
    own = torchvision_teacher(root, tmp_path / "r18.pth")
    out = tmp_path / "out"
    assert main(["compress", "--teacher", str(tmp_path / "r18.pth"), "--data", str(root), "--budget", "5M",
                 "--samples", "1", "--epochs", "1", "--batch-size", "8", "--threads", "1", "--quiet",
                 "-o", str(out)]) == 0
    teacher = json.loads((out / "teacher" / "metrics.json").read_text())
    assert teacher["test_top1_error"] == pytest.approx(own, abs=1e-9) and own < 40
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "image_size": 32, "in_channels": 3,
                "resize": "resize", "normalize": "imagenet"}
    student = json.loads((out / "student" / "metrics.json").read_text())
    report = json.loads((out / "report.json").read_text())
    job = json.loads((out / "job.json").read_text())
    assert teacher["preprocess"] == student["preprocess"] == report["preprocess"] == job["preprocess"] == imagenet
    assert job["recipe"]["normalize"] == "imagenet"
    assert "minus mean [0.485, 0.456, 0.406], divided by std [0.229, 0.224, 0.225]" in (
        out / "model_card.md").read_text()


def test_a_torchvision_resnet50_is_compressed_by_blockswap_and_by_pruning_at_the_same_budget(tmp_path, one_thread):
    """ResNet-50's bottleneck blocks: BlockSwap searches its middles and 3×3s, Torch-Pruning removes its
    channels; both students land in the same params budget and keep the teacher's attention points (AT)."""
    root = image_folder(tmp_path / "d", per_class=16)
    torchvision_teacher(root, tmp_path / "r50.pth", steps=48, model="resnet50")
    budget, teacher_params = 12_000_000, analytic(Genotype.uniform("resnet50", "Conv", num_classes=3)).params
    students = {}
    for method in ("blockswap", "prune-magnitude"):
        out = tmp_path / method
        assert main(["compress", "--teacher", str(tmp_path / "r50.pth"), "--data", str(root), "--budget", "12M",
                     "--method", method, "--samples", "2", "--epochs", "1", "--batch-size", "8", "--lr", "0.005",
                     "--threads", "1", "--quiet", "-o", str(out)]) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["teacher"]["params"] == teacher_params and report["distillation"] == "AT"
        students[method] = report["student"]["params"]
    pick = Genotype.from_dict(json.loads((tmp_path / "blockswap" / "search" / "genotype.json").read_text()))
    assert pick.model == "resnet50" and analytic(pick).params == students["blockswap"]
    assert abs(students["blockswap"] / budget - 1) < 0.025 and 0.975 * budget <= students["prune-magnitude"] <= budget


def test_a_teacher_at_chance_is_refused_with_nothing_written(tmp_path, capsys, one_thread):
    """Untrained weights (or a teacher given other inputs than its training's) test at chance: refused in one
    line naming the likely cause and the option, before job.json or teacher/ is written."""
    root = image_folder(tmp_path / "d", per_class=16)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "r18.pth")
    out = tmp_path / "out"
    assert main(["compress", "--teacher", str(tmp_path / "r18.pth"), "--data", str(root), "--budget", "5M",
                 "--epochs", "1", "--batch-size", "8", "--threads", "1", "--quiet", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the lines saying what is being tested
    assert err.startswith("blockswap compress: error: teacher ") and "cannot be told from chance (66.67% for 3" in err
    assert "preprocessing" in err and "--normalize" in err and str(tmp_path / "r18.pth") in err
    assert not out.exists()


def test_normalize_values(tmp_path):
    from blockswap.core.recipe import TrainConfig

    root = image_folder(tmp_path / "d")
    own = load_dataset("folder", root, "train")
    assert own.preprocess.normalize == "folder"
    assert load_dataset("folder", root, "test", normalize="folder").mean == own.mean  # the training split's
    given = load_dataset("folder", root, "test", normalize="0.5:0.25")
    assert (given.mean, given.std) == ((0.5,) * 3, (0.25,) * 3)
    with pytest.raises(BlockswapError, match="2 channels' mean and std, the images have 3"):
        load_dataset("folder", root, "test", normalize="0.5,0.5:0.2,0.2")
    for bad in ("imagenett", "0.5,0.5:0.2", "0.5:0", "a:b"):
        with pytest.raises(BlockswapError, match="expected imagenet"):
            TrainConfig(normalize=bad)


def test_the_cpu_recipe_is_the_default_on_the_cpu_and_the_papers_one_option_away():
    from blockswap.cli import build_parser
    from blockswap.cli.compress import apply_recipe

    argv = ["compress", "--teacher", "t.pt", "--data", "d", "--budget", "40K", "-o", "o", "--device", "cpu"]
    chosen = {}
    for extra in ([], ["--recipe", "paper"], ["--recipe", "paper", "--epochs", "3", "--samples", "7"]):
        args = build_parser().parse_args(argv + extra)
        name = apply_recipe(args)
        chosen[name, len(extra)] = (args.epochs, args.batch_size, args.lr, args.samples)
    assert chosen == {("cpu", 0): (15, 64, 0.05, 20), ("paper", 2): (200, 128, 0.1, 100),
                      ("paper", 6): (3, 128, 0.1, 7)}


def test_mistakes_end_before_any_work(job, capsys):
    tmp, root = job
    out = tmp / "refused"
    assert compress(tmp, root, out, "--budget", "200K") == 2
    assert "not below the teacher's 174,323" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "2K") == 2
    assert "infeasible" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "20K", "--metric", "latency") == 2
    assert "blockswap latency-table --model wrn-16-1" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "20K", "--method", "prune-magnitude", "--metric", "latency",
                    "--latency-table", str(tmp / "none.json")) == 2
    assert "none.json: latency table not found" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "0.5x", "--round-to", "8") == 2
    assert "--round-to rounds pruned channel counts; BlockSwap keeps" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # argparse's refusal
        compress(tmp, root, out, "--budget", "1.5x")
    assert "budget '1.5x': a fraction of the teacher's cost is a number between 0 and 1" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "0.01x") == 2  # 1,743 params: below what any substitution reaches
    assert "budget 1,743 params" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "20K", "--at-beta", "0") == 2
    assert "give --at-beta > 0" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "20K", "--subset", "49") == 2  # 48 training images
    assert "subset=49 must be between 1 and the 48 examples" in capsys.readouterr().err
    assert not out.exists()


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "\x1b" not in err, err
    return err


@pytest.mark.parametrize("options, message", [
    (["--amp", "bf16"], "amp=bf16 asked for, but mixed precision and channels-last are for CUDA runs"),
    (["--channels-last", "true"], "channels_last asked for"),
    (["--batch-size", "64"], "48 training images, fewer than a batch (--batch-size 64); give --batch-size 48"),
    (["--subset", "12", "--batch-size", "16"], "12 training images, fewer than a batch"),
    (["--normalize", "imagenet"], "--normalize imagenet: 3 channels' mean and std, the images have 1"),
    (["--normalize", "0.5"], "normalize '0.5': expected imagenet"),
] + ([(["--device", "cuda"], "no CUDA GPU is visible; use --device cpu")] if not torch.cuda.is_available() else []))
def test_cpu_options_small_folders_and_missing_devices_are_refused_before_any_work(job, capsys, options, message):
    tmp, root = job
    out = tmp / "refused-early"
    assert compress(tmp, root, out, "--budget", "20K", *options) == 2
    assert message in one_line(capsys) and not out.exists()


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.write_bytes(f.read_bytes()[:200]), "truncated image (200 bytes, no end marker)"),
    (lambda f: f.write_text("not an image"), "not a PNG or JPEG image"),
])
def test_broken_images_of_a_lazily_decoded_folder_are_refused_before_any_work(tmp_path, capsys, damage, message):
    root = image_folder(tmp_path / "d", per_class=2, side=72)  # over 64 px: decoded image by image in training
    bad = root / "val" / "class1" / "1.png"
    damage(bad)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "r18.pth")
    out = tmp_path / "out"
    assert main(["compress", "--teacher", str(tmp_path / "r18.pth"), "--data", str(root), "--budget", "5M",
                 "--batch-size", "2", "-o", str(out)]) == 2
    err = one_line(capsys)
    assert f"{bad}: {message}" in err and "replace or delete the file" in err and not out.exists()


def test_compress_table_refuses_other_files_and_figure_formats_before_writing(job, tmp_path, capsys):
    other = tmp_path / "metrics.json"
    other.write_text(json.dumps({"test_top1_error": 5.0}))
    table = tmp_path / "table.md"
    assert main(["compress-table", str(other), "-o", str(table)]) == 2
    assert f"{other} is not a compress report (no method, metric, budget)" in one_line(capsys)
    assert main(["compress-table", str(other), "-o", str(table), "--figure", str(tmp_path / "p.jpg")]) == 2
    assert "--figure " + str(tmp_path / "p.jpg") + ": unknown figure format .jpg; end it in .png, .pdf, .svg" in (
        one_line(capsys))
    assert not table.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_latency_table_refuses_a_missing_gpu(tmp_path, capsys):
    assert main(["latency-table", "--model", "wrn-16-1", "--device", "cuda", "-o", str(tmp_path / "t.json")]) == 2
    assert "no CUDA GPU is visible" in one_line(capsys) and not (tmp_path / "t.json").exists()


@pytest.mark.slow
def test_compress_profile_runs_every_method_and_tabulates_the_paired_differences(job, tmp_path):

    from blockswap.compress.table import comparison
    from test_workflow import snakemake

    tmp, root = job
    profile = tmp_path / "compress.yaml"
    recipe = "{epochs: 1, batch_size: 8, lr: 0.05, subset: 24}"
    profile.write_text(f"name: compress\ncompress:\n  teacher: {tmp / 'teacher.pt'}\n  data: {root}\n"
                       f"  budgets: [40000]\n  seeds: [0, 1]\n  samples: 3\n  recipe: {recipe}\n")
    run = snakemake("--cores", 2, "--configfile", profile, workdir=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    reports = [json.loads(p.read_text()) for p in sorted((tmp_path / "results/compress").glob("*/*/*/report.json"))]
    assert sorted((r["method"], r["seed"]) for r in reports) == [
        (m, s) for m in ("blockswap", "prune-magnitude", "prune-taylor") for s in (0, 1)]
    rows = comparison(reports)
    by = {(r["method"], r["seed"]): r["student"]["test_top1_error"] for r in reports}
    taylor = rows[2]["vs_blockswap"]
    assert rows[2]["method"] == "prune-taylor"
    assert taylor["mean"] == pytest.approx(sum(by[("prune-taylor", s)] - by[("blockswap", s)] for s in (0, 1)) / 2)
    # Two seeds are too few for a verdict: the difference alone, outside Holm's family.
    assert taylor["why"] == "too few runs (2 pairs)" and math.isnan(taylor["p"]) and math.isnan(taylor["p_holm"])
    table = (tmp_path / "results/compress/table.md").read_text()
    assert table.count("| 40,000 |") == 3 and f"| {taylor['mean']:+.2f} |  | no verdict: too few runs (2 pairs) |" \
        in table and "p (Holm over 0)" in table
    assert (tmp_path / "results/compress/pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: compress\ncompress:\n  teacher: /nonexistent.pt\n")
    run = snakemake("-n", "--configfile", bad, workdir=tmp_path)
    assert run.returncode == 2 and "compress.teacher: /nonexistent.pt does not exist" in run.stderr


def test_latency_profile_measures_its_table_first_and_tabulates_measured_latency(job, tmp_path):
    """workflow/config/latency.yaml's shape, small: the table measured first, a budget as a fraction of the
    teacher's predicted latency; the table and figure set each student's measured latency beside its error.
    (Pruning to a measured latency: `test_pruning_to_a_latency_budget_bisects_on_the_measured_time`.)"""
    from test_workflow import snakemake

    tmp, root = job
    profile = tmp_path / "latency.yaml"
    recipe = "{epochs: 1, batch_size: 8, lr: 0.05, subset: 24}"
    profile.write_text(f"name: latency\ncompress:\n  teacher: {tmp / 'teacher.pt'}\n  data: {root}\n"
                       "  budgets: [0.85x]\n  metric: latency\n  latency_table: measure\n  methods: [blockswap]\n"
                       f"  seeds: [0, 1]\n  samples: 3\n  recipe: {recipe}\n")
    run = snakemake("--cores", 2, "--configfile", profile, workdir=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    results = tmp_path / "results/latency"
    table = json.loads((results / "latency_table.json").read_text())
    assert (table["model"], table["threads"], table["batch_size"]) == ("wrn-16-1", 1, 1)
    g = Genotype.uniform("wrn-16-1", "Conv", in_channels=1, num_classes=3, image_size=28)
    reports = [json.loads(p.read_text()) for p in sorted(results.glob("blockswap/budget0.85x/*/report.json"))]
    assert len(reports) == 2
    for report in reports:
        assert report["budget"] == pytest.approx(0.85 * latency.predict(table, g)) and report["budget_given"] == "0.85x"
        assert report["latency_budget"]["budget_us"] == report["budget"]
    lines = (results / "table.md").read_text().splitlines()
    assert lines[2].endswith("| µs eager batch 1 | µs ORT batch 1 | µs eager per image, batch 32 | µs ORT per image, "
                             "batch 32 |")
    eager = [r["latency"]["student"][0]["batch_1"]["median"] for r in reports]
    row = next(line for line in lines if line.startswith(f"| 0.85x = {reports[0]['budget']:,.0f} | blockswap |"))
    assert f"| {np.mean(eager):,.0f} ± {np.std(eager, ddof=1):,.0f} |" in row
    assert (results / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pruning_to_a_latency_budget_bisects_on_the_measured_time(job, tmp_path, monkeypatch):
    """A clock whose time is the net's MACs: the pruned net is the least pruned whose time fits the budget, its
    every pruned layer a multiple of 8 channels, and the budget's unit said in µs when it cannot be met."""
    from blockswap.compress import pruning

    tmp, root = job
    g = Genotype.uniform("wrn-16-1", "Conv", in_channels=1, num_classes=3, image_size=28)
    monkeypatch.setattr(pruning, "net_timings_us", lambda net, shape, device, batch, repeats: [
        float(measured(net, g).macs) / 1000] * repeats)
    batch = next(iter(load_dataset("folder", root, "train").images.split(8))), torch.arange(8) % 3
    budget = 0.6 * analytic(g).macs / 1000
    record = pruning.prune_to(tmp / "teacher.pt", budget, "magnitude", batch, tmp_path / "p.pt", "latency",
                              {"batch_size": 1}, round_to=8)
    net, _ = load_model(tmp_path / "p.pt")
    assert record["measured_us"] == pytest.approx(measured(net, g).macs / 1000) and record["measured_us"] <= budget
    assert {m.out_channels % 8 for m in net.modules() if isinstance(m, torch.nn.Conv2d)} == {0}
    less = pruning.prune(load_model(tmp / "teacher.pt")[0], g, record["ratio"] - 2e-3, "magnitude", batch, 8)
    assert measured(less, g).macs / 1000 > budget  # a slightly smaller ratio would not fit
    with pytest.raises(BlockswapError, match=r"budget 1 µs is below what pruning up to 90% of every group of wrn-16-1 "
                                             r"reaches \([\d,]+ measured, channels multiples of 8\)"):
        pruning.prune_to(tmp / "teacher.pt", 1, "magnitude", batch, tmp_path / "q.pt", "latency", {"batch_size": 1}, 8)


def _report(method: str, seed: int, error: float) -> dict:
    return {"budget": 40000.0, "method": method, "seed": seed, "student": {"test_top1_error": error, "params": 1}}


def test_comparison_tests_paired_differences_with_a_t_and_holm():
    from scipy import stats

    from blockswap.compress.table import comparison, comparison_markdown

    base, taylor, magnitude = [10.0, 11.0, 12.5], [11.0, 12.5, 13.0], [12.0, 13.0, 14.5]
    reports = [_report(m, s, e) for m, errors in (("blockswap", base), ("prune-taylor", taylor),
                                                  ("prune-magnitude", magnitude)) for s, e in enumerate(errors)]
    rows = {r["method"]: r for r in comparison(reports)}
    diffs = np.subtract(taylor, base)  # 1.0, 1.5, 0.5
    t = rows["prune-taylor"]["vs_blockswap"]
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert (t["mean"], t["low"], t["high"]) == pytest.approx((1.0, 1.0 - half, 1.0 + half))
    assert t["p"] == pytest.approx(stats.ttest_1samp(diffs, 0).pvalue) and t["why"] == ""
    # Magnitude's differences are all 2.0: no spread is no evidence of a zero-width interval or of p = 0.
    m = rows["prune-magnitude"]["vs_blockswap"]
    assert m["mean"] == pytest.approx(2.0) and m["why"] == "no spread: every run gives the same difference"
    assert math.isnan(m["p"]) and math.isnan(m["low"]) and t["p_holm"] == pytest.approx(t["p"])  # a family of 1
    md = comparison_markdown(list(rows.values()), {"params": 2, "test_top1_error": 9.0})
    assert "p (Holm over 1)" in md and "| +2.00 |  | no verdict: no spread" in md


PROFILE = {"recipe": {}, "metric": "params", "methods": ["blockswap", "prune-taylor"], "budgets": [2e6],
           "latency_table": None, "round_to": None, "threads": 1, "teacher_model": "wrn-16-1", "teacher_recipe": {}}


def latency_table_file(path, **changes):
    """A resnet18 CPU latency table of 3-class 32 px inputs, as if measured on another machine: each block type's
    microseconds its rank among the candidates, Conv 100."""
    from blockswap.core.sampling import CostTable

    types = CostTable.build("resnet18", "blockswap", "params", 3, 3, 32).types
    table = {"model": "resnet18", "device": "cpu", "device_name": "elsewhere", "threads": 1, "in_channels": 3,
             "num_classes": 3, "image_size": 32, "blocks": [{t: 100.0 - k for k, t in enumerate(row)} for row in types],
             "fixed_us": 50.0, **changes}
    path.write_text(json.dumps(table))
    return str(path)


def test_compress_profile_checks_what_every_job_would_refuse(tmp_path):
    """The dry run's check of the compress profile: each config every job would refuse, one line naming its key -
    from the folder's first image and the teacher's tensors, without testing the teacher or knowing the machine."""
    from blockswap.compress.profile import check_profile

    root, teacher = image_folder(tmp_path / "d"), tmp_path / "r18.pth"  # 3 classes of 32 px colour images
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), teacher)
    check_profile(PROFILE, str(root), str(teacher))  # a profile its jobs can run
    check_profile({**PROFILE, "methods": ["blockswap"], "metric": "latency", "budgets": [700],  # of 850 µs
                   "latency_table": latency_table_file(tmp_path / "t.json")}, str(root), str(teacher))
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "r18-10.pth")
    (tmp_path / "notes.pth").write_text("not weights")
    one_class = image_folder(tmp_path / "one", classes=1)
    cases = [
        ({"recipe": {"at_beta": 0}}, "compress.recipe: compress distils the student with attention transfer"),
        ({"recipe": {"milestones": [5, 3]}}, r"compress.recipe: milestones must be increasing"),
        ({"metric": "latency"}, "compress.latency_table: --metric latency needs"),
        ({"round_to": 8, "methods": ["blockswap"]}, "compress.round_to: rounds pruned channel counts, and the "
                                                    "profile prunes nothing"),
        ({"budgets": ["0.001x"]}, r"compress.budgets: budget 11,178 params \(±2.5%\) is infeasible for resnet18"),
        ({"metric": "latency", "methods": ["blockswap"]}, "compress.latency_table: --metric latency needs"),
        ({"metric": "latency", "methods": ["blockswap"], "latency_table": latency_table_file(
            tmp_path / "t2.json", model="wrn-16-1")}, "compress.latency_table: .*t2.json: a latency table of wrn-16-1"),
        ({"metric": "latency", "methods": ["blockswap"], "latency_table": latency_table_file(
            tmp_path / "t3.json", threads=2)}, "compress.latency_table: .* measured at 2 threads, the job runs at 1"),
        ({"budgets": [2e6, 20e6]}, "compress.budgets: budget 20,000,000 params is not below the teacher's"),
        ({"budgets": [1000]}, r"compress.budgets: budget 1,000 params \(±2.5%\) is infeasible for resnet18"),
        ({"methods": ["prune-magnitude"], "budgets": [20e6]}, "compress.budgets: budget 20,000,000 params is not"),
    ]
    for changes, message in cases:
        with pytest.raises(BlockswapError, match=message):
            check_profile({**PROFILE, **changes}, str(root), str(teacher))
    for path, message in ((tmp_path / "r18-10.pth", "compress.teacher: .*10 outputs, the folder 3 classes"),
                          (tmp_path / "notes.pth", "compress.teacher: .*notes.pth: not a readable weights file")):
        with pytest.raises(BlockswapError, match=message):
            check_profile(PROFILE, str(root), str(path))
    with pytest.raises(BlockswapError, match="compress.data: .*1 class folder"):
        check_profile(PROFILE, str(one_class), str(teacher))
    # The embedded teacher: teacher_model trained on Fashion-MNIST by teacher_recipe.
    embedded = {**PROFILE, "budgets": [40000]}
    check_profile(embedded, None, None)
    with pytest.raises(BlockswapError, match="compress.teacher_model: unknown model 'resnet99'"):
        check_profile({**embedded, "teacher_model": "resnet99"}, None, None)
    with pytest.raises(BlockswapError, match="compress.teacher_recipe: milestones must be increasing"):
        check_profile({**embedded, "teacher_recipe": {"milestones": [2, 1]}}, None, None)


@pytest.mark.slow
def test_compress_profile_refuses_impossible_configs_at_the_dry_run(tmp_path):
    from test_workflow import ROOT, snakemake

    profile = ROOT / "workflow/config/compress.yaml"
    for config, message in (("compress={recipe: {lr: -0.1}}", "compress.recipe.lr: -0.1 is less than or equal to "
                                                               "the minimum of 0"),
                            ("compress={metric: latency}", "compress.latency_table: --metric latency needs"),
                            ("compress={budgets: [2x]}", "compress.budgets[0]: '2x' is not valid under any")):
        run = snakemake("-n", "--configfile", profile, "--config", config, workdir=tmp_path)
        assert run.returncode == 2 and message in run.stderr, run.stderr[-2000:]
        assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_nested_config_overrides_are_read_as_their_schema_types(tmp_path):
    """Snakemake reads a nested --config value as strings; the profile reads numbers where the schema wants them."""
    from test_workflow import ROOT, planned_jobs, snakemake

    profile = ROOT / "workflow/config/compress.yaml"
    jobs = planned_jobs("--configfile", profile, "--config", "compress={seeds: [0, 1], budgets: [30000]}",
                        workdir=tmp_path)
    assert jobs["compress_student"] == 2 * 3  # 2 seeds × 3 methods at one budget
    run = snakemake("-n", "--configfile", profile, "--config", "compress={seeds: [zero]}", workdir=tmp_path)
    assert run.returncode == 2 and "compress.seeds[0]: 'zero' is not of type 'integer'" in run.stderr
