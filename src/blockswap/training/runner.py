"""The epoch loop every training runs: classification (`train`) and detection (`detection.train`).

A training is a `Run`: it supplies one epoch's steps, its evaluation, its epoch record, its resume file and its
log line; the loop here does the rest, the same for both. Before every epoch's steps it asks nothing; after
them, if a stop signal cut the epoch short, it writes the resume file and raises `Preempted`; otherwise it gives
every process rank 0's buffers (`World.share_buffers`), evaluates when due (every `eval_every` epochs and after
the last), appends the epoch's record, moves to the next epoch, rewrites the resume file and logs the epoch - and
stops there with `Preempted` if a signal arrived meanwhile. At the end rank 0 writes the final checkpoint and the
metrics, each atomically, and deletes the resume file (`Run.finish`).

Stop signals (`stop_requests`): SIGTERM and SIGUSR1 (SLURM's preemption and time-limit warnings) and SIGINT
(Ctrl-C) are recorded, not acted on, so that the step in flight finishes and the resume file holds a whole step
(a second Ctrl-C stops at once, losing that step); `Preempted` carries the exit status 128 + signal that tells
SLURM to requeue the job (143 for SIGTERM) and a shell that Ctrl-C ended it (130). Outside a training loop a
command that keeps its finished work (compress) turns the same signals into `Stopped` (`signals_raise`).
With several processes the stop is agreed (`distributed.AgreedStop`), so all of them stop at the same step: the
loop asks `stop.agreed()`, a collective with several processes, at the same points on every process - before
each step, and once after each epoch.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..core.errors import Stopped
from ..core.files import write_json
from ..data.distributed import SINGLE, AgreedStop, World
from .checkpoint import Tally, save

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Preempted(Stopped):
    """Raised after a stop signal once the resume checkpoint is written; exit with `exit_status`."""

    def __init__(self, signum: int, resume_path: Path, epoch: int, step: int):
        self.resume_path = resume_path
        super().__init__(signum, f"stopped by {signal.Signals(signum).name} in epoch {epoch + 1} after {step} steps; "
                         f"resume checkpoint written to {resume_path}; run the same command again to resume")


def progress_bar(enabled: bool, **options) -> tqdm:
    """A tqdm bar on stderr, drawn only where stderr is a terminal: a job's log file gets no bar frames."""
    return tqdm(file=sys.stderr, disable=None if enabled else True, **options)


