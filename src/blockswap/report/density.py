"""Figure 2: the random nets' error density per budget, single-blocktype nets (and BlockSwap) marked."""

from __future__ import annotations

import math

import numpy as np

from ..core import paper
from ..core.errors import BlockswapError
from .base import Report, register
from .figures import new_figure
from .runs import Run, error_by_net, group_runs, select
from .stats import mean_std, missing
from .tables import Table, fmt, fmt_budget, fmt_pm, frame_of

SINGLE = ("moonshine", "mbconv")  # nets of one block type


def _net_label(r: Run) -> str:
    if r.method == "blockswap":
        return "BlockSwap pick"
    block = r.block or (r.blocks[0] if len(set(r.blocks)) == 1 else None)
    return block or r.model or r.method


def _marked(runs: list[Run], budgets: list[int], notes: list[str]) -> dict:
    """{budget: {(method, label): runs}} of the single-blocktype nets and BlockSwap picks trained for a
    random-net budget - matched by their budget label (what they were trained for), not by params."""
    marked: dict = {}
    for r in runs:
        if r.method not in SINGLE + ("blockswap",):
            continue
        if r.budget not in budgets:
            notes.append(f"{r.path}: labelled budget {r.budget} has no random nets; not shown.")
            continue
        marked.setdefault(r.budget, {}).setdefault((r.method, _net_label(r)), []).append(r)
    return marked


def _records(budget: int, random: list[Run], nets: dict, profile) -> list[dict]:
    rand = np.array(list(error_by_net(random).values()))  # one error per net: its seeds' mean
    rmean, rstd = mean_std(rand)
    fig2 = paper.figure2(profile, budget) or {}
    base = {"budget": budget, "random_mean": rmean, "random_std": rstd, "random_n": len(rand),
            "paper_single_blocktype": fig2.get("single_blocktype_error"),
            "paper_single_blocktype_block": fig2.get("single_blocktype_block"),
            "paper_random_mean": fig2.get("random_mean")}
    if not nets:
        return [{**base, "net": None, "method": None, "n": 0, "error": math.nan, "error_std": math.nan,
                 "beaten_fraction": math.nan}]
    records = []
    for (method, label), rs in sorted(nets.items(), key=lambda kv: mean_std(r.error for r in kv[1])[0]):
        err, sd = mean_std(r.error for r in rs)
        records.append({**base, "net": label, "method": method, "n": len(rs), "error": err, "error_std": sd,
                        "beaten_fraction": float(np.mean(rand > err))})
    return records


@register("density", help="Figure 2: random nets' error density with single-blocktype nets marked",
          table="density", figures=("density",))
def build(runs: list[Run], profile: str | None) -> Report:
    """Per budget: the random nets' errors, and each marked net's error and the fraction it beats."""
    randoms = select(runs, ("random",), "density")
    unlabelled = [r.path for r in randoms if r.budget is None]
    if unlabelled:
        raise BlockswapError(f"{unlabelled[0]}: a random net needs labels.budget")
    by_budget = group_runs(randoms, lambda r: r.budget)
    budgets = sorted(by_budget)
    notes: list[str] = []
    marked = _marked(runs, budgets, notes)
    records = [rec for b in budgets for rec in _records(b, by_budget[b], marked.get(b, {}), profile)]
    frame = frame_of(records, ints=("budget", "random_n", "n"))
    return Report(frame, _table(records, notes), {"density": density_figure(by_budget, records)}, notes)


def _table(records, notes) -> Table:
    has_paper = any(not missing(r["paper_single_blocktype"]) for r in records)
    header = ["Budget", "Random nets (%)", "n", "Net", "Error (%)", "Runs", "Random nets beaten"]
    if has_paper:
        header += ["Paper single-blocktype (%)", "Paper random mean (%)"]
    rows = []
    for r in records:
        cells = [fmt_budget(r["budget"]), fmt_pm(r["random_mean"], r["random_std"]), str(r["random_n"]),
                 r["net"] or "—", fmt_pm(r["error"], r["error_std"]), str(r["n"]),
                 "—" if missing(r["beaten_fraction"]) else f"{100 * r['beaten_fraction']:.0f}%"]
        if has_paper:
            block = r["paper_single_blocktype_block"]
            cells += [fmt(r["paper_single_blocktype"]) + (f" ({block})" if block else ""),
                      "—" if missing(r["paper_random_mean"]) else f"≈{r['paper_random_mean']:.2f}"]
        rows.append(cells)
    caption = ("Random mixed nets vs single-blocktype nets (and the BlockSwap pick) at each budget"
               + ("; paper: Figure 2 / §4.3" if has_paper else ""))
    lead = ["'Random nets beaten': the fraction of random nets with a strictly higher error; a net trained with "
            "several seeds counts once, with its mean."]
    return Table(header, rows, "lrrlrrr" + "r" * (2 * has_paper), caption, lead + notes)


def _distribution(ax, err) -> list:
    """Histogram (+ KDE with ≥ 3 distinct values) of the random nets' errors; the legend handles."""
    *_, bars = ax.hist(err, bins="auto", density=True, color="tab:blue", alpha=0.3,
                       label=f"random nets (n={len(err)})")
    handles = [bars[0]]  # the distribution's first bar carries the label
    if len(err) >= 3 and np.ptp(err) > 0:
        from scipy.stats import gaussian_kde

        grid = np.linspace(err.min() - np.ptp(err) * 0.2, err.max() + np.ptp(err) * 0.2, 200)
        handles += ax.plot(grid, gaussian_kde(err)(grid), color="tab:blue", label="random nets (KDE)")
    return handles


def density_figure(by_budget: dict, records: list[dict]):
    """One panel per budget: histogram + KDE of random nets' errors, a vertical line per marked net."""
    from matplotlib import colormaps

    budgets = sorted(by_budget)
    fig, axes = new_figure(len(budgets), width=4.8, height=3.8)
    colours = colormaps["tab10"].colors
    for ax, b in zip(axes, budgets):
        handles = _distribution(ax, np.array(list(error_by_net(by_budget[b]).values())))
        rows = [r for r in records if r["budget"] == b]
        i = 0
        for r in rows:
            if r["net"] is None:
                continue
            pick = r["method"] == "blockswap"
            # Dotted lines for the single-blocktype nets, as in the paper's Figure 2; dashed for the pick.
            handles.append(ax.axvline(r["error"], color="black" if pick else colours[(i + 1) % len(colours)],
                                      linestyle="--" if pick else ":", linewidth=1.8,
                                      label=f"{r['net']} ({r['error']:.2f}%)"))
            i += not pick
        p = rows[0]
        if not missing(p["paper_single_blocktype"]):
            block = p["paper_single_blocktype_block"]
            handles.append(ax.axvline(p["paper_single_blocktype"], color="gray", linestyle="-.", linewidth=1.5,
                                      label=f"paper: {block or 'single-blocktype'} "
                                            f"({p['paper_single_blocktype']:.2f}%)"))
        ax.set_title(f"{fmt_budget(b)} params")
        ax.set_xlabel("Trained test error (%)")
        ax.set_ylabel("Density")
        ax.legend(handles=handles, fontsize="x-small")
    fig.suptitle("Random mixed-block nets vs single-blocktype nets")
    return fig
