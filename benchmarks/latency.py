"""How well a latency table predicts whole networks: predicted against measured latency of nets the sampler
picks under two latency budgets (goal: within 10% on the CPU, on an idle machine).

    .venv/bin/python benchmarks/latency.py [--model wrn-16-1] [--image-size 28] [--in-channels 1]
        [--candidates blockswap] [--device cpu] [--threads 2] [--nets 8] [--repeats 30]
        [--budgets 0.33,0.67] [--tolerance 0.1]

Prints the table's measurement time and its fit (fixed term, blocks' scale), then per picked net (`--nets` at
each budget, a fraction of the feasible range) the predicted µs, the measured median and interquartile range
and the relative error of the prediction against the median, and the mean and largest |error|. The load
average is printed before and after: other processes on the machine disturb the figures, and the interquartile
ranges show by how much.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from blockswap.core.sampling import sample_exact
from blockswap.nn import latency
from blockswap.nn.models import create_model
from blockswap.training.runner import resolve_threads


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
    ap.add_argument("--nets", type=int, default=8, help="picked nets per budget")
    ap.add_argument("--repeats", type=int, default=latency.REPEATS)
    ap.add_argument("--budgets", default="0.33,0.67", help="budgets as fractions of the feasible range")
    ap.add_argument("--tolerance", type=float, default=0.1, help="the sampler's window around each budget")
    args = ap.parse_args()
    threads = resolve_threads(args.threads)
    print(f"{args.model} {args.in_channels}×{args.image_size}², batch {args.batch_size}, {args.device}, "
          f"{threads} threads, load average {os.getloadavg()[0]:.2f}")
    start = time.perf_counter()
    table = latency.measure_table(args.model, args.candidates, args.device, args.batch_size, args.repeats,
                                  in_channels=args.in_channels, num_classes=args.num_classes,
                                  image_size=args.image_size)
    print(f"table: {time.perf_counter() - start:.1f} s on {table['device_name']}; fixed term "
          f"{table['fixed_us']:.0f} µs, blocks scaled by {table['scale']:.3f}")
    costs = latency.cost_table(table)
    lo, hi = costs.feasible_range
    shape = (args.in_channels, args.image_size, args.image_size)
    errors = []
    print(f"{'budget µs':>10} {'net':>10} {'predicted':>10} {'measured median [IQR]':>26} {'error':>7}")
    for fraction in map(float, args.budgets.split(",")):
        budget = lo + fraction * (hi - lo)
        for g in sample_exact(costs, budget, args.nets, seed=1, tolerance=args.tolerance):
            predicted = latency.predict(table, g)
            m = latency.spread(latency.net_timings_us(create_model(g), shape, args.device, args.batch_size,
                                                      args.repeats))
            errors.append(predicted / m["median"] - 1)
            print(f"{budget:10.0f} {g.id:>10} {predicted:10.0f} {m['median']:10.0f} [{m['q1']:6.0f}, {m['q3']:6.0f}]"
                  f" {errors[-1]:+7.1%}")
    print(f"|error| mean {statistics.mean(map(abs, errors)):.1%}, median {statistics.median(map(abs, errors)):.1%}, "
          f"largest {max(map(abs, errors)):.1%} over {len(errors)} nets (goal: within 10%); load average now "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
