"""The proxy zoo: how well each zero-cost proxy ranks the random nets, and how good a pick it makes.

Per budget and k, for every proxy (its sign applied, so a higher score means "predicted better"): Spearman ρ
and Kendall τ with the trained *accuracy* (1 = a perfect ranker, 0 = chance) with 95% bootstrap intervals,
the seed noise's attenuation ceiling, precision@top-10%, the expected trained error of the best-scored of N
nets drawn at random (N = 10, 100; exact over the draws, bootstrap interval over the nets) against a random
pick and the oracle, and seconds per candidate. Then a combined ranker: the rank average of proxies chosen
greedily on one half of the nets (half A) and evaluated on the other (half B), beside Fisher and the best
single proxy of half A, evaluated on half B too.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.scores import PROXY_SIGNS, seconds_column
from .base import Report, register
from .correlation import (
    EXPLORATORY,
    add_scores_argument,
    ceiling_notes,
    ceiling_of,
    errors_by_net,
    load_scores,
    scores_specs,
)
from .figures import new_figure
from .runs import Run, error_by_net, group_runs, select
from .stats import BOOTSTRAP, LEVEL, best_of_n, bootstrap_correlation, correlate, holm, precision_at, reliability
from .tables import Table, fmt, fmt_budget, frame_of

REFERENCES = ("oracle (the trained error)", "random pick")  # rows that rank nothing of their own: not tested
PICKS = (10, 100)  # N of the best-of-N picks
SPLIT_SEED = 0  # the halves of the combined ranker


def pick_interval(score, error, n: int, resamples: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of best_of_n over bootstrap resamples of the nets."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(score), (resamples, len(score)))
    draws = [best_of_n(score[i], error[i], n) for i in idx]
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(lo), float(hi)


def ranking_record(name: str, score, error, ceiling: dict, missing_count: int = 0,
                   seconds: float = math.nan) -> dict:
    """Every column of one ranker: `score` higher = predicted better, `error` the trained errors (%)."""
    score, error = np.asarray(score, dtype=float), np.asarray(error, dtype=float)
    keep = np.isfinite(score)
    s, e = score[keep], error[keep]
    accuracy = 100 - e
    c = {**correlate(s, accuracy), **bootstrap_correlation(s, accuracy)}
    out = {"proxy": name, "n": c["n"], "missing": missing_count + int((~keep).sum()),
           "spearman": c["spearman"], "spearman_lo": c["spearman_lo"], "spearman_hi": c["spearman_hi"],
           "kendall": c["kendall"], "kendall_lo": c["kendall_lo"], "kendall_hi": c["kendall_hi"],
           "spearman_p": c["spearman_p"], **ceiling,
           "precision_at_10": precision_at(s, e, 0.1) if len(s) and np.ptp(s) > 0 else math.nan,
           "seconds": seconds}
    for n in PICKS:
        value = best_of_n(s, e, n) if len(s) else math.nan
        lo, hi = pick_interval(s, e, n) if len(s) > 1 else (math.nan, math.nan)
        out.update({f"best_of_{n}": value, f"best_of_{n}_lo": lo, f"best_of_{n}_hi": hi})
    return out


def signed_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1 … n of finite values (higher value, higher rank; ties averaged), NaN stays NaN."""
    from scipy.stats import rankdata

    out = np.full(len(values), np.nan)
    ok = np.isfinite(values)
    out[ok] = rankdata(values[ok])
    return out


def rank_average(columns: dict, names: list[str], rows: np.ndarray) -> np.ndarray:
    """The combined score of `rows`: the mean over `names` of each proxy's rank among those rows (a net
    missing a proxy is averaged over the others)."""
    ranks = np.stack([signed_ranks(columns[n][rows]) for n in names])
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.where(np.isfinite(ranks), ranks, np.nan), axis=0)


def spearman_on(score: np.ndarray, error: np.ndarray) -> float:
    rho = correlate(score, 100 - error)["spearman"]
    return -math.inf if math.isnan(rho) else rho


