"""The training engine: loss values, LR schedules, exact resume after SIGKILL/SIGTERM, refusals, distillation.

Training runs use wrn-10-1 on 28×28 single-channel images, 512 training examples, batch 32 (16 steps an
epoch), one thread. They read real Fashion-MNIST when it is installed, otherwise synthetic files in the
same format, so the tests never skip.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from blockswap import cli
from blockswap.core import counting
from blockswap.core.datadirs import locate_fashion_mnist
from blockswap.core.errors import BlockswapError
from blockswap.core.files import write_json
from blockswap.core.genotype import Genotype
from blockswap.core.recipe import TrainConfig, learning_rate
from blockswap.nn.models import create_model
from blockswap.training import train as train_module
from blockswap.training.checkpoint import Progress, ResumeFile, load_model
from blockswap.training.engine import Precision, train_step
from blockswap.training.losses import Objective, at_loss, attention_map, kd_loss
from blockswap.training.train import train

from conftest import write_idx

EPOCHS = 4
TIMING = {"seconds", "wall_time_s", "provenance"}  # the only fields allowed to differ between runs


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def _restore_threads():
    """Training sets torch's thread count (to 1 here); give later test modules their default back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    try:
        return str(locate_fashion_mnist())
    except BlockswapError:
        pass
    root = tmp_path_factory.mktemp("fashion")  # synthetic stand-in: class k images are brighter with k
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 600), ("t10k", 300)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = (rng.integers(0, 100, (n, 28, 28)) + 15 * labels[:, None, None]).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return str(root)


def _args(data_dir, out: Path, *extra) -> list[str]:
    return ["train", "--model", "wrn-10-1", "--data-dir", data_dir, "--subset", "512", "--test-subset", "200",
            "--epochs", str(EPOCHS), "--batch-size", "32", "--threads", "1", "--device", "cpu", "--quiet",
            "--checkpoint", str(out / "model.pt"), "-o", str(out / "metrics.json"), *extra]


def _config(data_dir, **kw) -> TrainConfig:
    base = dict(dataset="fashion-mnist", data_dir=data_dir, subset=512, test_subset=200, epochs=EPOCHS,
                batch_size=32, threads=1, device="cpu", progress=False)
    return TrainConfig(**{**base, **kw})


def _blockswap(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "blockswap", *args], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, **kw)


