"""The comparison of compress jobs: one row per budget and method, each method's paired difference from BlockSwap
with its interval and Holm-adjusted p, the students' measured latency; the Markdown table and the Pareto figure."""

from __future__ import annotations

import math
import statistics

from ..report.figures import log_axis, new_figure
from ..report.stats import holm, t_difference
from .job import METHODS

ALPHA = 0.05  # a table's verdicts: a difference is shown where its Holm-adjusted p is below this
RUNTIMES = {"PyTorch eager": "eager", "ONNX Runtime": "ORT"}  # latency.PYTORCH, latency.ONNXRUNTIME


def comparison(reports: list[dict]) -> list[dict]:
    """One row per (budget, method) of compress reports: params, mean top-1 error and sd over the seeds, the
    student's measured latency (`student_latency`), and the mean difference from the BlockSwap student of the
    same budget and seed with its 95% t-interval (paired by seed: the seed fixes the data order and the search's
    draws), the paired t-test's p and that p Holm-adjusted over every difference of the table. Fewer than three
    pairs, or pairs that all differ by the same amount, give the difference alone (`why` says which) and stay
    out of Holm's family."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in reports:
        groups.setdefault((r["budget"], r["method"]), {})[r["seed"]] = r
    rows = []
    for (budget, method), by_seed in sorted(groups.items(), key=lambda kv: (kv[0][0], METHODS.index(kv[0][1]))):
        errors = [by_seed[s]["student"]["test_top1_error"] for s in sorted(by_seed)]
        row = {"budget": budget, "budget_given": next(iter(by_seed.values())).get("budget_given"),
               "method": method, "seeds": sorted(by_seed), "errors": errors,
               "params": sorted({r["student"]["params"] for r in by_seed.values()}),
               "mean": statistics.mean(errors), "sd": statistics.stdev(errors) if len(errors) > 1 else None,
               "latency": student_latency([by_seed[s] for s in sorted(by_seed)]), "vs_blockswap": None}
        base = groups.get((budget, "blockswap"), {})
        seeds = [s for s in sorted(by_seed) if s in base]
        if method != "blockswap" and seeds:
            test = t_difference([by_seed[s]["student"]["test_top1_error"] for s in seeds],
                                [base[s]["student"]["test_top1_error"] for s in seeds], paired=True)
            row["vs_blockswap"] = {"mean": test["estimate"], "low": test["ci_lo"], "high": test["ci_hi"],
                                   "n": len(seeds), "p": test["p"], "why": test["why"]}
        rows.append(row)
    compared = [r["vs_blockswap"] for r in rows if r["vs_blockswap"]]
    for d, adjusted in zip(compared, holm([d["p"] for d in compared])):
        d["p_holm"] = adjusted
    return rows


def student_latency(reports: list[dict]) -> dict[str, dict]:
    """{"eager batch_1": {"mean", "sd", "n"}, ...}: the students' measured medians (µs; per image at the
    throughput batch) per runtime and batch, their mean and sd over the seeds (each seed's student is its own
    net: the sd is the architectures' spread as much as the timing's)."""
    medians: dict[str, list[float]] = {}
    for report in reports:
        for profile in report.get("latency", {}).get("student", []):
            for key, figures in profile.items():
                if key.startswith("batch_") and figures:
                    medians.setdefault(f"{RUNTIMES[profile['runtime']]} {key}", []).append(figures["median"])
    return {key: {"mean": statistics.mean(v), "sd": statistics.stdev(v) if len(v) > 1 else None, "n": len(v)}
            for key, v in medians.items()}


def latency_conditions(report: dict) -> str:
    """Where and how a report's latency was measured, for a table's caption."""
    eager = report.get("latency", {}).get("student", [{}])[0]
    return (f"{report['latency']['device']}, {eager.get('threads')} thread(s)" if eager else "")


def comparison_markdown(rows: list[dict], teacher: dict, conditions: str = "") -> str:
    family = sum(1 for r in rows if r["vs_blockswap"] and not math.isnan(r["vs_blockswap"]["p"]))
    keys = sorted({k for r in rows for k in r["latency"]},  # batch 1 first, eager before ORT
                  key=lambda k: (k.split()[1] != "batch_1", k.split()[0] != "eager"))
    latency_header = "".join(f" µs {k.split()[0]} {_batch_words(k.split()[1])} |" for k in keys)
    lines = [f"Teacher: {teacher['params']:,} params, top-1 error {teacher['test_top1_error']:.2f}%.", "",
             "| budget | method | params | error % mean ± sd | per seed | − BlockSwap (paired, 95% t) | "
             f"p (Holm over {family}) | verdict (Holm, α = {ALPHA:g}) |" + latency_header,
             "|---:|---|---:|---|---|---|---|---|" + "---:|" * len(keys)]
    for r in rows:
        params = f"{r['params'][0]:,}" + (f"–{r['params'][-1]:,}" if len(r["params"]) > 1 else "")
        spread = f"{r['mean']:.2f} ± {r['sd']:.2f}" if r["sd"] is not None else f"{r['mean']:.2f}"
        d, verdict, diff, p = r["vs_blockswap"], "", "", ""
        if d and d["why"]:
            diff, verdict = f"{d['mean']:+.2f}", f"no verdict: {d['why']}"
        elif d:
            diff = f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"
            p = f"{d['p']:.3f} ({d['p_holm']:.3f})"
            verdict = ("no difference shown" if d["p_holm"] >= ALPHA else
                       "BlockSwap better" if d["mean"] > 0 else "pruning better")
        budget = f"{r['budget']:,.0f}" if not r.get("budget_given") else f"{r['budget_given']} = {r['budget']:,.0f}"
        latency = "".join(f" {_mean_sd(r['latency'].get(k))} |" for k in keys)
        lines.append(f"| {budget} | {r['method']} | {params} | {spread} | "
                     f"{' / '.join(f'{e:.2f}' for e in r['errors'])} | {diff} | {p} | {verdict} |" + latency)
    if keys:
        lines += ["", "Latency: each seed's student timed by its job (the median of its timed runs; per image at "
                  "the throughput batch), then the mean ± sd over the seeds"
                  + (f", on {conditions}" if conditions else "") + ". ORT: ONNX Runtime on the exported model."]
    return "\n".join(lines) + "\n"


def _batch_words(key: str) -> str:
    batch = key.split("_")[1]
    return "batch 1" if batch == "1" else f"per image, batch {batch}"


def _mean_sd(figures: dict | None) -> str:
    if figures is None:
        return "-"
    return f"{figures['mean']:,.0f}" + (f" ± {figures['sd']:,.0f}" if figures["sd"] is not None else "")


def comparison_figure(rows: list[dict], teacher: dict, teacher_latency: dict | None = None):
    """Error against params and against measured latency (batch 1 and the throughput batch), one line per
    method (mean over seeds; bars: ± sd of the error), PyTorch eager filled, ONNX Runtime hollow; the teacher as
    a star (its eager latency from `teacher_latency`, the report's "latency"["teacher"] profile)."""
    keys = [k for k in ("batch_1", next((k.split()[1] for r in rows for k in r["latency"]
                                          if k.split()[1] != "batch_1"), None)) if k]
    fig, axes = new_figure(1 + (len(keys) if any(r["latency"] for r in rows) else 0))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    for i, method in enumerate(methods):
        mine, marker, colour = [r for r in rows if r["method"] == method], "osd"[i % 3], f"C{i}"
        errors, bars = [r["mean"] for r in mine], [r["sd"] or 0 for r in mine]
        axes[0].errorbar([sum(r["params"]) / len(r["params"]) for r in mine], errors, yerr=bars, marker=marker,
                         color=colour, capsize=3, label=method)
        for ax, key in zip(axes[1:], keys):
            for runtime, fill in (("eager", colour), ("ORT", "none")):
                points = [(r["latency"][f"{runtime} {key}"]["mean"], e, b) for r, e, b in zip(mine, errors, bars)
                          if f"{runtime} {key}" in r["latency"]]
                if points:
                    x, y, yerr = zip(*points)
                    ax.errorbar(x, y, yerr=yerr, marker=marker, color=colour, markerfacecolor=fill, capsize=3,
                                linestyle="-" if runtime == "eager" else "--", label=f"{method} ({runtime})")
    axes[0].scatter([teacher["params"]], [teacher["test_top1_error"]], marker="*", s=120, color="black",
                    label="teacher")
    log_axis(axes[0])
    axes[0].set_xlabel("params")
    for ax, key in zip(axes[1:], keys):
        if teacher_latency and teacher_latency.get(key):
            ax.scatter([teacher_latency[key]["median"]], [teacher["test_top1_error"]], marker="*", s=120,
                       color="black", label="teacher (eager)")
        ax.set_xlabel(f"µs, {_batch_words(key)} (measured median)")
    for ax in axes:
        ax.set_ylabel("top-1 error (%)")
        ax.legend(fontsize="small")
    axes[0].set_title("Compressed students: mean over seeds ± sd")
    return fig
