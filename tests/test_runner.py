"""The training loop's seams: the thread count, and the agreed stop (its collective asked explicitly)."""

import os
import signal
import sys

import pytest
import torch

from blockswap.distributed import SINGLE, AgreedStop
from blockswap.runner import available_cpus, resolve_threads


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

    from blockswap.runner import progress_bar

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