@contextlib.contextmanager
def stop_requests():
    """Record (not act on) SIGTERM/SIGUSR1/SIGINT, so the loop can stop between steps; restore handlers after.
    A second SIGINT raises KeyboardInterrupt at once: Ctrl-C pressed again means now, whatever is lost."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield received
        return

    def record(signum, frame):
        if signum == signal.SIGINT and signal.SIGINT in received:
            raise KeyboardInterrupt
        received.append(signum)

    previous = {s: signal.signal(s, record) for s in STOP_SIGNALS
                if signal.getsignal(s) is not signal.SIG_IGN}  # a background job's ignored SIGINT stays ignored
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def signals_raise(message: str):
    """Raise `Stopped(signum, "stopped by NAME; " + message)` on SIGINT/SIGTERM/SIGUSR1 for the duration, for a
    command whose stages are each written atomically (a training inside records them instead, `stop_requests`);
    restore the handlers after. A SIGINT that the shell had ignored (a background job's) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Stopped(signum, f"stopped by {signal.Signals(signum).name}; {message}")

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def available_cpus() -> int:
    """The CPUs this process may use: its CPU affinity where the system has one (Linux; under SLURM, the job's
    CPUs), else all of the machine's (`os.cpu_count`, e.g. on macOS)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_threads(threads: int | None = None, world: World = SINGLE) -> int:
    """Set and return torch's intra-op thread count: `threads`, or the CPUs this process may use
    (`available_cpus`); either shared among the processes of the run on this machine (`world.local_size`)."""
    threads = max(1, (threads or available_cpus()) // world.local_size)
    torch.set_num_threads(threads)
    return threads


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 100 else f"{seconds / 60:.0f} min" if seconds < 6000 else \
        f"{seconds / 3600:.1f} h"


def seed_all(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (torch's seeds CUDA too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resume_path_for(out_checkpoint: Path, resume_path) -> Path:
    """`resume_path`, by default `<out_checkpoint>.resume`."""
    return Path(resume_path) if resume_path else out_checkpoint.with_name(out_checkpoint.name + ".resume")


# The early estimate of a training's time: the first steps of an attempt are left out (allocation, caches), then it
# is said after this many timed steps or seconds of them, whichever comes first.
WARMUP_STEPS, ESTIMATE_STEPS, ESTIMATE_SECONDS = 3, 20, 30.0


class StepClock:
    """The stop, passed on, that also times the training steps: `agreed()` is asked before each step, so the time
    between two calls in one epoch is one step. Once enough steps are timed (after the warm-up) it calls
    `then(seconds per step, steps timed, steps finished this epoch)`, once. `lap()` at an epoch's end, so that
    testing and saving are not taken for a step."""

    def __init__(self, stop: AgreedStop, then: Callable[[float, int, int], None]):
        self.stop, self.then = stop, then
        self.last, self.stepped, self.warmup, self.timed, self.seconds = None, 0, WARMUP_STEPS, 0, 0.0

    @property
    def signum(self) -> int:
        return self.stop.signum

    def agreed(self) -> bool:
        now = time.perf_counter()
        if self.last is not None:
            self.stepped += 1
            if self.warmup:
                self.warmup -= 1
            elif self.then:
                self.timed, self.seconds = self.timed + 1, self.seconds + now - self.last
                if self.timed >= ESTIMATE_STEPS or self.seconds >= ESTIMATE_SECONDS:
                    self.then(self.seconds / self.timed, self.timed, self.stepped)
                    self.then = None
        self.last = time.perf_counter()  # the estimate's own time is not a step's
        return self.stop.agreed()

    def lap(self) -> None:
        self.last, self.stepped = None, 0


class Run:
    """One training as the loop drives it. A subclass (a dataclass) holds `config` (with `epochs`, `eval_every`
    and `progress`), `world`, `model` (unwrapped), `progress` (`checkpoint.Progress`), `started` (perf_counter at
    the start of this attempt) and `resume_path`, and supplies the methods that raise NotImplementedError."""

    def train_steps(self, stop: StepClock) -> int:
        """Train the current epoch from `progress.step` on until its end or until `stop.agreed()` (asked before
        each step, so a collective at the same steps on every process), leaving the step reached in
        `progress.step` and the sums in `progress.tally`; return the epoch's number of steps."""
        raise NotImplementedError

    def test(self) -> dict | None:
        """Evaluate the model (once it is the same on every process)."""
        raise NotImplementedError

    def record(self, epoch: int, steps: int, test: dict | None, seconds: float) -> dict:
        """The finished epoch's entry of the metrics' "epochs", from `progress.tally` and `test`."""
        raise NotImplementedError

    def save_resume(self, mid_epoch: bool) -> None:
        """Write the resume file (every process calls this; only rank 0 writes)."""
        raise NotImplementedError

    def log_epoch(self, record: dict) -> None:
        raise NotImplementedError

    def elapsed(self) -> float:
        """Wall time of all attempts."""
        return self.progress.elapsed_s + time.perf_counter() - self.started

    def test_steps(self) -> float:
        """A test's time in training steps, roughly, for the early estimate (0: not known)."""
        return 0.0

    def bar(self, steps: int) -> tqdm:
        """The progress bar of the current epoch (on a terminal of rank 0, unless the config turns it off); its
        `steps` are the epoch's, which the early estimate counts with."""
        self.epoch_steps = steps
        config, progress = self.config, self.progress
        return progress_bar(config.progress and self.world.main, total=steps, initial=progress.step,
                            desc=f"epoch {progress.epoch + 1}/{config.epochs}", leave=False, dynamic_ncols=True)

    def epoch(self, stop: StepClock) -> None:
        """Train the current epoch (from its saved step), test if due, save; raise Preempted on `stop`."""
        progress = self.progress
        epoch, tick = progress.epoch, time.perf_counter()
        steps = self.train_steps(stop)
        stop.lap()
        if progress.step < steps:  # stopped mid-epoch
            progress.tally.seconds += time.perf_counter() - tick
            self.save_resume(mid_epoch=True)
            raise Preempted(stop.signum, self.resume_path, epoch, progress.step)
        last = epoch + 1 == self.config.epochs
        self.world.share_buffers(self.model)  # one network on all processes: rank 0's, the one saved
        test = self.test() if last or (epoch + 1) % self.config.eval_every == 0 else None
        record = self.record(epoch, steps, test, progress.tally.seconds + time.perf_counter() - tick)
        progress.history.append(record)
        progress.epoch, progress.step, progress.tally = epoch + 1, 0, Tally()
        self.save_resume(mid_epoch=False)
        self.log_epoch(record)
        self.say_estimate(record["seconds"])
        if stop.agreed() and not last:  # asked on every process (a collective), the last epoch's end too
            raise Preempted(stop.signum, self.resume_path, epoch + 1, 0)

    def say_estimate(self, epoch_s: float) -> None:
        """Once an attempt, after its first whole epoch: how long the training will take in all (the epochs left
        at this epoch's time, its test included), on stderr of rank 0 - the early estimate, refined."""
        if getattr(self, "_estimated", False) or not self.world.main:
            return
        self._estimated = True
        left = (self.config.epochs - self.progress.epoch) * epoch_s
        tqdm.write(f"estimated training time: {_duration(self.elapsed() + left)} in all, {_duration(left)} left "
                   f"({self.config.epochs - self.progress.epoch} epochs at {epoch_s:.0f} s)", file=sys.stderr)

    def say_early_estimate(self, step_s: float, timed: int, stepped: int) -> None:
        """Once an attempt, after its first timed steps (`StepClock`): how long the training will take in all - the
        steps left at their pace, each test left at `test_steps` - on stderr of rank 0, so that a job's log says
        within a minute, not after a long first epoch, whether it fits the time it has."""
        if not self.world.main:
            return
        config, progress = self.config, self.progress
        steps = (config.epochs - progress.epoch) * self.epoch_steps - progress.step - stepped
        tests = sum(1 for e in range(progress.epoch + 1, config.epochs + 1)
                    if e % config.eval_every == 0 or e == config.epochs)
        left = (steps + tests * self.test_steps()) * step_s
        tqdm.write(f"estimated training time: {_duration(self.elapsed() + left)} in all, {_duration(left)} left "
                   f"({steps} steps at {step_s:.3g} s, timed over {timed}, and {tests} tests)", file=sys.stderr)

    def run(self, requests: Callable = stop_requests) -> None:
        """Train the epochs that are left, stopping between steps when `requests()` has recorded a signal."""
        with requests() as received:
            stop = StepClock(AgreedStop(self.world, received), self.say_early_estimate)
            while self.progress.epoch < self.config.epochs:
                self.epoch(stop)

    def finish(self, checkpoint: Callable[[], dict], out_checkpoint, metrics: dict, metrics_path) -> None:
        """On rank 0: write `checkpoint()` and the metrics (if `metrics_path`), each atomically, then delete the
        resume file."""
        if self.world.main:
            save(checkpoint(), out_checkpoint)
            if metrics_path:
                write_json(metrics_path, metrics)
            self.resume_path.unlink(missing_ok=True)
