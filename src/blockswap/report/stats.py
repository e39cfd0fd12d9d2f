"""The reports' statistics: mean ± sample std, rank correlations, intervals and the p-values read off them."""

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


def _resamples(n: int, resamples: int, seed: int) -> np.ndarray:
    """The (resamples, n) indices every bootstrap over the same n units draws: the same seed gives the same
    resamples, so the correlation table's interval and the claims table's are one computation."""
    return np.random.default_rng(seed).integers(0, n, (resamples, n))


def _spearman_rows(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    rx, ry = _rank_rows(xs), _rank_rows(ys)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))


def bootstrap_correlation(x, y, resamples: int = BOOTSTRAP, seed: int = 0, kendall: bool = True) -> dict:
    """95% percentile intervals of Spearman ρ and Kendall τ-b (unless `kendall` is false: τ costs n² per
    resample), resampling the (x, y) pairs, and the two-sided p of 0 inverted from the same draws
    (`inverted_p`); NaN when fewer than 3 finite pairs. Resamples with a constant side are skipped (their
    correlation is undefined)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out = {f"{name}_{key}": math.nan for name in ("spearman", "kendall") for key in ("lo", "hi", "p")}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    idx = _resamples(len(x), resamples, seed)
    xs, ys = x[idx], y[idx]
    draws = {"spearman": _spearman_rows(xs, ys)}
    if kendall:
        with np.errstate(invalid="ignore", divide="ignore"):
            draws["kendall"] = np.concatenate([_kendall_rows(xs[i:i + 100], ys[i:i + 100])
                                               for i in range(0, resamples, 100)])
    for name, values in draws.items():
        out[f"{name}_lo"], out[f"{name}_hi"] = interval_of(values)
        out[f"{name}_p"] = inverted_p(values)
    return out


def _kendall_rows(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """τ-b of each row pair: Σ sign(dx)·sign(dy) / √(pairs untied in x · pairs untied in y)."""
    sx, sy = np.sign(xs[:, :, None] - xs[:, None, :]), np.sign(ys[:, :, None] - ys[:, None, :])
    return (sx * sy).sum((1, 2)) / np.sqrt((sx ** 2).sum((1, 2)) * (sy ** 2).sum((1, 2)))


def interval_of(draws) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap draws, taken so that it excludes a value exactly when
    `inverted_p` of that value is below 0.05: the lower end is the smallest draw with at least 2.5% of the
    draws at or below it, the upper end the largest with at least 2.5% at or above it (NaN without draws)."""
    d = np.asarray(draws, dtype=float)
    d = np.sort(d[np.isfinite(d)])
    if d.size == 0:
        return math.nan, math.nan
    k = math.ceil((1 - LEVEL) / 2 * d.size - 1e-9)  # draws in each tail that the interval must keep
    k = max(k, 1)
    return float(d[k - 1]), float(d[d.size - k])


def inverted_p(draws, null: float = 0.0) -> float:
    """Two-sided p of `null` from the same bootstrap draws as `interval_of`: twice the smaller share of draws
    on either side of it (at least 1/draws), the smallest level whose percentile interval excludes it. One
    method for both, so a row's interval and its p cannot disagree."""
    d = np.asarray(draws, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return math.nan
    return float(min(1.0, max(2 * min((d <= null).mean(), (d >= null).mean()), 1 / d.size)))


MIN_RUNS = 3  # runs a side below which a difference gets no interval and no verdict


def t_difference(a, b, paired: bool = False) -> dict:
    """mean(a) − mean(b) with a t interval and the p of the same t (so the interval excludes 0 exactly when
    p < 0.05): paired, a one-sample t over the differences a[i] − b[i]; else Welch's t with its
    Satterthwaite degrees of freedom. With fewer than MIN_RUNS values a side, or no spread at all, the
    estimate alone (interval and p NaN, `why` saying which): a percentile bootstrap of 2 or 3 runs covers
    66-80%, and identical differences are no evidence of a zero-width interval."""
    from scipy.stats import t

    a = np.asarray([v for v in a if not missing(v)], dtype=float)
    b = np.asarray([v for v in b if not missing(v)], dtype=float)
    out = {"estimate": math.nan, "ci_lo": math.nan, "ci_hi": math.nan, "p": math.nan, "df": math.nan,
           "why": ""}
    if a.size == 0 or b.size == 0:
        return out
    if paired:
        diffs = a - b
        out["estimate"] = float(diffs.mean())
        n = diffs.size
        se, df = (float(diffs.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan), n - 1
        few = n < MIN_RUNS and f"too few runs ({n} pairs)"
    else:
        out["estimate"] = float(a.mean() - b.mean())
        va = a.var(ddof=1) / a.size if a.size > 1 else math.nan
        vb = b.var(ddof=1) / b.size if b.size > 1 else math.nan
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)) if se > 0 else math.nan
        few = min(a.size, b.size) < MIN_RUNS and f"too few runs ({a.size} vs {b.size})"
    if few:
        out["why"] = few
        return out
    if not se > 0:
        out["why"] = "no spread: every run gives the same difference"
        return out
    half = float(t.ppf(0.5 + LEVEL / 2, df) * se)
    out.update(ci_lo=out["estimate"] - half, ci_hi=out["estimate"] + half, df=float(df),
               p=float(2 * t.sf(abs(out["estimate"]) / se, df)))
    return out