def _wait_for(path: Path, proc: subprocess.Popen, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"finished before {path} appeared: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """One uninterrupted run through the CLI, in this process."""
    out = tmp_path_factory.mktemp("reference")
    assert cli.main(_args(data_dir, out)) == 0
    return out


def _untimed(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k not in TIMING}
    out["epochs"] = [{k: v for k, v in e.items() if k not in TIMING} for e in metrics["epochs"]]
    return out


def _assert_same_run(out: Path, reference: Path) -> None:
    a = torch.load(out / "model.pt", weights_only=True)
    b = torch.load(reference / "model.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (out, reference))
    assert _untimed(ma) == _untimed(mb)
    assert ma["provenance"]["resumes"] >= 1 and mb["provenance"]["resumes"] == 0
    assert not (out / "model.pt.resume").exists()


# ------------------------------------------------------------------------------------------------ losses
def test_attention_map_and_at_loss_by_hand():
    s = torch.ones(1, 1, 1, 2)                        # x² mean over channels [1, 1] → [1/√2, 1/√2]
    t = torch.tensor([[[[2.0, 0.0]]]])                # → [4, 0] → [1, 0]
    assert torch.allclose(attention_map(s), torch.tensor([[2 ** -0.5, 2 ** -0.5]]))
    expected = ((2 ** -0.5 - 1) ** 2 + 0.5) / 2
    assert at_loss(s, t).item() == pytest.approx(expected, rel=1e-6)


def test_at_loss_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 8, 5, 5, generator=g)  # channels may differ
    total = 0.0
    for i in range(3):
        a = (s[i] ** 2).mean(0).flatten().double()
        b = (t[i] ** 2).mean(0).flatten().double()
        total += ((a / a.norm() - b / b.norm()) ** 2).sum().item()
    assert at_loss(s, t).item() == pytest.approx(total / (3 * 25), rel=1e-5)


def test_kd_loss_value():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t = torch.tensor([[3.0, 2.0, 1.0], [1.0, 0.0, -1.0]])
    T = 4.0
    p = np.exp(s.numpy() / T) / np.exp(s.numpy() / T).sum(1, keepdims=True)
    q = np.exp(t.numpy() / T) / np.exp(t.numpy() / T).sum(1, keepdims=True)
    expected = (q * (np.log(q) - np.log(p))).sum(1).mean() * T * T
    assert kd_loss(s, t, T).item() == pytest.approx(expected, rel=1e-5)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-6)


def test_objective_mixes_ce_kd_and_at():
    g = torch.Generator().manual_seed(1)
    logits, t_logits = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    labels = torch.tensor([0, 3, 9, 1])
    pts = [torch.randn(4, 2, 8, 8, generator=g), torch.randn(4, 2, 4, 4, generator=g)]
    t_pts = [torch.randn(4, 6, 8, 8, generator=g), torch.randn(4, 6, 4, 4, generator=g)]
    loss, parts = Objective((10.0, 1000.0), 0.9, 4.0)(logits, pts, labels, t_logits, t_pts)
    ce = F.cross_entropy(logits, labels)
    expected = 0.1 * ce + 0.9 * kd_loss(logits, t_logits, 4.0) + 10 * at_loss(pts[0], t_pts[0]) \
        + 1000 * at_loss(pts[1], t_pts[1])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["ce"].item() == pytest.approx(ce.item())
    assert Objective()(logits, pts, labels)[0].item() == pytest.approx(ce.item())  # plain CE
    assert Objective((5.0,)).betas(4) == (5.0,) * 4
    with pytest.raises(BlockswapError, match="3 values but the network has 4"):
        Objective((1.0, 2.0, 3.0)).betas(4)


# ------------------------------------------------------------------------------------------- schedules
def test_cosine_schedule_values():
    c = TrainConfig(epochs=200, lr=0.1)
    assert learning_rate(c, 0) == pytest.approx(0.1)
    assert learning_rate(c, 100) == pytest.approx(0.05)
    assert learning_rate(c, 50) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert learning_rate(c, 199) == pytest.approx(0.05 * (1 + math.cos(math.pi * 199 / 200)))
    assert learning_rate(c, 100, step=5, steps_per_epoch=10) == learning_rate(c, 100)  # per epoch by default
    it = TrainConfig(epochs=200, lr=0.1, lr_unit="iteration")
    assert learning_rate(it, 100, step=5, steps_per_epoch=10) == pytest.approx(
        0.05 * (1 + math.cos(math.pi * 100.5 / 200)))


def test_step_schedule_values():
    moonshine = TrainConfig(schedule="step", lr=0.1, milestones=(60, 120, 160), gamma=0.2, epochs=200)
    values = {e: learning_rate(moonshine, e) for e in (0, 59, 60, 119, 120, 159, 160, 199)}
    assert values == pytest.approx({0: 0.1, 59: 0.1, 60: 0.02, 119: 0.02, 120: 0.004, 159: 0.004,
                                    160: 0.0008, 199: 0.0008})
    imagenet = TrainConfig(schedule="step", lr=0.1, milestones=(30, 60, 90), gamma=0.1, epochs=100,
                           lr_unit="iteration")
    assert learning_rate(imagenet, 29, step=99, steps_per_epoch=100) == pytest.approx(0.1)
    assert learning_rate(imagenet, 30) == pytest.approx(0.01)
    assert learning_rate(imagenet, 95) == pytest.approx(1e-4)


def test_config_validation():
    with pytest.raises(BlockswapError, match="milestones"):
        TrainConfig(milestones=(120, 60))
    with pytest.raises(BlockswapError, match="kd_alpha"):
        TrainConfig(kd_alpha=1.5)
    with pytest.raises(BlockswapError, match="crs_wd must be true or false"):
        TrainConfig(crs_wd="yes")
    c = TrainConfig(at_beta=750)
    assert c.at_beta == (750.0,) and TrainConfig.from_dict(c.to_dict()) == c


# ---------------------------------------------------------------------------------- checkpoint and resume
def test_final_checkpoint_loads_weights_only(reference):
    ckpt = torch.load(reference / "model.pt", weights_only=True)
    assert set(ckpt) == {"genotype", "config", "state_dict", "metrics", "provenance"}
    g = Genotype.from_dict(ckpt["genotype"])
    assert g == Genotype.uniform("wrn-10-1", "Conv", in_channels=1, image_size=28)
    net = create_model(g)
    net.load_state_dict(ckpt["state_dict"])
    m = json.loads((reference / "metrics.json").read_text())
    assert ckpt["metrics"] == m
    assert [e["epoch"] for e in m["epochs"]] == list(range(1, EPOCHS + 1))
    assert [e["lr"] for e in m["epochs"]] == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * e / EPOCHS))
                                                            for e in range(EPOCHS)])
    for e in m["epochs"]:
        assert {"train_loss", "train_ce", "train_top1_error", "test_loss", "test_top1_error", "test_top5_error",
                "seconds"} <= set(e)
        assert 0 <= e["test_top5_error"] <= e["test_top1_error"] <= 100
    assert m["test_top1_error"] == m["epochs"][-1]["test_top1_error"] < 60  # it learnt (chance: 90)
    assert m["params"] == 77562 and m["ops"] > 0 and m["macs"] > 0 and m["wall_time_s"] > 0
    assert m["provenance"]["config"]["epochs"] == EPOCHS and m["provenance"]["seed"] == 0
    # `blockswap evaluate` reproduces the final test error on the same examples.
    out = reference / "eval.json"
    assert cli.main(["evaluate", "--checkpoint", str(reference / "model.pt"), "--test-subset", "200",
                     "--threads", "1", "-o", str(out)]) == 0
    ev = json.loads(out.read_text())
    assert (ev["test_top1_error"], ev["test_top5_error"]) == (m["test_top1_error"], m["test_top5_error"])


def test_sigkill_then_rerun_matches_uninterrupted(data_dir, reference, tmp_path):
    args = _args(data_dir, tmp_path)
    proc = _blockswap(*args)
    _wait_for(tmp_path / "model.pt.resume", proc)
    proc.kill()
    proc.wait()
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "metrics.json").exists()
    state = torch.load(tmp_path / "model.pt.resume", weights_only=True)
    assert 1 <= state["epoch"] < EPOCHS and state["step"] == 0
    proc = _blockswap(*args)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "resuming from" in err
    _assert_same_run(tmp_path, reference)


def test_sigterm_writes_checkpoint_exits_143_and_resumes(data_dir, reference, tmp_path):
    args = _args(data_dir, tmp_path)
    proc = _blockswap(*args)
    _wait_for(tmp_path / "model.pt.resume", proc)
    time.sleep(0.1)  # most likely mid-epoch
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "run the same command again to resume" in err
    state = torch.load(tmp_path / "model.pt.resume", weights_only=True)
    assert (state["epoch"], state["step"]) > (0, 0) and state["epoch"] < EPOCHS
    # The resume file of this wrn-10-1 refuses a run of another genotype.
    other = Genotype.uniform("wrn-10-1", "ConvB2", in_channels=1, image_size=28)
    with pytest.raises(BlockswapError, match="resume checkpoint of wrn-10-1.*Conv,Conv,Conv"):
        train(_config(data_dir), other, out_checkpoint=tmp_path / "model.pt")
    with pytest.raises(BlockswapError, match="other settings.*lr: 0.1 there, 0.05 now"):
        train(_config(data_dir, lr=0.05), "wrn-10-1", out_checkpoint=tmp_path / "model.pt")
    assert cli.main(args) == 0
    _assert_same_run(tmp_path, reference)


def _sigterm_at(monkeypatch, at_epoch: int, at_step: int, signum: int = signal.SIGTERM):
    """Send `signum` to this process when training reaches (epoch, step); returns the real learning_rate."""
    real = train_module.learning_rate

    def signalling(config, epoch, step=0, steps_per_epoch=1):
        if (epoch, step) == (at_epoch, at_step):
            os.kill(os.getpid(), signum)
        return real(config, epoch, step, steps_per_epoch)

    monkeypatch.setattr(train_module, "learning_rate", signalling)
    return real


@pytest.fixture
def ctrl_c_reaches_us():
    """SIGINT handled as in a terminal's program: a background job (a CI run's, say) may inherit it ignored,
    and training leaves an ignored SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.usefixtures("ctrl_c_reaches_us")
