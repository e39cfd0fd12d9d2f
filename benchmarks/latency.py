"""How well a latency table predicts whole networks: predicted against measured latency of nets the sampler
picks under a latency budget (goal: within 10% on the CPU).

    .venv/bin/python benchmarks/latency.py [--model wrn-16-1] [--image-size 28] [--in-channels 1]
        [--candidates blockswap] [--device cpu] [--threads 2] [--nets 10] [--repeats 30]

Prints the table's measurement time and fixed term, then per picked net (budgets at a quarter, half and
three quarters of the feasible range) predicted and measured µs and the relative error, and the mean and
largest |error|. The load average is printed first: other processes on the machine disturb the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from blockswap import latency
from blockswap.sampling import sample_exact


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="wrn-16-1")
    ap.add_argument("--in-channels", type=int, default=1)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--candidates", default="blockswap")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=latency.BATCH_SIZE)
    ap.add_argument("--nets", type=int, default=10, help="picked nets per budget")
    ap.add_argument("--repeats", type=int, default=latency.REPEATS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.model} {args.in_channels}×{args.image_size}², batch {args.batch_size}, {args.device}, "
          f"{args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    start = time.perf_counter()
    table = latency.measure_table(args.model, args.candidates, args.device, args.batch_size, args.repeats,
                                  in_channels=args.in_channels, num_classes=args.num_classes,
                                  image_size=args.image_size)
    print(f"table: {time.perf_counter() - start:.1f} s on {table['device_name']}; fixed term "
          f"{table['fixed_us']:.0f} µs")
    costs = latency.cost_table(table)
    lo, hi = costs.feasible_range
    errors = []
    print(f"{'budget µs':>10} {'net':>10} {'predicted':>10} {'measured':>10} {'error':>7}")
    for fraction in (0.25, 0.5, 0.75):
        budget = lo + fraction * (hi - lo)
        picked = sample_exact(costs, budget, args.nets, seed=1)
        for r in latency.check(table, picked, args.device, args.repeats):
            errors.append(r["error"])
            print(f"{budget:10.0f} {r['id']:>10} {r['predicted_us']:10.0f} {r['measured_us']:10.0f} "
                  f"{r['error']:+7.1%}")
    print(f"|error| mean {statistics.mean(map(abs, errors)):.1%}, largest {max(map(abs, errors)):.1%} "
          f"over {len(errors)} nets (goal: within 10%)")


if __name__ == "__main__":
    main()