# --- what an experiment could have seen --------------------------------------------------------------------
def reliability(errors_by_net: dict, resamples: int = BOOTSTRAP, seed: int = 0) -> dict:
    """The reliability of the per-net errors a correlation uses, from nets trained with several seeds.

    `errors_by_net`: {net: [error of each training]}. One training's error is a net's true error plus seed
    noise of variance σ²ₙ (pooled within the repeated nets); the variance of single trainings across nets is
    σ²ₜ + σ²ₙ. A net's mean over m trainings has noise σ²ₙ/m, so the errors correlated (each net's mean)
    have reliability R = σ²ₜ / (σ²ₜ + mean(σ²ₙ/m)). Under a bivariate normal model a perfect ranker of the
    true errors shows, on average, a Pearson r of √R with them and a Spearman ρ of (6/π)·asin(√R/2): the
    attenuation ceiling. It is an expected value, not a bound (a perfect ranker exceeds it in about half of
    samples), and lower still where the errors are skewed; so it carries a 95% bootstrap interval over the
    nets (their repeats resampled with them) and the Shapiro-Wilk p of the single trainings' normality.
    NaN without a repeated net or a spread of single trainings."""
    nets = [e for e in errors_by_net.values() if e]
    out = {"nets": len(nets), "repeated": sum(len(e) >= 2 for e in nets), "noise_sd": math.nan,
           "noise_df": 0, "reliability": math.nan, "ceiling_pearson": math.nan, "ceiling_spearman": math.nan,
           "ceiling_lo": math.nan, "ceiling_hi": math.nan, "normal_p": math.nan}
    if not out["repeated"] or len(nets) < 3:
        return out
    parts = _noise_parts(nets)
    ceiling, noise, r = _ceilings(parts, np.arange(len(nets))[None, :])
    out.update(noise_sd=float(math.sqrt(noise[0])), noise_df=int(parts[2].sum()), reliability=float(r[0]),
               ceiling_pearson=float(math.sqrt(r[0])), ceiling_spearman=float(ceiling[0]),
               normal_p=shapiro_p(parts[0]))
    out["ceiling_lo"], out["ceiling_hi"] = interval_of(_ceilings(parts, _resamples(len(nets), resamples, seed))[0])
    return out


def _noise_parts(nets: list[list[float]]) -> tuple[np.ndarray, ...]:
    """Per net: its first training's error, its within-net sum of squares, its degrees of freedom (trainings
    − 1) and its number of trainings - what `_ceilings` needs of any resample of the nets."""
    first = np.array([e[0] for e in nets], dtype=float)
    ss = np.array([(len(e) - 1) * np.var(e, ddof=1) if len(e) > 1 else 0.0 for e in nets])
    df = np.array([len(e) - 1 for e in nets], dtype=float)
    return first, ss, df, np.array([len(e) for e in nets], dtype=float)


def _ceilings(parts, idx: np.ndarray):
    """(Spearman ceiling, pooled noise variance, reliability) of each row of net indices `idx` (NaN where a
    resample holds no repeated net)."""
    first, ss, df, m = (p[idx] for p in parts)
    with np.errstate(invalid="ignore", divide="ignore"):
        noise = ss.sum(1) / df.sum(1)
        true = np.maximum(0.0, first.var(1, ddof=1) - noise)
        mean_noise = noise * (1 / m).mean(1)
        r = true / (true + mean_noise)
        return 6 / np.pi * np.arcsin(np.sqrt(r) / 2), noise, r


def shapiro_p(values) -> float:
    """Shapiro-Wilk p of normality (NaN with fewer than 3 values or no spread)."""
    a = np.asarray([v for v in values if not missing(v)], dtype=float)
    if a.size < 3 or np.ptp(a) == 0:
        return math.nan
    from scipy.stats import shapiro

    return float(shapiro(a).pvalue)


def against_paper(scores, nets: list[list[float]], paper_rho: float, resamples: int = BOOTSTRAP,
                  seed: int = 0) -> dict:
    """Our Spearman ρ (scores vs each net's mean error) against the paper's, allowing for our seed noise.

    A perfect ranker shows on average only the ceiling c of our errors (`reliability`), so the paper's ρ,
    seen through our noise, is c·ρ_paper: the test is of δ = ρ − c·ρ_paper, with c's own uncertainty carried
    by resampling the nets (scores, errors and repeats together) and δ's interval and p taken from the same
    draws. The paper's ρ is taken as it was measured - its nets too were trained once, so its own noise
    attenuates it, and a noise-free paper ρ would lie further from 0: a δ shown on the weaker side holds a
    fortiori. NaN δ where no net was trained twice (the ceiling, and so the comparison, is unmeasured)."""
    x = np.asarray(scores, dtype=float)
    means = np.array([np.mean(e) for e in nets])
    idx = _resamples(len(x), resamples, seed)
    rho_draws = _spearman_rows(x[idx], means[idx])
    out = {"delta": math.nan, "delta_lo": math.nan, "delta_hi": math.nan, "p_paper": math.nan,
           "expected": math.nan}
    if not any(len(e) >= 2 for e in nets):
        return out
    parts = _noise_parts(nets)
    ceiling = float(_ceilings(parts, np.arange(len(nets))[None, :])[0][0])
    draws = rho_draws - _ceilings(parts, idx)[0] * paper_rho
    out.update(expected=ceiling * paper_rho, delta=correlate(x, means)["spearman"] - ceiling * paper_rho,
               p_paper=inverted_p(draws))
    out["delta_lo"], out["delta_hi"] = interval_of(draws)
    return out


# --- p-values and the family-wise error -------------------------------------------------------------------
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