def test_mid_epoch_stop_resumes_exactly(data_dir, reference, tmp_path, monkeypatch, signum):
    """SIGTERM or Ctrl-C at a known step (sent from inside the loop) and resume in-process: same result."""
    real = _sigterm_at(monkeypatch, 1, 5, signum)
    with pytest.raises(SystemExit) as stopped:
        cli.main(_args(data_dir, tmp_path))
    assert stopped.value.code == 128 + signum  # 143, 130
    state = torch.load(tmp_path / "model.pt.resume", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 6) and state["tally"]["n"] == 6 * 32
    monkeypatch.setattr(train_module, "learning_rate", real)
    assert cli.main(_args(data_dir, tmp_path)) == 0
    _assert_same_run(tmp_path, reference)


# ------------------------------------------------------------------------------ mixed precision, layout
@pytest.mark.parametrize("extra, asked", [
    (["--amp", "fp16"], "amp=fp16"), (["--channels-last", "true"], "channels_last"),
    (["--amp", "bf16", "--channels-last", "true"], "amp=bf16 and channels_last")])
def test_gpu_settings_are_refused_on_the_cpu(data_dir, tmp_path, capsys, extra, asked):
    assert cli.main(_args(data_dir, tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    assert f"error: {asked} asked for, but mixed precision and channels-last are for CUDA runs and this one runs " \
           "on the cpu; leave them off there\n" in err
    assert not list(tmp_path.iterdir())  # refused before anything is written


def test_resume_compares_settings_left_out_of_the_records(tmp_path):
    """A resume file of a run without amp lacks the setting; it still tells such a run from one with amp."""
    genotype = Genotype.uniform("wrn-10-1", "Conv", in_channels=1, image_size=28)
    model = create_model(genotype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.resume"
    for then, now, diff in ((TrainConfig(), TrainConfig(amp="bf16"), "amp: 'off' there, 'bf16' now"),
                            (TrainConfig(channels_last=True), TrainConfig(), "channels_last: True there, False now")):
        ResumeFile(path, genotype, then).save(model, optimizer, Progress(), 0.0, False, torch.device("cpu"))
        assert "amp" not in torch.load(path, weights_only=True)["config"]
        with pytest.raises(BlockswapError, match=f"other settings \\({diff}\\)"):
            ResumeFile(path, genotype, now).load(model, optimizer)
    # fp16's loss scale travels with the resume file (a CPU GradScaler stands in for the CUDA one).
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    ResumeFile(path, genotype, TrainConfig()).save(model, optimizer, Progress(), 0.0, True, torch.device("cpu"),
                                                   scaler)
    again = torch.amp.GradScaler("cpu")
    ResumeFile(path, genotype, TrainConfig()).load(model, optimizer, again)
    assert again.get_scale() == 1024.0


def test_a_bf16_channels_last_step_computes_what_float32_does_nearly():
    """The autocast and layout paths of a step, exercised on the CPU (where `train` refuses them)."""
    genotype = Genotype.uniform("wrn-10-1", "Conv", in_channels=1, image_size=28)
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)
    results = []
    for precision in (Precision(), Precision("bf16", channels_last=True)):
        torch.manual_seed(0)
        model = precision.layout(create_model(genotype))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        before = [p.detach().clone() for p in model.parameters()]
        values = train_step(model, optimizer, Objective(), images, labels, 0.1, precision=precision)
        assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()) if b.grad is not None)
        conv = next(m for m in model.modules()  # a weight whose NCHW and NHWC layouts differ
                    if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1 and m.kernel_size == (3, 3))
        assert conv.weight.is_contiguous() != precision.channels_last
        assert conv.weight.dtype == torch.float32  # autocast leaves the weights float32
        results.append(values)
    assert results[1]["loss"] == pytest.approx(results[0]["loss"], rel=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_channels_last_training_on_cuda(data_dir, tmp_path, amp):
    config = _config(data_dir, device="cuda", amp=amp, channels_last=True)
    metrics = train(config, "wrn-10-1", out_checkpoint=tmp_path / "model.pt")
    assert metrics["test_top1_error"] < 70 and math.isfinite(metrics["test_loss"])  # it learnt (chance: 90)
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert ckpt["config"]["amp"] == amp and ckpt["config"]["channels_last"] is True
    assert all(t.is_contiguous() and t.dtype != torch.float16 for t in ckpt["state_dict"].values())


def test_nan_loss_stops_with_clear_error(data_dir, tmp_path, capsys):
    assert cli.main(_args(data_dir, tmp_path, "--lr", "1e30")) == 2
    err = capsys.readouterr().err
    assert "training loss became nan in epoch 1, step" in err and "lower --lr" in err
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "metrics.json").exists()


