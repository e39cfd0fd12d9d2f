"""Budget-constrained samplers of student genotypes (BlockSwap §4, step 2).

Both samplers draw from the same distribution: every assignment of a valid type to each block is
equally likely among those whose cost lies strictly within ±tolerance of the budget.
- `reference`: the paper's rejection sampler (uniform type per block, accept if in budget), vectorised;
  a cap on proposals keeps it from looping forever at budgets where acceptance is ~1e-9.
- `exact`: counts, by dynamic programming over the blocks, how many in-budget completions each
  partial assignment has, then draws each block's type with those counts as weights. No rejection,
  and the table only spans the partial costs that can still end in budget (`CompletionTable`).
Costs come from the analytic counts (`counting.slot_costs`); no network is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import numpy as np

from .arch import get_architecture
from .counting import COUNTED_METRICS, slot_costs
from .errors import BlockswapError
from .genotype import Genotype

# The exact sampler holds one float64 vector per block over the accumulated costs (in units of the costs'
# gcd) that can still end in budget (`CompletionTable`); beyond this many entries in all it refuses rather
# than eat the machine's memory (20M entries = 160 MB).
# BlockSwap keeps a candidate whose count lies strictly within ±2.5% of the budget (BlockSwap §4).
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
    def build(cls, model: str, candidates=None, metric: str = "params", in_channels: int | None = None,
              num_classes: int | None = None, image_size: int | None = None) -> CostTable:
        """The table over `candidates` (default: the architecture's own set, `Architecture.candidates`); a
        named set gives the types the model's blocks take, a type named alone that they cannot take is refused."""
        arch = get_architecture(model)
        in_channels = in_channels or arch.default_in_channels
        num_classes = num_classes or arch.default_num_classes
        image_size = image_size or arch.default_image_size
        if metric not in COUNTED_METRICS:
            raise BlockswapError(f"budget metric must be one of {', '.join(COUNTED_METRICS)}, got {metric!r}")
        fixed, table = slot_costs(model, arch.candidate_types(candidates), image_size, in_channels, num_classes, metric)
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


@dataclass(frozen=True)
class CompletionTable:
    """The exact sampler's table, in units of the costs' gcd: `counts[k][i]` is the number of ways blocks
    k.. can finish in budget from an accumulated cost of `start[k] + i` (so `counts[len(costs)]` holds 1 for
    every accumulated cost in the window).

    Only the accumulated costs that blocks 0..k-1 can reach *and* from which blocks k.. can still end in the
    window are kept: row k spans [max(min prefix, window low - max suffix), min(max prefix, window high -
    min suffix)]. A row is therefore never wider than the window plus the smaller of the prefix's and the
    suffix's spread, nor than the distance from the window to the far end of the feasible range, so budgets
    near either end - where the in-budget set is small - need small tables however large the budget.
    """

    costs: list[np.ndarray]  # per block, the valid types' costs in units
    start: list[int]  # per row, the accumulated cost (in units) of its first entry
    counts: list[np.ndarray]  # float64: the counts exceed 2**63 at mid budgets

    @property
    def entries(self) -> int:
        return sum(len(c) for c in self.counts)

    @property
    def total(self) -> float:
        """Number of in-budget genotypes."""
        return float(self.counts[0][0]) if len(self.counts[0]) else 0.0


def completion_counts(table: CostTable, lo: float, hi: float) -> CompletionTable:
    """The completion counts of `CompletionTable`, by dynamic programming from the last block back."""
    unit = reduce(math.gcd, [int(c) for costs in table.costs for c in costs], 0) or 1
    scaled = [c // unit for c in table.costs]
    blocks = len(scaled)
    # Totals are fixed + unit·a; strictly inside (lo, hi) ⇔ a_lo ≤ a ≤ a_hi.
    a_lo = math.floor((lo - table.fixed) / unit) + 1
    a_hi = math.ceil((hi - table.fixed) / unit) - 1
    low = np.concatenate([[0], np.cumsum([int(c.min()) for c in scaled])]).tolist()
    high = np.concatenate([[0], np.cumsum([int(c.max()) for c in scaled])]).tolist()
    # Row k: reachable by blocks 0..k-1 (low[k]..high[k]) and able to end in [a_lo, a_hi] with blocks k..
    # (whose sum lies in low[-1] - low[k] .. high[-1] - high[k]).
    start = [max(low[k], a_lo - (high[-1] - high[k])) for k in range(blocks + 1)]
    stop = [min(high[k], a_hi - (low[-1] - low[k])) for k in range(blocks + 1)]
    widths = [max(0, b - a + 1) for a, b in zip(start, stop)]
    if sum(widths) > MAX_DP_ENTRIES:
        raise BlockswapError(
            f"the exact sampler would need {sum(widths):,} table entries for this budget; "
            "use the reference sampler (--sampler reference)")
    counts = [np.zeros(w) for w in widths]
    counts[-1][:] = 1.0
    for k in range(blocks - 1, -1, -1):
        cur, nxt, s0, s1 = counts[k], counts[k + 1], start[k], start[k + 1]
        for c in scaled[k].tolist():
            # cur[a - s0] += nxt[a + c - s1] for the a where both indices fall inside their rows.
            a0, a1 = max(0, s1 - c - s0), min(len(cur), len(nxt) + s1 - c - s0)
            if a0 < a1:
                cur[a0:a1] += nxt[a0 + s0 + c - s1: a1 + s0 + c - s1]
    return CompletionTable(scaled, start, counts)


def count_in_budget(table: CostTable, budget: float, tolerance: float = TOLERANCE) -> float:
    """How many genotypes lie in the budget window (float: it can exceed 2**63)."""
    _check_feasible(table, budget, tolerance)
    return completion_counts(table, *window(budget, tolerance)).total


def sample_exact(table: CostTable, budget: float, n: int, seed: int = 0,
                 tolerance: float = TOLERANCE) -> list[Genotype]:
    """Exactly uniform over the in-budget genotypes, without rejection."""
    _check_feasible(table, budget, tolerance, n)
    dp = completion_counts(table, *window(budget, tolerance))
    if dp.total == 0:
        raise BlockswapError(f"no {table.model} student lies strictly within ±{tolerance:.1%} of {budget:,.0f} "
                             f"{table.metric}; widen the tolerance or move the budget")
    rng = np.random.default_rng(seed)
    acc = np.zeros(n, dtype=np.int64)  # accumulated cost in units; always inside row k's span
    choices = np.zeros((n, len(dp.costs)), dtype=np.int64)
    for k, costs in enumerate(dp.costs):
        nxt = np.append(dp.counts[k + 1], 0.0)  # the extra last entry stands for "outside the row": weight 0
        idx = acc[:, None] + costs[None, :] - dp.start[k + 1]
        idx[(idx < 0) | (idx >= len(nxt) - 1)] = len(nxt) - 1
        cdf = np.cumsum(nxt[idx], axis=1)
        u = rng.random(n) * cdf[:, -1]
        pick = (cdf <= u[:, None]).sum(axis=1)
        choices[:, k] = pick
        acc += costs[pick]
    return [table.genotype(c) for c in choices]


SAMPLERS = ("exact", "reference")


def sample(model: str, budget: float, n: int, seed: int = 0, tolerance: float = TOLERANCE, metric: str = "params",
           candidates=None, sampler: str = "exact", **shape) -> list[Genotype]:
    return sample_table(CostTable.build(model, candidates, metric, **shape), budget, n, seed, tolerance, sampler)


def sample_table(table: CostTable, budget: float, n: int, seed: int = 0, tolerance: float = TOLERANCE,
                 sampler: str = "exact") -> list[Genotype]:
    """`n` genotypes within ±tolerance of `budget` in the table's metric, by the named sampler."""
    if sampler == "exact":
        return sample_exact(table, budget, n, seed, tolerance)
    if sampler == "reference":
        return sample_reference(table, budget, n, seed, tolerance)[0]
    raise BlockswapError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
