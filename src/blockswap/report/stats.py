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