def test_bad_checkpoints_and_genotypes_are_refused(data_dir, reference, tmp_path, capsys):
    teacher = reference / "model.pt"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(Genotype.uniform("wrn-10-1", "ConvB2", in_channels=1, image_size=28).to_json())
    with pytest.raises(BlockswapError, match="holds wrn-10-1 .*not the expected"):
        load_model(teacher, expect=Genotype.from_dict(json.loads(wrong.read_text())))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(teacher.read_bytes()[:5000])
    for path, message in ((corrupt, "corrupt.pt: not a readable checkpoint"),
                          (tmp_path / "missing.pt", "missing.pt: checkpoint not found")):
        with pytest.raises(BlockswapError, match=message):
            load_model(path)
    # Through the CLI: a teacher of the wrong genotype, and a genotype shaped for CIFAR-10.
    base = ["distill", "--genotype", str(wrong), "--teacher", str(teacher), "--data-dir", data_dir,
            "--subset", "64", "--batch-size", "32", "--epochs", "1", "--checkpoint", str(tmp_path / "s.pt")]
    assert cli.main(base + ["--teacher-genotype", str(wrong)]) == 2
    assert "not the expected" in capsys.readouterr().err
    cifar = tmp_path / "cifar.json"
    cifar.write_text(Genotype.uniform("wrn-10-1", "Conv").to_json())
    assert cli.main(["train", "--genotype", str(cifar), "--data-dir", data_dir, "--subset", "64",
                     "--checkpoint", str(tmp_path / "c.pt")]) == 2
    err = capsys.readouterr().err
    assert "shaped for another dataset than fashion-mnist: in_channels 3 (dataset: 1)" in err
    assert "--in-channels 1 --image-size 28" in err


