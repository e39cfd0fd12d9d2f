"""Time to sample 1000 candidates at a sweep of budgets, exact vs the paper's rejection sampler.

    python benchmarks/sampling.py [--model wrn-40-2] [--samples 1000] [--candidates blockswap]

Also prints the exact sampler's table size (entries): the partial costs that can still end in budget.
"""

import argparse
import time

from blockswap.core.errors import BlockswapError
from blockswap.core.sampling import (
    TOLERANCE,
    CostTable,
    completion_counts,
    count_in_budget,
    sample_exact,
    sample_reference,
    window,
)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="wrn-40-2")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--candidates", default="blockswap", help="candidate set (blockswap, moonshine, …)")
    p.add_argument("--budgets", default="84500,90000,200000,400000,800000,1600000,2200000,2240000")
    p.add_argument("--reference-cap", type=int, default=20_000_000, help="max proposals for the reference")
    args = p.parse_args()

    t0 = time.perf_counter()
    table = CostTable.build(args.model, args.candidates)
    print(f"{args.model}, {args.candidates}: cost table {time.perf_counter() - t0:.3f} s; "
          f"feasible {table.feasible_range}")
    print(f"{'budget':>10} {'in-budget set':>14} {'entries':>10} {'exact s':>8} {'reference s':>12} {'proposals':>12}")
    for budget in map(float, args.budgets.split(",")):
        if not table.feasible_range[0] < budget < table.feasible_range[1] * 1.025:
            continue
        t0 = time.perf_counter()
        table = CostTable.build(args.model, args.candidates)
        sample_exact(table, budget, args.samples, seed=0)
        exact_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            _, drawn = sample_reference(table, budget, args.samples, seed=0, max_proposals=args.reference_cap)
            ref = f"{time.perf_counter() - t0:12.2f} {drawn:12,}"
        except BlockswapError:
            ref = f"{'> cap':>12} {args.reference_cap:>12,}"
        entries = completion_counts(table, *window(budget, TOLERANCE)).entries
        print(f"{budget:10,.0f} {count_in_budget(table, budget):14.3g} {entries:10,} {exact_s:8.3f} {ref}")


if __name__ == "__main__":
    main()
