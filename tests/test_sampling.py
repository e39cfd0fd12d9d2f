"""Both samplers draw uniformly from the in-budget set; checked against exact enumeration."""

import itertools
import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from blockswap import counting
from blockswap.errors import BlockswapError
from blockswap.genotype import Genotype
from blockswap.sampling import CostTable, count_in_budget, sample, sample_exact, sample_reference

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


def test_ops_budget():
    genotypes = sample("wrn-40-2", 100e6, 200, seed=0, metric="ops")
    assert all(97.5e6 < counting.analytic(g).ops < 102.5e6 for g in genotypes)


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