def test_crs_wd_decays_the_compressed_tensors_by_the_ratio(data_dir, tmp_path):
    """CRS-wd (Gray et al. 2019): the structured 1×1s' factors form their own group, decayed by params/full params."""
    assert cli.main(_args(data_dir, tmp_path, "--block", "Generic_0.1", "--crs-wd", "true", "--epochs", "1")) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    g = Genotype.from_dict(metrics["genotype"])
    ratio = counting.analytic(g).params / counting.analytic(Genotype.uniform("wrn-10-1", "Conv", in_channels=1,
                                                                               image_size=28)).params
    assert metrics["crs_ratio"] == pytest.approx(ratio) and 0 < ratio < 1
    factors = 0  # Generic_0.1: N→r→M with r = int(0.1·max(N, M)), in each block's two convs
    for s in g.architecture.slots(28):
        for n in (s.cin, s.cout):
            r = int(0.1 * max(n, s.cout))
            factors += n * r + r * s.cout
    compressed, other = metrics["weight_decay_groups"]
    assert compressed == {"name": "compressed", "tensors": 12, "params": factors,
                          "weight_decay": pytest.approx(5e-4 * ratio)}
    assert other["name"] == "other" and other["weight_decay"] == 5e-4
    assert compressed["params"] + other["params"] == metrics["params"]
    assert metrics["provenance"]["config"]["crs_wd"] is True
    plain = train_module.weight_decay_groups(create_model(g), g, TrainConfig())
    assert [(x["name"], x["weight_decay"]) for x in plain] == [("all", 5e-4)]


