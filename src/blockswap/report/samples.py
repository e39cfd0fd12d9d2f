"""§4.3: the test error of the top-ranked candidate vs the number of candidates sampled."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..core import paper
from ..core.errors import BlockswapError
from .base import Report, register
from .figures import new_figure
from .runs import Run, budget_near, group_runs, select
from .stats import count_round, mean_std, missing
from .tables import Table, fmt, fmt_budget, fmt_pm, fmt_scaled, frame_of


def add_arguments(parser) -> None:
    parser.add_argument("--full-search", type=int, metavar="N",
                        help="also plot method=blockswap runs as the pick after N samples (the full search)")


def _with_full_search(runs: list[Run], full_search: int) -> list[Run]:
    """The BlockSwap students as method=samples runs at n = full_search, on the nearest samples curve."""
    if full_search < 1:
        raise BlockswapError(f"--full-search must be ≥ 1, got {full_search}")
    budgets = {r.budget for r in runs if r.method == "samples" and r.budget}
    # A BlockSwap student's budget joins the samples curve it is within 2.5 % of.
    return [replace(r, method="samples", samples=full_search,
                    budget=budget_near(r.budget, budgets) or r.budget if r.budget else None)
            if r.method == "blockswap" else r for r in runs]


@register("samples", help="error of the top-ranked candidate vs the number of samples", table="samples",
          figures=("samples",), add_arguments=add_arguments)
def build(runs: list[Run], profile: str | None, *, full_search: int | None = None) -> Report:
    """Error of the top-ranked candidate after n samples, per budget, mean ± std over search seeds.

    With `full_search` N, the BlockSwap students (the pick of the whole search) are the points at n = N.
    """
    if full_search is not None:
        runs = _with_full_search(runs, full_search)
    runs = select(runs, ("samples",), "samples")
    for r in runs:
        if r.samples is None or r.budget is None:
            raise BlockswapError(f"{r.path}: a method=samples run needs labels.samples and labels.budget")
    groups = group_runs(runs, lambda r: (r.budget, r.samples))
    records = []
    for b, n in sorted(groups):
        rs = groups[(b, n)]
        err, sd = mean_std(r.error for r in rs)
        curve = paper.samples_curve(profile, b) or {}
        records.append({"budget": b, "samples": n, "n": len(rs), "error_mean": err, "error_std": sd,
                        "params": count_round(np.mean([r.params for r in rs])), "paper_error": curve.get(n)})
    frame = frame_of(records, ints=("budget", "samples", "n", "params"))
    return Report(frame, _table(records), {"samples": samples_figure(records, profile)})


def _table(records) -> Table:
    has_paper = any(r["paper_error"] is not None for r in records)
    header = ["Budget", "Samples", "Runs", "Error (%)", "Params (K)"] + ["Paper error (%)"] * has_paper
    rows = [[fmt_budget(r["budget"]), str(r["samples"]), str(r["n"]), fmt_pm(r["error_mean"], r["error_std"]),
             fmt_scaled(r["params"], 1e3, 1)] + [fmt(r["paper_error"])] * has_paper for r in records]
    caption = "Test error of the top-ranked candidate after n samples" + ("; paper: §4.3" if has_paper else "")
    return Table(header, rows, "lrrrr" + "r" * has_paper, caption)


def samples_figure(records: list[dict], profile):
    fig, (ax,) = new_figure()
    budgets = sorted({r["budget"] for r in records})
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    handles = []
    for i, b in enumerate(budgets):
        rs = [r for r in records if r["budget"] == b]
        colour = colours[i % len(colours)]
        handles.append(ax.errorbar([r["samples"] for r in rs], [r["error_mean"] for r in rs],
                                   yerr=[0 if missing(r["error_std"]) else r["error_std"] for r in rs],
                                   fmt="o-", color=colour, capsize=3, label=f"{fmt_budget(b)} params"))
        curve = paper.samples_curve(profile, b)
        if curve:
            handles.append(ax.scatter(list(curve), list(curve.values()), marker="o", s=80, facecolors="none",
                                      edgecolors=colour, linewidths=1.5, label=f"{fmt_budget(b)} params (paper)"))
    ax.set_xscale("log")
    ax.set_xlabel("Candidates sampled, n (log scale)")
    ax.set_ylabel("Test error of the top-ranked net (%)")
    ax.set_title("BlockSwap: error of the Fisher-ranked pick vs samples")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=handles, fontsize="small")
    return fig
