"""The published numbers the report prints beside ours, as plain data.

Source: J. Turner, E. J. Crowley, M. O'Boyle, A. Storkey, G. Gray, "BlockSwap: Fisher-guided Block
Substitution for Network Compression on a Budget", ICLR 2020 (arXiv 1906.04113). Errors are in percent,
params/Ops/MACs are plain counts (the paper prints them in K/M/G, rounded to the digits kept here).

The `wrn28` profile's rows are readings of the deficient-efficient paper's figure (Gray, Crowley,
Storkey, arXiv 1906.00859): WRN-28-10 students with AT on CIFAR-10, one family each, at the size read off.

Lookup rules (`lookup`): a paper row answers a run group of the same profile and method when every key
the row sets agrees — `model` (case- and '_'/'-'-insensitive), `block` (a name, or a glob such as
`TensorTrain_*` for a family), and `budget` within ±2.5 % (the sampler's own tolerance; a run without a
budget is matched by its params; the nearest row wins). A key the row leaves unset matches anything.
Profiles without a table here (e.g. `default`, Fashion-MNIST) have no paper numbers.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .sampling import TOLERANCE

SOURCE = "Turner et al., BlockSwap, ICLR 2020 (arXiv 1906.04113)"


@dataclass(frozen=True)
class PaperRow:
    profile: str
    method: str
    label: str  # the row's name in the paper
    source: str  # "Table 2", ...
    error: float  # top-1 error, %
    error_std: float | None = None  # std over the paper's runs, where printed
    top5: float | None = None
    params: float | None = None
    ops: float | None = None  # CIFAR-10 tables count Ops
    macs: float | None = None  # ImageNet tables count MACs
    # Match keys: None matches anything.
    budget: float | None = None
    model: str | None = None
    block: str | None = None


K, M, G = 1e3, 1e6, 1e9


def _t2(method, label, params_k, ops_m, error, std=None, **keys) -> PaperRow:
    return PaperRow("cifar10", method, label, "Table 2", error, std, params=params_k * K, ops=ops_m * M, **keys)


def _blockswap(params_k, ops_m, error, std) -> PaperRow:
    # The paper's budgets are the params of the nets it found (the Moonshine nets' sizes).
    return _t2("blockswap", f"BlockSwap {params_k}K", params_k, ops_m, error, std, budget=params_k * K)


def _snip(params_k, error, std) -> PaperRow:
    return PaperRow("cifar10", "snip", f"SNIP {params_k}K", "Table 2", error, std, params=params_k * K,
                    budget=params_k * K)


# Table 2: CIFAR-10 error, mean ± std of 3 runs (no Ops printed for SNIP).
TABLE2 = (
    _t2("teacher", "WRN-40-2 (teacher)", 2243.5, 328.3, 3.96, 0.09, model="wrn-40-2"),
    _t2("scaled", "WRN-16-2", 691.7, 101.4, 4.78, 0.13, model="wrn-16-2"),
    _t2("scaled", "WRN-40-1", 563.9, 83.6, 4.57, 0.07, model="wrn-40-1"),
    _t2("scaled", "WRN-16-1", 175.1, 26.8, 7.32, 0.02, model="wrn-16-1"),
    _t2("mbconv", "MBConv6", 1500.9, 231.7, 5.32, 0.04),
    _t2("darts", "DARTS", 321.5, 52.8, 4.49, 0.03),
    _t2("condensenet", "CondenseNet-86", 520.2, 65.2, 4.95, 0.05),
    _snip(811.4, 4.13, 0.13), _snip(556.0, 4.32, 0.10), _snip(404.2, 4.67, 0.11), _snip(289.2, 5.04, 0.06),
    _snip(217.0, 5.53, 0.08), _snip(162.2, 6.00, 0.16),
    _blockswap(811.4, 132.5, 3.79, 0.01),
    _blockswap(556.0, 89.5, 4.17, 0.22),
    _blockswap(404.2, 92.8, 4.21, 0.13),
    _blockswap(289.2, 65.9, 4.45, 0.18),
    _blockswap(217.0, 38.8, 4.68, 0.37),
    _blockswap(162.2, 33.9, 5.17, 0.00),
)


def _t3(method, label, params_m, macs, top1, top5, **keys) -> PaperRow:
    return PaperRow("imagenet", method, label, "Table 3", top1, None, top5, params=params_m * M, macs=macs, **keys)


# Table 3: ImageNet validation error, single runs (top-1/top-5), params and MACs.
TABLE3 = (
    _t3("teacher", "ResNet-34 (teacher)", 21.8, 3.669 * G, 26.73, 8.57, model="resnet34"),
    _t3("scaled", "ResNet-18", 11.7, 1.818 * G, 29.18, 10.05, model="resnet18"),
    _t3("moonshine", "ResNet-34-G(4)", 8.1, 1.395 * G, 26.58, 8.43, model="resnet34", block="DConvA4"),
    _t3("blockswap", "BlockSwap 8.1M", 8.1, 1.242 * G, 26.24, 7.75, budget=8.1 * M),
    _t3("scaled", "ResNet-18-0.5", 3.2, 909 * M, 37.20, 15.02, model="resnet18-0.5"),
    _t3("moonshine", "ResNet-34-G(N)", 3.1, 559 * M, 30.16, 10.66, model="resnet34", block="DConv"),
    _t3("blockswap", "BlockSwap 3.1M", 3.1, 812 * M, 29.57, 10.20, budget=3.1 * M),
)



def _figure(family: str, params_m: float, error: float) -> PaperRow:
    label = f"{family} ≈{params_m}M"
    return PaperRow("wrn28", "structured", label, "deficient-efficient figure (read off)", error, params=params_m * M,
                    budget=params_m * M, block=f"{family}_*")


# Gray et al. 2019, their figure's WRN-28-10 + AT points (error %, params read off the plot); Ops not read.
WRN28_FIGURE = (
    _figure("TensorTrain", 2.4, 3.60), _figure("TensorTrain", 1.1, 4.04), _figure("TensorTrain", 0.6, 4.96),
    _figure("SepHashed", 2.4, 3.91), _figure("SepHashed", 0.57, 4.85), _figure("ACDC", 0.6, 5.22),
)

ROWS: dict[str, tuple[PaperRow, ...]] = {"cifar10": TABLE2, "imagenet": TABLE3, "wrn28": WRN28_FIGURE}

# Which count the profile's tables use as "Ops" (ImageNet: MACs).
COST = {"cifar10": "ops", "imagenet": "macs", "wrn28": "ops"}

# Table 1: Spearman ρ of each metric with final CIFAR-10 error, 100 random archs per budget,
# after k = 1/10/100 minibatches. Keyed (proxy, budget, k); "accuracy" is our `train_accuracy`.
_TABLE1_PRINTED = {
    "train_accuracy": {200_000: (-0.004, -0.022, -0.495), 400_000: (-0.068, -0.282, -0.386),
                       800_000: (0.042, -0.211, -0.257)},
    "l2_norm": {200_000: (-0.083, -0.185, -0.289), 400_000: (0.093, -0.213, -0.251),
                800_000: (0.368, 0.226, 0.140)},
    "grad_norm": {200_000: (-0.541, -0.490, 0.326), 400_000: (-0.612, -0.444, 0.402),
                  800_000: (-0.608, 0.340, 0.558)},
    "fisher": {200_000: (-0.602, -0.621, -0.439), 400_000: (-0.685, -0.667, -0.508),
               800_000: (-0.635, -0.638, -0.277)},
}
TABLE1: dict[tuple[str, int, int], float] = {
    (proxy, budget, k): rho
    for proxy, by_budget in _TABLE1_PRINTED.items()
    for budget, rhos in by_budget.items()
    for k, rho in zip((1, 10, 100), rhos)
}

# Figure 2 / §4.3 (CIFAR-10). Per budget: a single-blocktype net's error (block where the paper names
# it) and the mean of 100 random mixed nets (≈: read off the figure).
FIGURE2: dict[int, dict] = {
    200_000: {"single_blocktype_error": 5.0, "single_blocktype_block": "A4B2", "random_mean": 5.15,
              "random_mean_approx": True},
    400_000: {"single_blocktype_error": 4.45, "single_blocktype_block": None, "random_mean": None,
              "random_mean_approx": False},
}
# §4.3: error of BlockSwap's pick after n samples, at 400K params.
SAMPLES_CURVE: dict[int, dict[int, float]] = {400_000: {10: 4.85, 100: 4.54, 1000: 4.21}}
# §4.3: the search itself.
SEARCH = {"budget": 800_000, "samples": 1000, "minutes_at_most": 5, "gpu": "one Titan X Pascal"}

# Table 4: COCO-2017 val box AP, Mask R-CNN with a 3M-param backbone (%).
TABLE4_COLUMNS = ("AP", "AP50", "AP75", "APS", "APM", "APL")
TABLE4 = {
    "ResNet34-G(N)": (22.3, 38.9, 23.0, 12.9, 22.9, 30.7),
    "BlockSwap": (23.4, 40.0, 24.7, 13.6, 24.2, 31.1),
}
# The detection report's rows by profile and method (the single-type DConv backbone is a "moonshine" run).
DETECTION_ROWS: dict[str, dict[str, tuple[str, tuple[float, ...]]]] = {
    "coco": {"moonshine": ("ResNet34-G(N)", TABLE4["ResNet34-G(N)"]), "blockswap": ("BlockSwap", TABLE4["BlockSwap"])},
}


def normalise_profile(profile: str | None) -> str:
    """'CIFAR-10', 'cifar_10' → 'cifar10'; None → 'none'."""
    return "none" if profile is None else profile.lower().replace("-", "").replace("_", "")


def has_profile(profile: str | None) -> bool:
    return normalise_profile(profile) in ROWS


def _norm_model(name: str | None) -> str | None:
    return None if name is None else str(name).lower().replace("_", "-")


def near(value: float | None, target: float, tolerance: float = TOLERANCE) -> bool:  # the search's window
    return value is not None and abs(value - target) <= tolerance * target


def lookup(profile: str | None, method: str, *, budget: float | None = None, model: str | None = None,
           block: str | None = None) -> PaperRow | None:
    """The paper's row for a run group, or None (see the module docstring for the rules)."""
    best, best_gap = None, float("inf")
    for row in ROWS.get(normalise_profile(profile), ()):
        if row.method != method:
            continue
        if row.model is not None and _norm_model(model) != row.model:
            continue
        if row.block is not None and (block is None or not fnmatch.fnmatchcase(block, row.block)):
            continue
        gap = 0.0
        if row.budget is not None:
            if not near(budget, row.budget):
                continue
            gap = abs(budget - row.budget) / row.budget
        if gap < best_gap:
            best, best_gap = row, gap
    return best


