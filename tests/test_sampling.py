"""Both samplers draw uniformly from the in-budget set; checked against exact enumeration."""

import itertools
import json
import math
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from blockswap.core import counting
from blockswap.core.errors import BlockswapError
from blockswap.core.genotype import Genotype
from blockswap.core.sampling import (
    MAX_DP_ENTRIES,
    CostTable,
    completion_counts,
    count_in_budget,
    sample,
    sample_exact,
    sample_reference,
    window,
)

SMALL_TYPES = "Conv,DConv,ConvB2,G2B2,DConvA2"


def _enumerate(table: CostTable, budget: float, tolerance: float) -> list[tuple[str, ...]]:
    lo, hi = budget * (1 - tolerance), budget * (1 + tolerance)
    inside = []
    for combo in itertools.product(*table.types):
        g = Genotype(table.model, combo)
        if lo < counting.analytic(g).params < hi:
            inside.append(combo)
    return inside


def test_exact_and_reference_match_enumeration_on_wrn_10_1():
    table = CostTable.build("wrn-10-1", SMALL_TYPES)
    budget, tol = 50_000, 0.2
    inside = _enumerate(table, budget, tol)
    assert 5 < len(inside) < 5 ** 3
    assert count_in_budget(table, budget, tol) == len(inside)
    n = 200 * len(inside)
    for draws in (sample_exact(table, budget, n, seed=1, tolerance=tol),
                  sample_reference(table, budget, n, seed=1, tolerance=tol)[0]):
        freq = Counter(g.blocks for g in draws)
        assert set(freq) <= set(inside)
        observed = [freq.get(c, 0) for c in inside]
        # Uniform over the in-budget set: a chi-square goodness-of-fit test must not reject.
        assert stats.chisquare(observed).pvalue > 1e-3


def _all_choices(table: CostTable) -> np.ndarray:
    return np.array(list(itertools.product(*[range(len(t)) for t in table.types])), dtype=np.int64)