def test_distillation_with_at_and_kd(data_dir, reference, tmp_path):
    student = Genotype("wrn-10-1", ("ConvB2", "DConvA2", "DConvA4"), in_channels=1, image_size=28)
    out = tmp_path / "s.json"
    metrics = train(_config(data_dir, subset=256, test_subset=100, epochs=1, at_beta=(1000.0,), kd_alpha=0.5),
                    student, out_checkpoint=tmp_path / "s.pt", metrics_path=out, teacher=reference / "model.pt",
                    teacher_genotype=Genotype.uniform("wrn-10-1", "Conv", in_channels=1, image_size=28))
    m = json.loads(out.read_text())
    assert m == json.loads(json.dumps(metrics))
    assert m["genotype_id"] == student.id and m["params"] < m["teacher"]["params"]
    assert m["teacher"]["test_top1_error"] == json.loads((reference / "metrics.json").read_text())["test_top1_error"]
    assert m["objective"] == {"at_beta": [1000.0] * 3, "kd_alpha": 0.5, "kd_temperature": 4.0}
    e = m["epochs"][0]
    assert e["train_at"] > 0 and e["train_kd"] > 0
    assert e["train_loss"] == pytest.approx(0.5 * e["train_ce"] + 0.5 * e["train_kd"] + 1000 * e["train_at"])
    assert 0 <= m["test_top1_error"] <= 100


