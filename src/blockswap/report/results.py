"""Table 2/3: error, params and Ops (MACs on ImageNet) per method and budget; Pareto fronts."""

from __future__ import annotations

import numpy as np

from ..core import paper
from ..core.errors import BlockswapError
from .base import Report, register
from .figures import STYLE, log_axis, new_figure
from .runs import LABEL_HINT, METHOD_LABEL, METHODS, UNLABELLED, Run, group_runs
from .stats import count_round, mean_std, missing
from .tables import Table, fmt, fmt_budget, fmt_pm, fmt_scaled, frame_of, profile_note

INTS = ("budget", "samples", "n", "params", "ops", "macs", "paper_params", "paper_ops", "paper_macs")


def _key(r: Run) -> tuple:
    # Unlabelled runs: one row per genotype (its seeds averaged), never different nets in one row.
    return r.method, r.budget, r.model, r.block, r.samples, r.id if r.method == UNLABELLED else None


def _sort_key(key: tuple) -> tuple:
    method, budget, model, block, samples, run_id = key
    return METHODS.index(method), -(budget or 0), model or "", block or "", samples or 0, run_id or ""


def _record(key: tuple, rs: list[Run]) -> dict:
    method, budget, model, block, samples, run_id = key
    err, err_sd = mean_std(r.error for r in rs)
    top5, top5_sd = mean_std(r.top5 for r in rs)
    return {"method": method, "budget": budget, "model": model, "block": block, "samples": samples,
            "genotype_id": run_id, "n": len(rs), "error_mean": err, "error_std": err_sd, "top5_mean": top5,
            "top5_std": top5_sd, "params": count_round(np.mean([r.params for r in rs])),
            "ops": count_round(np.mean([r.ops for r in rs])),
            "macs": count_round(np.mean([r.macs for r in rs])) if all(r.macs is not None for r in rs) else None}


def _paper_columns(rec: dict, profile: str, cost: str):
    """The paper's row for a record (None if none) and its columns."""
    # Without a budget label the net's own size stands in for it.
    row = paper.lookup(profile, rec["method"], budget=rec["budget"] or rec["params"], model=rec["model"],
                       block=rec["block"])
    return row, dict(paper_row=row and row.label, paper_source=row and row.source, paper_error=row and row.error,
                     paper_error_std=row and row.error_std, paper_top5=row and row.top5,
                     paper_params=row and row.params, **{f"paper_{cost}": row and getattr(row, cost)},
                     error_minus_paper=row and rec["error_mean"] - row.error)


@register("results", help="the main table (error, params, Ops per method and budget) and Pareto figures",
          table="main", figures=("pareto_params", "pareto_ops"))
def build(runs: list[Run], profile: str | None) -> Report:
    """One row per (method, budget, model, block, samples): error mean ± std, counts, the paper's row."""
    profile = paper.normalise_profile(profile)
    cost = paper.COST.get(profile, "ops")
    with_paper = paper.has_profile(profile)
    if cost == "macs":
        lacking = [r.path for r in runs if r.macs is None]
        if lacking:
            raise BlockswapError(f"{lacking[0]}: no 'macs' (the {profile} table counts MACs)")
    groups = group_runs(runs, _key)
    records, matched = [], set()
    for key in sorted(groups, key=_sort_key):
        rec = _record(key, groups[key])
        if with_paper:
            row, columns = _paper_columns(rec, profile, cost)
            matched.add(row)
            rec.update(columns)
        records.append(rec)
    if not any(r["genotype_id"] for r in records):
        for r in records:
            del r["genotype_id"]
    notes = []
    if with_paper:
        unmatched = [r.label for r in paper.ROWS[profile] if r not in matched]
        if unmatched:
            notes.append(f"Paper rows with no run here: {', '.join(unmatched)}.")
    unlabelled = sum(len(rs) for k, rs in groups.items() if k[0] == UNLABELLED)
    if unlabelled:
        notes.append(f"{unlabelled} metrics files name no labels.method: one row per genotype "
                     f"(to group them by method, {LABEL_HINT}).")
    table = _table(records, profile, cost, with_paper, notes)
    figures = {"pareto_params": pareto_figure(records, "params", profile),
               "pareto_ops": pareto_figure(records, cost, profile)}
    return Report(frame_of(records, ints=INTS), table, figures, notes)


