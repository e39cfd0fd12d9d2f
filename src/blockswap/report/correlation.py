"""Table 1: Spearman ρ and Kendall τ of each proxy's raw value with the trained error; a scatter figure."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core import paper
from ..core.errors import BlockswapError
from ..core.scores import PROXY_SIGNS, read_scores
from .base import Report, register
from .figures import new_figure
from .runs import Run, error_by_net, group_runs, parse_count, select
from .stats import bootstrap_correlation, correlate, holm, missing, reliability
from .tables import Table, fmt, fmt_budget, frame_of

TABLE1_ORDER = ("train_accuracy", "l2_norm", "grad_norm", "fisher")
NORMAL_ALPHA = 0.05  # a Shapiro-Wilk p below this: the ceiling's normal model is flagged
EXPLORATORY = ("Exploratory: {n} correlations, each interval at 95% on its own; the CSV's spearman_p_holm "
               "adjusts ρ's p over the whole table (Holm) for a claim about any one of them.")


@dataclass(frozen=True)
class ScoresSpec:
    budget: int
    k: int
    path: str


def parse_scores_spec(text: str) -> ScoresSpec:
    """'budget=200000,k=1:path.csv' (keys in any order, budget may read 200K) → ScoresSpec."""
    spec, sep, path = text.partition(":")
    if not sep or not path:
        raise BlockswapError(f"--scores {text!r}: expected budget=B,k=K:PATH, e.g. budget=200000,k=1:scores.csv")
    keys = {}
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        keys[key.strip().lower()] = value.strip()
        if not eq:
            raise BlockswapError(f"--scores {text!r}: {part!r} is not KEY=VALUE")
    if set(keys) != {"budget", "k"}:
        raise BlockswapError(f"--scores {text!r}: give exactly budget= and k= before the ':'")
    try:
        return ScoresSpec(parse_count(keys["budget"]), parse_count(keys["k"]), path)
    except ValueError:
        raise BlockswapError(f"--scores {text!r}: budget and k must be positive numbers") from None


def load_scores(path: str):
    """A `blockswap score` CSV → (DataFrame indexed by id, {proxy: column})."""
    import pandas as pd

    rows, proxies = read_scores(path)
    return pd.DataFrame(rows).drop_duplicates("id").set_index("id"), proxies


def add_scores_argument(parser) -> None:
    """--scores: the random nets' proxy CSVs (the correlation and proxy_zoo reports)."""
    parser.add_argument("--scores", nargs="+", action="extend", required=True, metavar="budget=B,k=K:PATH",
                        help="a `blockswap score` CSV per budget and k, e.g. budget=200000,k=1:s.csv (repeatable)")


def add_arguments(parser) -> None:
    add_scores_argument(parser)
    parser.add_argument("--scatter-proxy", default="fisher", help="proxy of the scatter figure")
    parser.add_argument("--scatter-k", type=int, help="k of the scatter figure (default: the smallest)")


def scores_specs(scores) -> list[ScoresSpec]:
    specs = [s if isinstance(s, ScoresSpec) else parse_scores_spec(s) for s in scores or ()]
    if not specs:
        raise BlockswapError("no --scores files given")
    if len({(s.budget, s.k) for s in specs}) != len(specs):
        raise BlockswapError("two --scores files for the same budget and k")
    return sorted(specs, key=lambda s: (s.budget, s.k))


