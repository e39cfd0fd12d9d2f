"""The training loop's seams: the thread count, and the agreed stop (its collective asked explicitly)."""

import os
import signal
import sys

import pytest
import torch

from blockswap.data.distributed import SINGLE, AgreedStop
from blockswap.training.runner import available_cpus, resolve_threads


def test_available_cpus_falls_back_to_cpu_count_without_an_affinity_call(monkeypatch):
    """macOS has no os.sched_getaffinity: all of the machine's CPUs are used there."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert available_cpus() == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "undetermined"
    assert available_cpus() == 1


def test_resolve_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert resolve_threads(1) == 1 and torch.get_num_threads() == 1
        assert resolve_threads(None, SINGLE) == available_cpus() == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_agreed_stop_is_asked_explicitly():
    received = []
    stop = AgreedStop(SINGLE, received)
    with pytest.raises(TypeError, match="agreed"):
        bool(stop)  # an `if stop` would hide a collective
    assert not stop.agreed() and stop.signum == 0
    received.append(signal.SIGTERM)
    assert stop.agreed() and stop.signum == signal.SIGTERM


def test_progress_bars_are_drawn_on_a_terminal_only(monkeypatch):
    import io

    from blockswap.training.runner import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file: no bar frames
    assert progress_bar(True, total=3).disable and progress_bar(False, total=3).disable
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = progress_bar(True, total=3, desc="epoch 1/1")
    assert not bar.disable
    bar.update(3)
    bar.close()
    assert "epoch 1/1" in sys.stderr.getvalue()
    assert progress_bar(False, total=3).disable  # --quiet


def test_the_training_time_is_estimated_after_its_first_timed_steps(tmp_path, capsys):
    """Said once, within the first epoch (after the warm-up and ESTIMATE_STEPS timed steps), for all the epochs and
    their tests; on a tiny run its figure is the training's actual time to within a factor of 3 (loosely: the
    machine may be busy)."""
    import re

    from blockswap.core.genotype import Genotype
    from blockswap.core.recipe import TrainConfig
    from blockswap.training.runner import ESTIMATE_STEPS, WARMUP_STEPS
    from blockswap.training.train import train
    from test_compress import image_folder

    root = image_folder(tmp_path / "data", per_class=32, channels=1, side=16)  # 96 images: 32 steps of 3
    epochs, steps = 2, 32
    assert WARMUP_STEPS + ESTIMATE_STEPS < steps
    config = TrainConfig(dataset="folder", data_dir=str(root), epochs=epochs, batch_size=3, lr=0.05, threads=1,
                         progress=False)
    g = Genotype.uniform("wrn-10-1", "Conv", in_channels=1, num_classes=3, image_size=16)
    metrics = train(config, g, out_checkpoint=tmp_path / "model.pt")
    err = capsys.readouterr().err
    said = re.findall(r"estimated training time: .* left \((\d+) steps at ([\d.e-]+) s, timed over (\d+), "
                      r"and (\d+) tests\)", err)
    assert len(said) == 1, err
    left, step_s, timed, tests = int(said[0][0]), float(said[0][1]), int(said[0][2]), int(said[0][3])
    assert timed == ESTIMATE_STEPS and tests == epochs
    assert left == epochs * steps - (WARMUP_STEPS + ESTIMATE_STEPS)
    assert err.index("timed over") < err.index(f"epoch 1/{epochs}")  # before the first epoch's end
    predicted, actual = epochs * steps * step_s, metrics["provenance"]["wall_time_s"]
    assert actual / 3 < predicted < actual * 3, (predicted, actual)
