"""The reports' statistics: mean ± sample std, rank correlations."""

from __future__ import annotations

import math
import warnings

import numpy as np


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def mean_std(values) -> tuple[float, float]:
    """Mean and sample std (ddof=1); std NaN for a single value, both NaN for none."""
    a = np.asarray([v for v in values if v is not None], dtype=float)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def count_round(x):
    return None if missing(x) else round(x)


def correlate(x, y) -> dict:
    """Spearman ρ and Kendall τ-b of paired values, non-finite pairs dropped; NaN with a note if undefined."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out = {"n": int(keep.sum()), "spearman": math.nan, "spearman_p": math.nan, "kendall": math.nan,
           "kendall_p": math.nan, "note": ""}
    if out["n"] < 3:
        out["note"] = f"only {out['n']} paired values (need ≥ 3): correlation undefined"
        return out
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        out["note"] = "constant values: correlation undefined"
        return out
    from scipy import stats  # scipy is slow to import; only the correlation report needs it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about small-sample p-values; the statistics hold
        s, k = stats.spearmanr(x, y), stats.kendalltau(x, y)
    out.update(spearman=float(s.statistic), spearman_p=float(s.pvalue), kendall=float(k.statistic),
               kendall_p=float(k.pvalue))
    return out


# --- intervals and verdicts (95%) -----------------------------------------------------------------------
LEVEL = 0.95
BOOTSTRAP = 2000  # resamples of every bootstrap interval; seeded, so a table is reproducible


def _rank_rows(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=1)  # average ranks for ties, row by row


def bootstrap_correlation(x, y, resamples: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Percentile 95% intervals of Spearman ρ and Kendall τ-b, resampling the (x, y) pairs; NaN when fewer
    than 3 finite pairs. Resamples with a constant side are skipped (their correlation is undefined)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out = {"spearman_lo": math.nan, "spearman_hi": math.nan, "kendall_lo": math.nan, "kendall_hi": math.nan}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    idx = np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))
    xs, ys = x[idx], y[idx]
    rx, ry = _rank_rows(xs), _rank_rows(ys)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(1) / np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
        tau = np.concatenate([_kendall_rows(xs[i:i + 100], ys[i:i + 100]) for i in range(0, resamples, 100)])
    tail = 100 * (1 - LEVEL) / 2
    for name, values in (("spearman", rho), ("kendall", tau)):
        values = values[np.isfinite(values)]
        if values.size:
            out[f"{name}_lo"], out[f"{name}_hi"] = (float(v) for v in np.percentile(values, [tail, 100 - tail]))
    return out


def _kendall_rows(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """τ-b of each row pair: Σ sign(dx)·sign(dy) / √(pairs untied in x · pairs untied in y)."""
    sx, sy = np.sign(xs[:, :, None] - xs[:, None, :]), np.sign(ys[:, :, None] - ys[:, None, :])
    return (sx * sy).sum((1, 2)) / np.sqrt((sx ** 2).sum((1, 2)) * (sy ** 2).sum((1, 2)))


def mean_ci(values) -> tuple[float, float, float]:
    """Mean and its t-based 95% interval (NaN bounds with fewer than 2 values)."""
    a = np.asarray([v for v in values if not missing(v)], dtype=float)
    if a.size == 0:
        return math.nan, math.nan, math.nan
    if a.size < 2:
        return float(a.mean()), math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + LEVEL / 2, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return float(a.mean()), float(a.mean()) - half, float(a.mean()) + half


def difference_ci(a, b, resamples: int = BOOTSTRAP, seed: int = 0,
                  single_std: float | None = None) -> tuple[float, float, float]:
    """mean(a) − mean(b) with a percentile bootstrap 95% interval, each group resampled on its own. A group
    of one run cannot show its own noise: with `single_std` (the noise floor) it varies by that normal std,
    without it the bounds are NaN."""
    a = np.asarray([v for v in a if not missing(v)], dtype=float)
    b = np.asarray([v for v in b if not missing(v)], dtype=float)
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan, math.nan
    d = float(a.mean() - b.mean())
    rng = np.random.default_rng(seed)

    def means(x: np.ndarray) -> np.ndarray | None:
        if x.size > 1:
            return x[rng.integers(0, x.size, (resamples, x.size))].mean(1)
        return None if missing(single_std) else x[0] + rng.normal(0.0, single_std, resamples)

    ma, mb = means(a), means(b)
    if ma is None or mb is None:
        return d, math.nan, math.nan
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(ma - mb, [tail, 100 - tail])
    return d, float(lo), float(hi)


def verdict(lo: float, hi: float, claimed: int = -1) -> str:
    """A claim that a quantity is < 0 (claimed=-1) or > 0 (+1), judged by its 95% interval."""
    if missing(lo) or missing(hi):
        return "inconclusive (too few runs)"
    if claimed * hi > 0 and claimed * lo > 0:
        return "supported"
    if claimed * hi < 0 and claimed * lo < 0:
        return "not supported (the reverse)"
    return "inconclusive"