def correlations(runs: list[Run], scores, profile: str | None) -> tuple[list, list, dict, dict]:
    """(one record per proxy, budget and k - ρ, τ, their intervals and p-values, the paper's ρ -, notes,
    the loaded scores per spec, {genotype id: mean trained error}) of the random nets `runs`."""
    error_of = error_by_net(runs)
    records, notes, loaded = [], [], {}
    ceilings = {b: reliability(errors_by_net(rs)) for b, rs in group_runs(runs, lambda r: r.budget).items()}
    for spec in scores_specs(scores):
        df, proxies = load_scores(spec.path)
        ids = [i for i in df.index if i in error_of]
        if not ids:
            raise BlockswapError(f"{spec.path}: none of its {len(df)} genotype ids has a trained random net "
                                 f"among the metrics files")
        loaded[spec] = (df, proxies, ids)
        errors = [error_of[i] for i in ids]
        for proxy, col in proxies.items():
            values = df.loc[ids, col].to_numpy(dtype=float)
            c = {**correlate(values, errors), **bootstrap_correlation(values, errors)}
            if c["note"]:
                notes.append(f"{proxy}, {fmt_budget(spec.budget)}, k={spec.k}: {c['note']}.")
            records.append({"proxy": proxy, "sign": PROXY_SIGNS.get(proxy), "budget": spec.budget, "k": spec.k,
                            **c, **ceiling_of(ceilings, spec.budget),
                            "paper_spearman": paper.table1_rho(profile, proxy, spec.budget, spec.k)})
    for r, p in zip(records, holm([r["spearman_p"] for r in records])):
        r["spearman_p_holm"] = p
    return records, notes, loaded, error_of


def errors_by_net(runs: list[Run]) -> dict[str, list[float]]:
    """{genotype id: its errors, the run of the lowest seed first} - one training first, then its repeats."""
    return {i: [r.error for r in sorted(rs, key=lambda r: -1 if r.seed is None else r.seed)]
            for i, rs in group_runs(runs, lambda r: r.id).items()}


def ceiling_of(ceilings: dict, budget) -> dict:
    """The Spearman ρ a perfect ranker would show on average through the seed noise of the random nets at
    `budget`, its 95% interval and the Shapiro-Wilk p of their errors' normality (NaN if unmeasured)."""
    c = ceilings.get(budget, {})
    return {"ceiling": c.get("ceiling_spearman", math.nan), "ceiling_lo": c.get("ceiling_lo", math.nan),
            "ceiling_hi": c.get("ceiling_hi", math.nan), "normal_p": c.get("normal_p", math.nan)}


def ceiling_notes(records: list[dict]) -> list[str]:
    """One line per budget: the ceiling with its interval, said to be an average under normal errors, and a
    warning where the errors are far from normal."""
    lines = []
    for b, r in sorted({r["budget"]: r for r in records if not missing(r["ceiling"])}.items()):
        line = (f"{fmt_budget(b)}: through the seed noise of one training a perfect ranker would show ρ ≈ "
                f"{fmt(r['ceiling'])} [{fmt(r['ceiling_lo'])}, {fmt(r['ceiling_hi'])}] on average (the "
                "attenuation ceiling, from the nets trained with several seeds, under normal errors; not a bound)")
        if r["normal_p"] < NORMAL_ALPHA:
            line += (f"; the errors are far from normal (Shapiro-Wilk p {r['normal_p']:.2g}), where the real "
                     "figure is lower")
        lines.append(line + ".")
    return lines


@register("correlation", help="Table 1: Spearman/Kendall of each proxy with trained error, and a scatter",
          table="proxy_correlation", figures=("{scatter_proxy}_vs_error",), add_arguments=add_arguments)
def build(runs: list[Run], profile: str | None, *, scores, scatter_proxy: str = "fisher",
          scatter_k: int | None = None) -> Report:
    """ρ and τ of each proxy's raw value with the trained error of the same genotype id (random nets).

    scores: ScoresSpec or 'budget=B,k=K:PATH' strings, one per (budget, k).
    """
    records, notes, loaded, error_of = correlations(select(runs, ("random",), "correlation"), scores, profile)
    frame = frame_of(records, ints=("sign", "budget", "k", "n"))
    fig = scatter_figure(loaded, error_of, scatter_proxy, scatter_k, profile)
    return Report(frame, _table(records, notes), {f"{scatter_proxy}_vs_error": fig}, notes)


def _proxy_order(names) -> list[str]:
    names = list(dict.fromkeys(names))
    return [p for p in TABLE1_ORDER if p in names] + [p for p in names if p not in TABLE1_ORDER]