def test_cli_genotype_sources_and_labels(data_dir, reference, tmp_path):
    """--model M --block B (a Moonshine student), --genotype C.jsonl --index I, and --label into the metrics."""
    common = ["--teacher", str(reference / "model.pt"), "--data-dir", data_dir, "--subset", "64",
              "--test-subset", "50", "--epochs", "1", "--batch-size", "32", "--threads", "1", "--quiet"]
    out = tmp_path / "moonshine.json"
    assert cli.main(["distill", "--model", "wrn-10-1", "--block", "ConvB2", *common, "--label", "method=moonshine",
                     "--label", "budget=20k", "--checkpoint", str(tmp_path / "m.pt"), "-o", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["labels"] == {"method": "moonshine", "budget": "20k"}
    assert m["genotype"]["blocks"] == ["ConvB2"] * 3 and m["genotype"]["in_channels"] == 1
    nets = tmp_path / "nets.jsonl"
    picks = [Genotype.uniform("wrn-10-1", b, in_channels=1, image_size=28) for b in ("G2B2", "DConvA2")]
    nets.write_text("".join(json.dumps({"id": g.id, **g.to_dict(), "params": 1}) + "\n" for g in picks))
    out = tmp_path / "net1.json"
    assert cli.main(["distill", "--genotype", str(nets), "--index", "1", *common,
                     "--checkpoint", str(tmp_path / "n.pt"), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["genotype_id"] == picks[1].id
    assert cli.main(["distill", "--genotype", str(nets), "--index", "2", *common,
                     "--checkpoint", str(tmp_path / "n.pt")]) == 2


def _distill_args(data_dir, teacher, checkpoint, *extra) -> list[str]:
    return ["distill", "--model", "wrn-10-1", "--teacher", str(teacher), "--data-dir", data_dir, "--subset", "256",
            "--test-subset", "100", "--epochs", "1", "--batch-size", "32", "--threads", "1", "--device", "cpu",
            "--quiet", "--checkpoint", str(checkpoint), *extra]


def test_distill_never_overwrites_its_teacher(data_dir, reference, tmp_path, capsys):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes((reference / "model.pt").read_bytes())
    link = tmp_path / "link.pt"
    link.symlink_to(teacher)
    before = teacher.read_bytes()
    for option, path in (("--checkpoint", teacher), ("--checkpoint", link), ("--resume", teacher), ("-o", teacher)):
        checkpoint = path if option == "--checkpoint" else tmp_path / "s.pt"
        extra = [] if option == "--checkpoint" else [option, str(path)]
        assert cli.main(_distill_args(data_dir, teacher, checkpoint, *extra)) == 2, option
        err = capsys.readouterr().err
        assert "are the same file" in err and "give" in err, err
    assert teacher.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.pt", "teacher.pt"]


def test_resume_refuses_a_retrained_teacher(data_dir, reference, tmp_path, monkeypatch, capsys):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes((reference / "model.pt").read_bytes())
    real = _sigterm_at(monkeypatch, 0, 3)
    with pytest.raises(SystemExit) as stopped:
        cli.main(_distill_args(data_dir, teacher, tmp_path / "s.pt"))
    assert stopped.value.code == 143
    monkeypatch.setattr(train_module, "learning_rate", real)
    resume = tmp_path / "s.pt.resume"
    assert torch.load(resume, weights_only=True)["teacher_sha256"] == train_module.weights_sha256(
        torch.load(teacher, weights_only=True)["state_dict"])
    # The same genotype retrained under the same path: other weights, same id.
    ckpt = torch.load(teacher, weights_only=True)
    first = next(k for k in ckpt["state_dict"] if k.endswith("weight"))
    ckpt["state_dict"][first] = ckpt["state_dict"][first] + 0.01
    torch.save(ckpt, teacher)
    assert cli.main(_distill_args(data_dir, teacher, tmp_path / "s.pt")) == 2
    err = capsys.readouterr().err
    assert "teacher with other weights" in err and f"delete {resume}" in err
    assert resume.exists() and not (tmp_path / "s.pt").exists()


def test_metrics_never_hold_nan(data_dir, tmp_path, monkeypatch, capsys):
    with pytest.raises(BlockswapError, match="refusing to write NaN"):
        write_json(tmp_path / "m.json", {"test_loss": float("nan")})
    assert not (tmp_path / "m.json").exists()
    real = train_module.evaluate

    def diverged(*args, **kw):
        return {**real(*args, **kw), "loss": float("nan")}

    monkeypatch.setattr(train_module, "evaluate", diverged)
    assert cli.main(_args(data_dir, tmp_path, "--epochs", "1", "--subset", "64")) == 2
    err = capsys.readouterr().err
    assert "the test loss became nan after epoch 1" in err and "lower --lr" in err
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "metrics.json").exists()


def test_output_mistakes_stop_training_before_the_first_epoch(data_dir, tmp_path, capsys):
    a_file = tmp_path / "plain"
    a_file.write_text("")
    for extra, message in ((["--checkpoint", str(tmp_path)], "is a directory"),
                           (["-o", str(a_file / "m.json")], "is a file, not a folder"),
                           (["--epochs", "0"], "epochs must be ≥ 1"),
                           (["--lr", "nan"], "lr must be")):
        assert cli.main(_args(data_dir, tmp_path, *extra)) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "epoch 1/" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]
