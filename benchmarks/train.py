"""Training throughput (images/s) of the real training step, with and without attention transfer.

    .venv/bin/python benchmarks/train.py [--iterations 3] [--device auto] [--threads N]

Each row times `blockswap.training.engine.train_step` (augmentation of a uint8 batch included, as in training) over
a few steps after one warm-up, from the median step time (robust to other load on a shared machine;
the load average is printed too). "AT" adds what distillation costs: a forward pass of an all-Conv
teacher of the same model without gradients, and the AT loss at every group output (β = 1000). The
student is the all-Conv network itself, i.e. the most expensive student of that model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from blockswap.core.genotype import Genotype
from blockswap.data.datasets import CIFAR10_MEAN, CIFAR10_STD, FASHION_MNIST_MEAN, FASHION_MNIST_STD, Augment
from blockswap.nn.models import create_model
from blockswap.training.engine import FLOAT32, Precision, resolve_device, train_step
from blockswap.training.losses import Objective
from blockswap.training.runner import resolve_threads

# name: (model, channels, side, batch, augmentation) - WRN-40-2 is the CIFAR-10 BlockSwap teacher,
# wrn-16-1 on Fashion-MNIST the default tiny profile.
PROFILES = {
    "wrn-40-2 cifar10": ("wrn-40-2", 3, 32, 128, Augment(CIFAR10_MEAN, CIFAR10_STD, pad=4, flip=True, cutout=16)),
    "wrn-16-1 fashion-mnist": ("wrn-16-1", 1, 28, 128, Augment(FASHION_MNIST_MEAN, FASHION_MNIST_STD, pad=4)),
}


def images_per_second(model_name, channels, side, batch, augment, with_at, iterations, device,
                      precision: Precision = FLOAT32) -> float:
    torch.manual_seed(0)
    genotype = Genotype.uniform(model_name, "Conv", in_channels=channels, image_size=side)
    model = precision.layout(create_model(genotype, device).train())
    teacher = precision.layout(create_model(genotype, device).eval().requires_grad_(False)) if with_at else None
    objective = Objective(at_beta=(1000.0,) if with_at else ())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (batch, channels, side, side), dtype=torch.uint8, generator=g).to(device)
    labels = torch.randint(0, 10, (batch,), generator=g).to(device)

    def step():
        train_step(model, optimizer, objective, augment(raw, g), labels, 0.01, teacher, precision=precision)

    step()  # warm-up: allocator, kernels
    times = []
    for _ in range(iterations):  # train_step syncs once per step (it reads the loss): each time is complete
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    # The median step: a shared machine's bursts of other load move the mean a lot, the median little.
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=5,
                        help="timed steps per row after one warm-up; images/s is from the median step")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch threads (default: the CPUs this process may use)")
    parser.add_argument("--profiles", default=",".join(PROFILES), help="comma list of: " + ", ".join(PROFILES))
    args = parser.parse_args()
    device = resolve_device(args.device)
    threads = resolve_threads(args.threads)
    print(f"device {device}, {threads} threads, {args.iterations} timed steps per row, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'profile':<24} {'batch':>5} {'images/s':>10} {'images/s AT':>12} {'AT cost':>8}")
    for name in args.profiles.split(","):
        model_name, channels, side, batch, augment = PROFILES[name]
        plain, at = (images_per_second(model_name, channels, side, batch, augment, with_at, args.iterations,
                                       device) for with_at in (False, True))
        print(f"{name:<24} {batch:>5} {plain:>10.1f} {at:>12.1f} {plain / at - 1:>7.0%}")


if __name__ == "__main__":
    main()