def _cell(r: dict | None) -> str:
    if r is None:
        return "—"
    text = f"{fmt(r['spearman'])} [{fmt(r['spearman_lo'])}, {fmt(r['spearman_hi'])}] / {fmt(r['kendall'])}"
    return text + (f" ({r['paper_spearman']:.3f})" if not missing(r["paper_spearman"]) else "")


def _table(records, notes) -> Table:
    columns = sorted({(r["budget"], r["k"]) for r in records})
    cell = {(r["proxy"], r["budget"], r["k"]): r for r in records}
    rows = []
    for proxy in _proxy_order(r["proxy"] for r in records):
        sign = cell[next((proxy, b, k) for b, k in columns if (proxy, b, k) in cell)]["sign"]
        rows.append([f"{proxy} ({'+' if sign == 1 else '−' if sign == -1 else '?'})"]
                    + [_cell(cell.get((proxy, b, k))) for b, k in columns])
    header = ["Proxy (sign)"] + [f"{fmt_budget(b)}, k={k}" for b, k in columns]
    has_paper = any(not missing(r["paper_spearman"]) for r in records)
    caption = ("Spearman ρ [95% bootstrap interval] / Kendall τ of each proxy's raw value with trained test "
               "error, per budget and k minibatches" + (" (paper's ρ, Table 1, in parentheses)" if has_paper
                                                        else ""))
    lead = ["Sign: + means higher is better, so a good proxy has ρ < 0 with error (− : the reverse).",
            EXPLORATORY.format(n=sum(not missing(r["spearman_p"]) for r in records)),
            "An interval that contains 0 means the runs cannot tell the proxy from chance; the CSV has τ's "
            "interval and both p-values, each inverted from the same bootstrap draws as its interval."]
    lead += ceiling_notes(records)
    return Table(header, rows, "l" + "r" * len(columns), caption, lead + notes)


def _panel_data(loaded: dict, error_of: dict, proxy: str, budget: int, k: int | None):
    """(proxy values, errors, k) of one budget's scatter panel, non-finite pairs dropped."""
    ks = sorted(s.k for s in loaded if s.budget == budget)
    want = k if k is not None else ks[0]
    spec = next((s for s in loaded if s.budget == budget and s.k == want), None)
    if spec is None:
        raise BlockswapError(f"no scores for budget {budget} with k={want} (have k={ks})")
    df, proxies, ids = loaded[spec]
    if proxy not in proxies:
        raise BlockswapError(f"{spec.path}: no {proxy!r} column for the scatter (--scatter-proxy); "
                             f"it has {', '.join(proxies)}")
    x = df.loc[ids, proxies[proxy]].to_numpy(dtype=float)
    y = np.array([error_of[i] for i in ids])
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok], want


def scatter_figure(loaded: dict, error_of: dict, proxy: str, k: int | None, profile):
    """Proxy vs trained error, one panel per budget (k: the given one, else the smallest), ρ/τ in titles."""
    budgets = sorted({s.budget for s in loaded})
    fig, axes = new_figure(len(budgets), width=4.6, height=4.0)
    sign = PROXY_SIGNS.get(proxy, 1)
    for ax, budget in zip(axes, budgets):
        x, y, want = _panel_data(loaded, error_of, proxy, budget, k)
        c = correlate(x, y)
        ax.scatter(x, y, s=14, alpha=0.7, color="tab:blue", label="random nets")
        if len(x):  # the net the search would pick
            best = int(np.argmax(sign * x))
            ax.scatter([x[best]], [y[best]], marker="*", s=160, color="tab:red", label=f"top-ranked by {proxy}")
        if len(x) and (x > 0).all():
            ax.set_xscale("log")
        rho = paper.table1_rho(profile, proxy, budget, want)
        title = f"{fmt_budget(budget)} params, k={want}\nρ = {fmt(c['spearman'], 3)}, τ = {fmt(c['kendall'], 3)}"
        title += f" (n={c['n']})" + (f"; paper ρ = {rho:.3f}" if rho is not None else "")
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(f"{proxy} at initialisation")
        ax.set_ylabel("Trained test error (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{proxy} vs trained error of random nets")
    return fig