def _units(profile: str, cost: str) -> dict:
    if profile == "imagenet":
        return {"params": (1e6, 1, "Params (M)"), cost: (1e9, 3, "MACs (G)")}
    return {"params": (1e3, 1, "Params (K)"), cost: (1e6, 1, "MACs (M)" if cost == "macs" else "Ops (M)")}


def _model_cell(r: dict) -> str:
    model = r["model"] or "—"
    return f"{model} ({r['genotype_id']})" if r.get("genotype_id") else model


def _row(r: dict, units: dict, cost: str, show: dict, with_paper: bool) -> list[str]:
    cells = [METHOD_LABEL[r["method"]], fmt_budget(r["budget"]), _model_cell(r)]
    cells += [r["block"] or "—"] * show["block"] + [str(r["samples"] or "—")] * show["samples"] + [str(r["n"])]
    cells += [fmt_pm(r["error_mean"], r["error_std"])] + [fmt_pm(r["top5_mean"], r["top5_std"])] * show["top5"]
    cells += [fmt_scaled(r["params"], *units["params"][:2]), fmt_scaled(r[cost], *units[cost][:2])]
    if with_paper:
        cells += [r["paper_row"] or "—", fmt_pm(r["paper_error"], r["paper_error_std"])]
        cells += [fmt(r["paper_top5"])] * show["top5"]
        cells += [fmt_scaled(r["paper_params"], *units["params"][:2]),
                  fmt_scaled(r[f"paper_{cost}"], *units[cost][:2])]
    return cells


def _table(records, profile, cost, with_paper, notes) -> Table:
    units = _units(profile, cost)
    show = {"block": any(r["block"] for r in records), "samples": any(r["samples"] for r in records),
            "top5": profile == "imagenet"}
    header = ["Method", "Budget", "Model"] + ["Block"] * show["block"] + ["Samples"] * show["samples"] + ["n"]
    header += ["Error (%)"] + ["Top-5 (%)"] * show["top5"] + [units["params"][2], units[cost][2]]
    if with_paper:
        header += ["Paper row", "Paper error (%)"] + ["Paper top-5 (%)"] * show["top5"]
        header += [f"Paper {units['params'][2]}", f"Paper {units[cost][2]}"]
    rows = [_row(r, units, cost, show, with_paper) for r in records]
    align = "lll" + "l" * show["block"] + "r" * (len(header) - 3 - show["block"])
    if with_paper:  # the paper-row name column is text
        i = header.index("Paper row")
        align = align[:i] + "l" + align[i + 1:]
    source = {"cifar10": "Table 2", "imagenet": "Table 3"}.get(profile)
    caption = (f"Test error (top-1, %), mean ± std over n runs{profile_note(profile)}"
               + (f"; paper: {source} of {paper.SOURCE}" if source else ""))
    return Table(header, rows, align, caption, notes)


def pareto_figure(records: list[dict], x: str, profile: str):
    """Error vs `x` (params, ops or macs), log x; one marker/colour per method; paper points hollow."""
    fig, (ax,) = new_figure()
    xname = {"params": "Parameters", "ops": "Ops", "macs": "MACs"}[x]
    paper_x = f"paper_{x}"
    handles = []  # legend in method order, each method's paper points right after its own
    for method in METHODS:
        rs = [r for r in records if r["method"] == method and not missing(r[x])]
        if not rs:
            continue
        colour, marker = STYLE[method]
        handles.append(ax.errorbar([r[x] for r in rs], [r["error_mean"] for r in rs],
                                   yerr=[0 if missing(r["error_std"]) else r["error_std"] for r in rs],
                                   fmt=marker, color=colour, markersize=7, capsize=3, linestyle="none",
                                   label=METHOD_LABEL[method]))
        ps = [r for r in rs if not missing(r.get("paper_error")) and not missing(r.get(paper_x))]
        if ps:
            handles.append(ax.scatter([r[paper_x] for r in ps], [r["paper_error"] for r in ps], marker=marker,
                                      facecolors="none", edgecolors=colour, s=70, linewidths=1.5,
                                      label=f"{METHOD_LABEL[method]} (paper)"))
    log_axis(ax)
    ax.set_xlabel(f"{xname} (log scale)")
    ax.set_ylabel("Test error (%)")
    ax.set_title(f"Test error vs {xname.lower() if x == 'params' else xname}{profile_note(profile)}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=handles, fontsize="small", loc="best")
    return fig
