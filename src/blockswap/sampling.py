"""Budget-constrained samplers of student genotypes (BlockSwap §4, step 2).

Both samplers draw from the same distribution: every assignment of a valid type to each block is
equally likely among those whose cost lies strictly within ±tolerance of the budget.
- `reference`: the paper's rejection sampler (uniform type per block, accept if in budget), vectorised;
  a cap on proposals keeps it from looping forever at budgets where acceptance is ~1e-9.
- `exact`: counts, by dynamic programming over the blocks, how many in-budget completions each
  partial assignment has, then draws each block's type with those counts as weights. No rejection,
  so every feasible budget costs the same.
Costs come from the analytic counts (`counting.slot_costs`); no network is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import numpy as np

from .arch import get_architecture
from .blocktypes import candidate_set
from .counting import slot_costs
from .errors import BlockswapError
from .genotype import Genotype

# The exact sampler holds one float64 vector per block over the reachable cost range (in units of
# the costs' gcd); beyond this many entries it refuses rather than eat the machine's memory.
# BlockSwap keeps a candidate whose count lies strictly within ±2.5% of the budget (spec §1).
TOLERANCE = 0.025
MAX_DP_ENTRIES = 20_000_000


@dataclass(frozen=True)
class CostTable:
    """Per-block costs of the candidate types valid there, plus the fixed (stem/head) cost."""

    model: str
    in_channels: int
    num_classes: int
    image_size: int
    metric: str
    fixed: int
    types: list[list[str]]  # valid type names per block
    costs: list[np.ndarray]  # int64 cost per valid type per block

    @classmethod
    def build(cls, model: str, candidates="blockswap", metric: str = "params", in_channels: int | None = None,
              num_classes: int | None = None, image_size: int | None = None) -> CostTable:
        arch = get_architecture(model)
        in_channels = in_channels or arch.default_in_channels
        num_classes = num_classes or arch.default_num_classes
        image_size = image_size or arch.default_image_size
        if metric not in ("params", "ops"):
            raise BlockswapError(f"budget metric must be 'params' or 'ops', got {metric!r}")
        fixed, table = slot_costs(model, candidate_set(candidates), image_size, in_channels, num_classes, metric)
        for i, row in enumerate(table):
            if not row:
                raise BlockswapError(f"no candidate type is valid at block {i} of {model}; widen the candidate set")
        return cls(model, in_channels, num_classes, image_size, metric, fixed,
                   [list(r) for r in table], [np.array(list(r.values()), dtype=np.int64) for r in table])

    @property
    def feasible_range(self) -> tuple[int, int]:
        return (self.fixed + sum(int(c.min()) for c in self.costs),
                self.fixed + sum(int(c.max()) for c in self.costs))

    def genotype(self, choice: np.ndarray) -> Genotype:
        names = tuple(self.types[i][int(j)] for i, j in enumerate(choice))
        return Genotype(self.model, names, in_channels=self.in_channels, num_classes=self.num_classes,
                        image_size=self.image_size)

    def total(self, choices: np.ndarray) -> np.ndarray:
        """Costs of a batch of choices (rows of per-block type indices)."""
        return self.fixed + sum(self.costs[i][choices[:, i]] for i in range(len(self.costs)))


def window(budget: float, tolerance: float) -> tuple[float, float]:
    return budget * (1 - tolerance), budget * (1 + tolerance)


def _check_feasible(table: CostTable, budget: float, tolerance: float, n: int = 1) -> None:
    if n < 1:
        raise BlockswapError(f"the number of samples must be ≥ 1, got {n}")
    if budget <= 0 or not (0 < tolerance < 1):
        raise BlockswapError(f"budget must be > 0 and tolerance in (0, 1); got {budget} and {tolerance}")
    lo, hi = window(budget, tolerance)
    fmin, fmax = table.feasible_range
    if hi <= fmin or lo >= fmax:
        raise BlockswapError(
            f"budget {budget:,.0f} {table.metric} (±{tolerance:.1%}) is infeasible for {table.model} with this "
            f"candidate set: students range from {fmin:,} to {fmax:,} {table.metric}")


def sample_reference(table: CostTable, budget: float, n: int, seed: int = 0, tolerance: float = TOLERANCE,
                     max_proposals: int = 50_000_000, chunk: int = 65536) -> tuple[list[Genotype], int]:
    """The paper's rejection sampler. Returns (genotypes, proposals drawn)."""
    _check_feasible(table, budget, tolerance, n)
    lo, hi = window(budget, tolerance)
    rng = np.random.default_rng(seed)
    sizes = np.array([len(c) for c in table.costs])
    accepted, drawn = [], 0
    while len(accepted) < n:
        if drawn >= max_proposals:
            raise BlockswapError(
                f"only {len(accepted)} of {n} candidates accepted after {drawn:,} proposals at budget "
                f"{budget:,.0f} (acceptance too low); use the exact sampler (--sampler exact)")
        k = min(chunk, max_proposals - drawn)
        choices = (rng.random((k, len(sizes))) * sizes).astype(np.int64)
        totals = table.total(choices)
        ok = choices[(totals > lo) & (totals < hi)]
        accepted.extend(ok[: n - len(accepted)])
        drawn += k
    return [table.genotype(c) for c in accepted], drawn