def _by_budget(table: dict, budget: float | None):
    """The entry of a budget-keyed table within tolerance of `budget` (nearest), or None."""
    hits = [b for b in table if near(budget, b)]
    return table[min(hits, key=lambda b: abs(budget - b))] if hits else None


def table1_rho(profile: str | None, proxy: str, budget: float | None, k: int) -> float | None:
    """Table 1's Spearman ρ for (proxy, budget within 2.5 %, k) on CIFAR-10, or None."""
    if normalise_profile(profile) != "cifar10":
        return None
    for b in (200_000, 400_000, 800_000):
        if near(budget, b):
            return TABLE1.get((proxy, b, k))
    return None


def figure2(profile: str | None, budget: float | None) -> dict | None:
    """Figure 2's numbers for a CIFAR-10 budget, or None."""
    return _by_budget(FIGURE2, budget) if normalise_profile(profile) == "cifar10" else None


def samples_curve(profile: str | None, budget: float | None) -> dict[int, float] | None:
    """§4.3's {samples: error} for a CIFAR-10 budget, or None."""
    return _by_budget(SAMPLES_CURVE, budget) if normalise_profile(profile) == "cifar10" else None


def table1_claim(profile: str | None, proxy: str, budget: float | None, k: int) -> tuple[float, ...]:
    """What Table 1 claims of a proxy's ρ at k: the value at a CIFAR-10 profile's budget, else every budget's
    value at that k (the claim as a range, for other datasets and budgets); () where it gives none."""
    exact = table1_rho(profile, proxy, budget, k)
    if exact is not None:
        return (exact,)
    return tuple(rho for (p, _, kk), rho in TABLE1.items() if p == proxy and kk == k)