@pytest.mark.parametrize("budget", [38_000, 60_000, 120_000, 170_000])  # near the cheap end, mid, near the top
def test_trimmed_table_holds_the_exact_completion_counts(budget):
    """Every kept entry of the exact sampler's table equals the brute-force number of in-budget completions,
    and every reachable partial cost that can still end in budget has an entry."""
    table = CostTable.build("wrn-16-1", SMALL_TYPES)
    choices = _all_choices(table)  # 5^6 = 15,625 genotypes
    lo, hi = window(budget, 0.025)
    totals = table.total(choices)
    inside = (totals > lo) & (totals < hi)
    dp = completion_counts(table, lo, hi)
    assert dp.total == inside.sum() > 0
    unit = int(np.gcd.reduce(np.concatenate(table.costs)))
    for k in range(len(table.costs) + 1):
        prefix = sum((table.costs[i][choices[:, i]] for i in range(k)), np.zeros(len(choices), dtype=np.int64))
        # Every prefix comes with every suffix, so the in-budget completions of a prefix cost a are the in-budget
        # genotypes with that prefix cost divided by the number of prefixes with it.
        suffixes = math.prod(len(t) for t in table.types[k:])
        values, seen = np.unique(prefix, return_counts=True)
        in_budget = np.bincount(np.searchsorted(values, prefix[inside]), minlength=len(values))
        completions = in_budget * suffixes / seen
        row, start = dp.counts[k], dp.start[k]
        for a, want in zip(values // unit, completions):
            if start <= a < start + len(row):
                assert row[a - start] == want, (k, a)
            else:
                assert want == 0, (k, a)  # left out of the table: no in-budget completion from there
    # Bounded by the window, not the budget: no row is wider than the window plus the smaller of the prefix's
    # and the suffix's spread, and the table is a fraction of one over every cost up to the budget.
    spread = [int(c.max() - c.min()) // unit for c in table.costs]
    band = (hi - lo) / unit + 1
    for k, row in enumerate(dp.counts):
        assert len(row) <= band + min(sum(spread[:k]), sum(spread[k:]))
    assert dp.entries < (hi - table.fixed) / unit * (len(table.costs) + 1) / 3


def test_exact_matches_reference_and_enumeration_on_six_blocks():
    """Chi-square: exact and rejection samples are each uniform over the enumerated in-budget set (wrn-16-1,
    near the top of its range, where the trimmed rows are narrow)."""
    table = CostTable.build("wrn-16-1", SMALL_TYPES)
    budget = 160_000
    choices = _all_choices(table)
    totals = table.total(choices)
    lo, hi = window(budget, 0.025)
    inside = [tuple(table.types[i][j] for i, j in enumerate(c)) for c in choices[(totals > lo) & (totals < hi)]]
    assert 20 < len(inside) < 400 and count_in_budget(table, budget) == len(inside)
    n = 100 * len(inside)
    exact = Counter(g.blocks for g in sample_exact(table, budget, n, seed=2))
    reference = Counter(g.blocks for g in sample_reference(table, budget, n, seed=2)[0])
    for freq in (exact, reference):
        assert set(freq) <= set(inside)
        assert stats.chisquare([freq.get(c, 0) for c in inside]).pvalue > 1e-3
    both = np.array([[exact.get(c, 0) for c in inside], [reference.get(c, 0) for c in inside]]) + 1
    assert stats.chi2_contingency(both).pvalue > 1e-3


def test_moonshine_budget_with_the_exact_sampler():
    """WRN-40-2 with Moonshine's types at 2.1M params: the table spans only the partial costs that can still
    end in (2.0475M, 2.1525M) - 1.29M entries, where a table over every cost up to the budget needed 20.4M."""
    table = CostTable.build("wrn-40-2", "moonshine")
    dp = completion_counts(table, *window(2_100_000, 0.025))
    assert dp.entries < 1_500_000 and dp.total > 1e12
    genotypes = sample("wrn-40-2", 2_100_000, 100, seed=0, candidates="moonshine")
    params = [counting.analytic(g).params for g in genotypes]
    assert all(2_047_500 < p < 2_152_500 for p in params) and len(set(g.blocks for g in genotypes)) == 100
    # Over the whole feasible range the table stays well under the cap (at most ~3.1M entries, at mid budgets).
    low, high = table.feasible_range
    sizes = [completion_counts(table, *window(b, 0.025)).entries for b in np.linspace(low * 1.03, high, 25)]
    assert max(sizes) < 4_000_000 < MAX_DP_ENTRIES


def test_exact_and_reference_agree_on_moonshine():
    """Per-block type frequencies of the exact and rejection samplers agree (wrn-16-1 with Moonshine's 27-31
    types per block, at a budget where rejection accepts ~3%)."""
    table = CostTable.build("wrn-16-1", "moonshine")
    budget = 36_000
    exact = sample_exact(table, budget, 3000, seed=0)
    reference, _ = sample_reference(table, budget, 3000, seed=0)
    for block in range(len(table.types)):
        names = table.types[block]
        a, b = Counter(g.blocks[block] for g in exact), Counter(g.blocks[block] for g in reference)
        contingency = np.array([[a.get(t, 0) for t in names], [b.get(t, 0) for t in names]]) + 1
        assert stats.chi2_contingency(contingency).pvalue > 1e-4, block


def test_per_block_frequencies_agree_at_mid_wrn_40_2_budget():
    table = CostTable.build("wrn-40-2")
    exact = sample_exact(table, 400_000, 4000, seed=0)
    reference, proposals = sample_reference(table, 400_000, 4000, seed=0)
    assert proposals > 4000
    for block in range(18):
        names = table.types[block]
        a = Counter(g.blocks[block] for g in exact)
        b = Counter(g.blocks[block] for g in reference)
        contingency = np.array([[a.get(t, 0) for t in names], [b.get(t, 0) for t in names]]) + 1
        assert stats.chi2_contingency(contingency).pvalue > 1e-4, block


@pytest.mark.parametrize("budget", [90_000, 400_000, 1_600_000, 2_200_000])
def test_every_sample_is_strictly_inside_the_window(budget):
    genotypes = sample("wrn-40-2", budget, 300, seed=3)
    params = [counting.analytic(g).params for g in genotypes]
    assert all(budget * 0.975 < p < budget * 1.025 for p in params)
    assert len(set(g.blocks for g in genotypes)) > 1 or budget > 2_000_000


def test_seeded_and_reproducible():
    a = sample("wrn-40-2", 300_000, 50, seed=7)
    b = sample("wrn-40-2", 300_000, 50, seed=7)
    c = sample("wrn-40-2", 300_000, 50, seed=8)
    assert a == b and a != c


@pytest.mark.parametrize("metric,budget", [("ops", 100e6), ("macs", 90e6)])
def test_ops_and_macs_budgets(metric, budget):
    genotypes = sample("wrn-40-2", budget, 200, seed=0, metric=metric)
    assert all(0.975 * budget < getattr(counting.analytic(g), metric) < 1.025 * budget for g in genotypes)
    # the table's sum is the analytic count of the genotype, net by net
    table = CostTable.build("wrn-40-2", metric=metric)
    choices = np.array([[table.types[i].index(b) for i, b in enumerate(g.blocks)] for g in genotypes])
    assert table.total(choices).tolist() == [getattr(counting.analytic(g), metric) for g in genotypes]


def test_invalid_types_are_never_sampled_at_narrow_widths():
    # wrn-16-1: the first group has m = 8 in a ×2 bottleneck, so A16B2 cannot be used there.
    table = CostTable.build("wrn-16-1")
    assert "A16B2" not in table.types[0] and "A16B2" in table.types[-1]
    for g in sample("wrn-16-1", 60_000, 300, seed=0):
        assert g.blocks[0] != "A16B2"


def test_infeasible_budget_states_the_range():
    with pytest.raises(BlockswapError, match="students range from 84,410 to 2,243,546 params"):
        sample("wrn-40-2", 3_000_000, 10)
    with pytest.raises(BlockswapError, match="acceptance too low"):
        sample_reference(CostTable.build("wrn-40-2"), 2_200_000, 10, max_proposals=100_000)


def test_paper_candidate_set_includes_dconvb2():
    genotypes = sample("wrn-40-2", 400_000, 2000, seed=0, candidates="paper")
    used = {b for g in genotypes for b in g.blocks}
    assert "DConvB2" in used and "G2B4" not in used


def test_cli_sample_writes_jsonl(tmp_path):
    out = tmp_path / "c.jsonl"
    subprocess.run([sys.executable, "-m", "blockswap", "sample", "--model", "wrn-16-1", "--budget", "60000",
                    "--samples", "5", "--seed", "0", "--in-channels", "1", "--image-size", "28", "-o", str(out)],
                   check=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5
    for row in rows:
        g = Genotype.from_dict(row)
        assert row["params"] == counting.analytic(g).params and 58_500 < row["params"] < 61_500
        assert (g.in_channels, g.image_size) == (1, 28)
    bad = subprocess.run([sys.executable, "-m", "blockswap", "sample", "--model", "wrn-16-1", "--budget", "1e9",
                          "--samples", "5", "-o", str(tmp_path / "bad.jsonl")], capture_output=True, text=True)
    assert bad.returncode == 2 and "infeasible" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad.jsonl").exists()