def _completion_counts(table: CostTable, lo: float, hi: float):
    """W[k][a] = number of ways blocks k.. can finish from accumulated cost a (in gcd units) in budget."""
    unit = reduce(math.gcd, [int(c) for costs in table.costs for c in costs], 0) or 1
    scaled = [c // unit for c in table.costs]
    # Totals are fixed + unit·a; strictly inside (lo, hi) ⇔ a_lo ≤ a ≤ a_hi.
    a_lo = math.floor((lo - table.fixed) / unit) + 1
    a_hi = math.ceil((hi - table.fixed) / unit) - 1
    size = a_hi + 1
    if size * (len(scaled) + 1) > MAX_DP_ENTRIES:
        raise BlockswapError(
            f"the exact sampler would need {size * (len(scaled) + 1):,} table entries for this budget; "
            "use the reference sampler (--sampler reference)")
    counts = [None] * (len(scaled) + 1)
    last = np.zeros(size)
    last[max(a_lo, 0):] = 1.0
    counts[-1] = last
    for k in range(len(scaled) - 1, -1, -1):
        nxt, cur = counts[k + 1], np.zeros(size)
        for c in scaled[k]:
            if c < size:
                cur[: size - c] += nxt[c:]
        counts[k] = cur
    return scaled, counts


def count_in_budget(table: CostTable, budget: float, tolerance: float = TOLERANCE) -> float:
    """How many genotypes lie in the budget window (float: it can exceed 2**63)."""
    _check_feasible(table, budget, tolerance)
    _, counts = _completion_counts(table, *window(budget, tolerance))
    return float(counts[0][0])


def sample_exact(table: CostTable, budget: float, n: int, seed: int = 0,
                 tolerance: float = TOLERANCE) -> list[Genotype]:
    """Exactly uniform over the in-budget genotypes, without rejection."""
    _check_feasible(table, budget, tolerance, n)
    scaled, counts = _completion_counts(table, *window(budget, tolerance))
    if counts[0][0] == 0:
        raise BlockswapError(f"no {table.model} student lies strictly within ±{tolerance:.1%} of {budget:,.0f} "
                             f"{table.metric}; widen the tolerance or move the budget")
    rng = np.random.default_rng(seed)
    size = len(counts[0])
    acc = np.zeros(n, dtype=np.int64)
    choices = np.zeros((n, len(scaled)), dtype=np.int64)
    for k, costs in enumerate(scaled):
        nxt = np.append(counts[k + 1], 0.0)  # index `size` = out of range = weight 0
        idx = np.minimum(acc[:, None] + costs[None, :], size)
        weights = nxt[idx]
        cdf = np.cumsum(weights, axis=1)
        u = rng.random(n) * cdf[:, -1]
        pick = (cdf <= u[:, None]).sum(axis=1)
        choices[:, k] = pick
        acc += costs[pick]
    return [table.genotype(c) for c in choices]


SAMPLERS = ("exact", "reference")


def sample(model: str, budget: float, n: int, seed: int = 0, tolerance: float = TOLERANCE, metric: str = "params",
           candidates="blockswap", sampler: str = "exact", **shape) -> list[Genotype]:
    table = CostTable.build(model, candidates, metric, **shape)
    if sampler == "exact":
        return sample_exact(table, budget, n, seed, tolerance)
    if sampler == "reference":
        return sample_reference(table, budget, n, seed, tolerance)[0]
    raise BlockswapError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
