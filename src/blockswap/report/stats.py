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


# --- intervals (95%) -----------------------------------------------------------------------
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


def _difference_draws(a, b, resamples: int, seed: int, single_std: float | None):
    """(mean(a) − mean(b), bootstrap draws of it or None): each group resampled on its own; a group of one
    run varies by the normal std `single_std` (the noise floor), or gives no draws without it."""
    a = np.asarray([v for v in a if not missing(v)], dtype=float)
    b = np.asarray([v for v in b if not missing(v)], dtype=float)
    if a.size == 0 or b.size == 0:
        return math.nan, None
    rng = np.random.default_rng(seed)

    def means(x: np.ndarray) -> np.ndarray | None:
        if x.size > 1:
            return x[rng.integers(0, x.size, (resamples, x.size))].mean(1)
        return None if missing(single_std) else x[0] + rng.normal(0.0, single_std, resamples)

    ma, mb = means(a), means(b)
    return float(a.mean() - b.mean()), None if ma is None or mb is None else ma - mb


def difference_ci(a, b, resamples: int = BOOTSTRAP, seed: int = 0,
                  single_std: float | None = None) -> tuple[float, float, float]:
    """mean(a) − mean(b) with a percentile bootstrap 95% interval, each group resampled on its own. A group
    of one run cannot show its own noise: with `single_std` (the noise floor) it varies by that normal std,
    without it the bounds are NaN."""
    d, draws = _difference_draws(a, b, resamples, seed, single_std)
    if draws is None:
        return d, math.nan, math.nan
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return d, float(lo), float(hi)


def difference_p(a, b, resamples: int = BOOTSTRAP, seed: int = 0, single_std: float | None = None) -> float:
    """Two-sided bootstrap p of mean(a) − mean(b) = 0, from the draws of `difference_ci` (at least 1/resamples)."""
    _, draws = _difference_draws(a, b, resamples, seed, single_std)
    if draws is None:
        return math.nan
    return float(min(1.0, max(2 * min((draws <= 0).mean(), (draws >= 0).mean()), 1 / resamples)))


# --- what an experiment could have seen --------------------------------------------------------------------
def reliability(errors_by_net: dict) -> dict:
    """The reliability of the per-net errors a correlation uses, from nets trained with several seeds.

    `errors_by_net`: {net: [error of each training]}. One training's error is a net's true error plus seed
    noise of variance σ²ₙ (pooled within the repeated nets); the variance of single trainings across nets is
    σ²ₜ + σ²ₙ. A net's mean over m trainings has noise σ²ₙ/m, so the errors correlated (each net's mean)
    have reliability R = σ²ₜ / (σ²ₜ + mean(σ²ₙ/m)). Under a bivariate normal model no proxy can show a
    Pearson r above √R with them, nor a Spearman ρ above (6/π)·asin(√R/2) - the attenuation ceiling.
    NaN without a repeated net or a spread of single trainings."""
    singles = [e[0] for e in errors_by_net.values() if e]
    repeated = [e for e in errors_by_net.values() if len(e) >= 2]
    out = {"nets": len(singles), "repeated": len(repeated), "noise_sd": math.nan, "reliability": math.nan,
           "ceiling_pearson": math.nan, "ceiling_spearman": math.nan}
    if not repeated or len(singles) < 3:
        return out
    noise = sum((len(e) - 1) * np.var(e, ddof=1) for e in repeated) / sum(len(e) - 1 for e in repeated)
    true = max(0.0, float(np.var(singles, ddof=1)) - noise)
    mean_noise = float(np.mean([noise / len(e) for e in errors_by_net.values() if e]))
    r = true / (true + mean_noise) if true + mean_noise > 0 else math.nan
    out.update(noise_sd=float(math.sqrt(noise)), reliability=r, ceiling_pearson=math.sqrt(r),
               ceiling_spearman=6 / math.pi * math.asin(math.sqrt(r) / 2))
    return out


# --- p-values and the family-wise error -------------------------------------------------------------------
def t_pvalue(values) -> float:
    """Two-sided p of a one-sample t-test of mean 0 (NaN with fewer than 2 values or no spread)."""
    a = np.asarray([v for v in values if not missing(v)], dtype=float)
    if a.size < 2 or a.std(ddof=1) == 0:
        return math.nan
    from scipy.stats import t

    stat = a.mean() / (a.std(ddof=1) / math.sqrt(a.size))
    return float(2 * t.sf(abs(stat), a.size - 1))


def z_pvalue(estimate: float, se: float) -> float:
    """Two-sided p of a normal estimate with standard error `se`."""
    if missing(estimate) or missing(se) or se <= 0:
        return math.nan
    from statistics import NormalDist

    return 2 * (1 - NormalDist().cdf(abs(estimate) / se))


def holm(pvalues) -> list[float]:
    """Holm's step-down adjustment: controls the family-wise error of the whole list at any level (NaN
    p-values are left out of the family and stay NaN)."""
    p = list(pvalues)
    order = sorted((i for i, v in enumerate(p) if not missing(v)), key=lambda i: p[i])
    adjusted, running = [math.nan] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


# --- how good a pick a ranking makes ----------------------------------------------------------------------
def best_of_n(scores, errors, n: int) -> float:
    """Expected error of the best-scored of n nets drawn with replacement from these (higher score = picked;
    tied scores share their picks). Exact: the net of score rank i (1 = best of m) is the pick when every
    draw ranks ≥ i and one ranks i, P = ((m−i+1)/m)ⁿ − ((m−i)/m)ⁿ."""
    s, e = np.asarray(scores, dtype=float), np.asarray(errors, dtype=float)
    m = len(s)
    order = np.argsort(-s, kind="stable")
    s, e = s[order], e[order]
    rank = np.arange(1, m + 1)
    weight = ((m - rank + 1) / m) ** n - ((m - rank) / m) ** n
    values, counts = np.unique(s, return_counts=True)
    for value in values[counts > 1]:  # a tie: the pick is any of the tied nets alike
        tied = s == value
        e = np.where(tied, e[tied].mean(), e)
    return float((weight * e).sum())


def precision_at(scores, errors, fraction: float = 0.1) -> float:
    """Of the top `fraction` of nets by score, the share that are among the top `fraction` by error."""
    s, e = np.asarray(scores, dtype=float), np.asarray(errors, dtype=float)
    top = max(1, int(round(fraction * len(s))))
    return len(set(np.argsort(-s, kind="stable")[:top]) & set(np.argsort(e, kind="stable")[:top])) / top


def spearman_p_against(rho: float, rho0: float, n: int) -> float:
    """Two-sided p of a Spearman ρ over n pairs against the value ρ0, by Fisher's z with the Fieller-Hartley-
    Pearson variance 1.06/(n − 3)."""
    if missing(rho) or n <= 3 or abs(rho) >= 1 or abs(rho0) >= 1:
        return math.nan
    return z_pvalue(math.atanh(rho) - math.atanh(rho0), math.sqrt(1.06 / (n - 3)))