def greedy_combination(columns: dict, error: np.ndarray, rows: np.ndarray) -> list[str]:
    """Forward selection on `rows`: start from the best single proxy, add the one that raises the rank
    average's ρ most, stop when none does."""
    chosen: list[str] = []
    best = -math.inf
    while True:
        trials = {n: spearman_on(rank_average(columns, chosen + [n], rows), error[rows])
                  for n in columns if n not in chosen}
        if not trials:
            return chosen
        name, rho = max(trials.items(), key=lambda kv: kv[1])
        if rho <= best:
            return chosen
        chosen, best = chosen + [name], rho


def combined_records(columns: dict, error: np.ndarray, ceiling: dict) -> tuple[list[dict], str]:
    """The held-out rows: the combination chosen on half A, Fisher and the best single proxy of half A,
    each evaluated on half B; and a note naming the combination."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(error))
    half_a, half_b = np.sort(order[: len(error) // 2]), np.sort(order[len(error) // 2:])
    chosen = greedy_combination(columns, error, half_a)
    if not chosen:
        return [], "combined ranker: no proxy ranks half A"
    best_single = max(columns, key=lambda n: spearman_on(columns[n][half_a], error[half_a]))
    rows = [ranking_record(f"combined: {' + '.join(chosen)} (half B)", rank_average(columns, chosen, half_b),
                           error[half_b], ceiling),
            ranking_record(f"best single of half A: {best_single} (half B)", columns[best_single][half_b],
                           error[half_b], ceiling)]
    if "fisher" in columns:
        rows.append(ranking_record("fisher (half B)", columns["fisher"][half_b], error[half_b], ceiling))
    return rows, (f"combined ranker: {' + '.join(chosen)}, chosen on {len(half_a)} nets (half A, seed "
                  f"{SPLIT_SEED}), rows marked 'half B' evaluated on the other {len(half_b)}")


def zoo_records(runs: list[Run], scores) -> tuple[list[dict], list[str]]:
    error_of = error_by_net(runs)
    ceilings = {b: reliability(errors_by_net(rs)) for b, rs in group_runs(runs, lambda r: r.budget).items()}
    records, notes = [], []
    for spec in scores_specs(scores):
        df, proxies = load_scores(spec.path)
        ids = [i for i in df.index if i in error_of]
        error = np.array([error_of[i] for i in ids])
        ceiling = ceiling_of(ceilings, spec.budget)
        where = {"budget": spec.budget, "k": spec.k}
        columns = {}
        for proxy, col in proxies.items():
            columns[proxy] = PROXY_SIGNS.get(proxy, 1) * df.loc[ids, col].to_numpy(dtype=float)
            seconds = (float(np.nanmean(df.loc[ids, seconds_column(proxy)].astype(float)))
                       if seconds_column(proxy) in df else math.nan)
            records.append({**where, **ranking_record(proxy, columns[proxy], error, ceiling, seconds=seconds)})
        records.append({**where, **ranking_record("oracle (the trained error)", -error, error, ceiling)})
        records.append({**where, **ranking_record("random pick", np.zeros(len(error)), error, ceiling)})
        combined, note = combined_records(columns, error, ceiling)
        records += [{**where, **r} for r in combined]
        notes.append(f"{fmt_budget(spec.budget)}, k={spec.k}: {note}.")
    tested = [r for r in records if r["proxy"] not in REFERENCES]
    for r, p in zip(tested, holm([r["spearman_p"] for r in tested])):
        r["spearman_p_holm"] = p
    return records, notes


def _interval(r: dict, key: str, digits: int = 2) -> str:
    return f"{fmt(r[key], digits)} [{fmt(r[key + '_lo'], digits)}, {fmt(r[key + '_hi'], digits)}]"


def _table(records: list[dict], notes: list[str]) -> Table:
    header = ["Budget", "k", "Ranker", "n (missing)", "ρ [95% CI]", "τ [95% CI]", "ceiling", "P@10%",
              "best of 10 (%)", "best of 100 (%)", "s/net"]
    rows = [[fmt_budget(r["budget"]), str(r["k"]), r["proxy"], f"{r['n']} ({r['missing']})",
             _interval(r, "spearman"), _interval(r, "kendall"), fmt(r["ceiling"]), fmt(r["precision_at_10"]),
             _interval(r, "best_of_10"), _interval(r, "best_of_100"), fmt(r["seconds"], 3)] for r in records]
    caption = ("Proxy zoo: rank correlation of each proxy's score (its sign applied: higher = predicted "
               "better) with the random nets' trained accuracy, and the trained error of the best-scored of N "
               "random draws, per budget and k minibatches")
    lead = ["ρ, τ: 1 ranks perfectly, 0 is chance; an interval containing 0 cannot tell the proxy from chance. "
            "ceiling: the ρ a perfect ranker would show on average through the seed noise of one training. "
            "P@10%: the share of the proxy's top 10% that are among the 10% lowest errors.",
            EXPLORATORY.format(n=sum("spearman_p_holm" in r and not math.isnan(r["spearman_p"]) for r in records)),
            *ceiling_notes(records),
            "best of N: the expected error of the best-scored of N nets drawn with replacement (exact), 95% "
            "bootstrap interval over the nets; 'random pick' is the mean error, 'oracle' the best a ranker "
            "could do. s/net: mean seconds per candidate from the built network, its k SGD steps included.",
            "A proxy missing for a net (it failed, or its value is not finite) is counted under missing and "
            "left out of that row; the scores CSV says why."]
    return Table(header, rows, "lrlrllrrllr", caption, lead + notes)


def _figure_label(ranker: str) -> str:
    """One row per kind of ranker: the combination and the best single proxy differ between k."""
    for prefix in ("combined", "best single of half A"):
        if ranker.startswith(prefix + ":"):
            return f"{prefix} (half B)"
    return ranker


def zoo_figure(records: list[dict]):
    """ρ with its interval per proxy (one colour per k) and the best-of-10 error, for each budget."""
    budgets = sorted({r["budget"] for r in records})
    fig, axes = new_figure(2 * len(budgets), width=5.2, height=0.28 * len(records) / max(1, len(budgets)) + 2)
    for b, budget in enumerate(budgets):
        mine = [{**r, "proxy": _figure_label(r["proxy"])} for r in records if r["budget"] == budget]
        ks = sorted({r["k"] for r in mine})
        names = list(dict.fromkeys(r["proxy"] for r in mine if r["k"] == ks[0]))
        for panel, key, label in ((0, "spearman", "ρ with trained accuracy"),
                                  (1, "best_of_10", "error of the best of 10 (%)")):
            ax = axes[2 * b + panel]
            for j, k in enumerate(ks):
                got = {r["proxy"]: r for r in mine if r["k"] == k}
                y = np.arange(len(names)) + (j - (len(ks) - 1) / 2) * 0.25
                x = np.array([got[n][key] if n in got else np.nan for n in names], dtype=float)
                lo = np.array([got[n][key + "_lo"] if n in got else np.nan for n in names], dtype=float)
                hi = np.array([got[n][key + "_hi"] if n in got else np.nan for n in names], dtype=float)
                ax.errorbar(x, y, xerr=[np.nan_to_num(x - lo), np.nan_to_num(hi - x)], fmt="o", ms=3,
                            capsize=2, label=f"k={k}")
            ax.set_yticks(range(len(names)), names, fontsize="small")
            ax.invert_yaxis()
            ax.set_xlabel(label)
            if panel == 0:
                ax.axvline(0, color="black", lw=0.8)
            ax.grid(True, axis="x", alpha=0.3)
            ax.set_title(f"{fmt_budget(budget)} params")
            ax.legend(fontsize="small")
    fig.suptitle("Proxy zoo on random nets: ranking and pick quality")
    return fig


@register("proxy_zoo", help="every proxy's ranking of the random nets, its best-of-N pick, a combined ranker",
          table="proxy_zoo", figures=("proxy_zoo",), add_arguments=add_scores_argument)
def build(runs: list[Run], profile: str | None, *, scores) -> Report:
    records, notes = zoo_records(select(runs, ("random",), "proxy_zoo"), scores)
    frame = frame_of(records, ints=("budget", "k", "n", "missing"))
    return Report(frame, _table(records, notes), {"proxy_zoo": zoo_figure(records)}, notes)

