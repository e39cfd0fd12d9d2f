"""The papers' claims, each tested on our runs: the paper's evidence, our estimate with its 95% interval, and
a verdict - supported (the interval lies on the claimed side of 0), not supported (on the other side) or
inconclusive (it contains 0, or there are too few runs for an interval).

Every comparison is a difference of test errors in points (negative = the claim's winner is better),
between runs taught by the same teachers: paired by seed (the student's seed, which is its teacher's when
a profile trains one student per teacher) with a t-interval when three pairs or more exist; with fewer, each
run varies by the noise floor; against the random nets (one teacher, many nets) and between sample counts,
unpaired, with a bootstrap interval in which a lone run varies by the noise floor. The noise floor - the
pooled std of one net trained with several seeds - is shown beside the effects.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from .. import paper
from ..errors import BlockswapError
from .base import Report, register
from .correlation import correlations
from .runs import Run, group_runs
from .stats import LEVEL, difference_ci, mean_ci, mean_std, missing, verdict
from .tables import Table, fmt, fmt_budget, frame_of


def add_arguments(parser) -> None:
    parser.add_argument("--scores", nargs="+", action="extend", metavar="budget=B,k=K:PATH",
                        help="the random nets' `blockswap score` CSVs, as for the correlation report")


PAIRED = 3  # seeds two groups must share to be compared pair by pair
Z = float(NormalDist().inv_cdf(0.5 + LEVEL / 2))  # 1.96


def _row(claim: str, setting: str, est: float, lo: float, hi: float, n: int, paper_text: str = "—",
         claimed: int = -1) -> dict:
    return {"claim": claim, "setting": setting, "paper": paper_text, "estimate": est, "ci_lo": lo, "ci_hi": hi,
            "n": n, "verdict": verdict(lo, hi, claimed) if not missing(est) else "not run"}


def _compare(a: list[Run], b: list[Run], floor: float) -> tuple[float, float, float, int]:
    """mean error of `a` − mean error of `b`. Paired by seed (a t-interval over the pairs) when they share
    PAIRED seeds or more. Otherwise each run varies by the noise floor (a normal interval of
    ±z·floor·√(1/n_a + 1/n_b)): a t-interval over two pairs (t = 12.7) or a bootstrap of two runs would
    say more about the few runs than about the effect. Without a floor, a bootstrap of the runs."""
    by_seed_a, by_seed_b = _mean_by_seed(a), _mean_by_seed(b)
    common = sorted(set(by_seed_a) & set(by_seed_b))
    if len(common) >= PAIRED:
        return (*mean_ci(by_seed_a[s] - by_seed_b[s] for s in common), len(common))
    ea, eb = [r.error for r in a], [r.error for r in b]
    if missing(floor):
        return (*difference_ci(ea, eb), len(a) + len(b))
    d = float(np.mean(ea) - np.mean(eb))
    half = Z * floor * math.sqrt(1 / len(ea) + 1 / len(eb))
    return d, d - half, d + half, len(a) + len(b)


def _mean_by_seed(runs: list[Run]) -> dict[int, float]:
    """Mean error per seed (two teachers may each teach a student of the same seed)."""
    return {seed: mean_std(r.error for r in rs)[0]
            for seed, rs in group_runs([r for r in runs if r.seed is not None], lambda r: r.seed).items()}


def _same_teachers(runs: list[Run], like: list[Run]) -> list[Run]:
    """The runs taught by the teachers of `like`: a comparison across teachers would add their
    difference to the effect."""
    teachers = {r.teacher_seed for r in like}
    return [r for r in runs if r.teacher_seed in teachers]


def _fisher_rows(runs, scores, profile) -> list[dict]:
    random = [r for r in runs if r.method == "random"]
    if not scores or not random:
        return []
    return [_row("Fisher potential ranks nets (Spearman ρ with error < 0)", f"{fmt_budget(c['budget'])}, k={c['k']}",
                 c["spearman"], c["spearman_lo"], c["spearman_hi"], c["n"],
                 "—" if c["paper_spearman"] is None else f"ρ = {c['paper_spearman']:.3f} (Table 1)")
            for c in correlations(random, scores, profile)[0] if c["proxy"] == "fisher"]


def _pick_vs_random_rows(runs, floor: float) -> list[dict]:
    rows = []
    random = group_runs([r for r in runs if r.method == "random"], lambda r: r.budget)
    picks = group_runs([r for r in runs if r.method == "blockswap"], lambda r: r.budget)
    for b in sorted(set(random) & set(picks)):
        errors = np.array([r.error for r in random[b]])
        pick = [r.error for r in _same_teachers(picks[b], random[b])]
        if not pick:
            continue
        d, lo, hi = difference_ci(pick, errors, single_std=floor)  # one pick run varies by the noise floor
        beaten = float(np.mean(errors > np.mean(pick)))
        row = _row("The Fisher pick beats the random nets' mean", fmt_budget(b), d, lo, hi, len(pick) + len(errors))
        row["setting"] += f" (beats {100 * beaten:.0f}% of {len(errors)} random nets)"
        rows.append(row)
    return rows


def _pick_vs_single_rows(runs, profile, floor) -> list[dict]:
    rows = []
    picks = group_runs([r for r in runs if r.method == "blockswap"], lambda r: r.budget)
    singles = group_runs([r for r in runs if r.method == "moonshine"], lambda r: (r.budget, r.block))
    for b in sorted(picks):
        # The best single type among those trained with every teacher the picks had: a type trained once
        # would win by its luck as often as by its merit.
        teachers = {r.teacher_seed for r in picks[b]}
        at_b = {block: rs for (budget, block), rs in singles.items()
                if budget == b and teachers <= {r.teacher_seed for r in rs}}
        if not at_b:
            continue
        block, best = min(at_b.items(), key=lambda kv: mean_std(r.error for r in kv[1])[0])
        d, lo, hi, n = _compare(picks[b], best, floor)
        single, curve = paper.figure2(profile, b) or {}, paper.samples_curve(profile, b) or {}
        text = (f"{curve[max(curve)]:.2f} vs {single['single_blocktype_error']:.2f} (§4.3)"
                if curve and single.get("single_blocktype_error") else "—")
        rows.append(_row("Mixed blocks beat the best single blocktype at equal budget",
                         f"{fmt_budget(b)}: BlockSwap − {block}", d, lo, hi, n, text))
    return rows


def _pick_vs_scaled_rows(runs, floor) -> list[dict]:
    rows = []
    picks = group_runs([r for r in runs if r.method == "blockswap"], lambda r: r.budget)
    for model, scaled in group_runs([r for r in runs if r.method == "scaled"], lambda r: r.model).items():
        size = np.mean([r.params for r in scaled])
        fitting = [b for b, rs in picks.items() if np.mean([r.params for r in rs]) <= size]
        if not fitting:
            continue
        b = max(fitting)  # the largest BlockSwap net with no more params than the scaled one
        d, lo, hi, n = _compare(picks[b], scaled, floor)
        rows.append(_row("BlockSwap beats depth/width scaling with no more params",
                         f"BlockSwap {fmt_budget(b)} − {model} ({size / 1e3:.1f}K)", d, lo, hi, n))
    return rows


def _distillation_rows(runs, floor) -> list[dict]:
    rows = []
    for taught, alone, what, signal in (("blockswap", "blockswap_scratch", "BlockSwap pick", "AT"),
                                        ("moonshine", "moonshine_scratch", "Moonshine", "AT"),
                                        ("moonshine_kd", "moonshine_scratch", "Moonshine", "KD")):
        a = group_runs([r for r in runs if r.method == taught], lambda r: (r.budget, r.block))
        s = group_runs([r for r in runs if r.method == alone], lambda r: (r.budget, r.block))
        for key in sorted(set(a) & set(s), key=str):
            d, lo, hi, n = _compare(a[key], s[key], floor)
            name = f"{what} {fmt_budget(key[0]) if key[0] else ''} {key[1] or ''}".strip()
            rows.append(_row("Distillation beats training the same student without a teacher",
                             f"{name}: {signal} − no teacher", d, lo, hi, n,
                             "Moonshine: AT and KD beat training alone" if what == "Moonshine" else "—"))
    return rows


def _samples_rows(runs, profile) -> list[dict]:
    rows = []
    for b, rs in group_runs([r for r in runs if r.method == "samples"], lambda r: r.budget).items():
        by_n = group_runs(rs, lambda r: r.samples)
        if len(by_n) < 2:
            continue
        few, many = min(by_n), max(by_n)
        d, lo, hi = difference_ci([r.error for r in by_n[many]], [r.error for r in by_n[few]])
        curve = paper.samples_curve(profile, b) or {}
        text = (f"{curve[max(curve)]:.2f} after {max(curve)} vs {curve[min(curve)]:.2f} after {min(curve)} (§4.3)"
                if curve else "—")
        rows.append(_row("More samples find a better net", f"{fmt_budget(b)}: {many} − {few} samples", d, lo, hi,
                         len(by_n[many]) + len(by_n[few]), text))
    return rows


def noise_floor(runs: list[Run]) -> tuple[float, int]:
    """Pooled sample std of the same genotype (same method and id) trained with several seeds, and the
    number of such nets."""
    groups = [rs for rs in group_runs(runs, lambda r: (r.method, r.id)).values() if len(rs) >= 2]
    if not groups:
        return math.nan, 0
    pooled = sum((len(rs) - 1) * np.var([r.error for r in rs], ddof=1) for rs in groups)
    return float(math.sqrt(pooled / sum(len(rs) - 1 for rs in groups))), len(groups)


@register("claims", help="the papers' claims: the paper's evidence, ours with a 95% interval, and a verdict",
          table="claims", figures=(), add_arguments=add_arguments)
def build(runs: list[Run], profile: str | None, *, scores=None) -> Report:
    """One row per testable claim and setting; rows for claims without the runs they need are left out."""
    floor, nets = noise_floor(runs)
    records = (_fisher_rows(runs, scores, profile) + _pick_vs_random_rows(runs, floor)
               + _pick_vs_single_rows(runs, profile, floor) + _pick_vs_scaled_rows(runs, floor)
               + _distillation_rows(runs, floor)
               + _samples_rows(runs, profile))
    if not records:
        raise BlockswapError(f"no claim can be tested on these {len(runs)} metrics files: the claims compare "
                             "BlockSwap students (labels.method blockswap) with random nets, Moonshine students, "
                             "scaled nets and no-teacher controls of the same budget, or picks after n samples")
    notes = [f"Noise floor: the same net trained with several seeds differs by a pooled std of {fmt(floor)} "
             f"points ({nets} nets); an effect smaller than that needs many runs to show."] if nets else []
    return Report(frame_of(records, ints=("n",)), _table(records, notes), {}, notes)


def _table(records, notes) -> Table:
    rows = [[r["claim"], r["setting"], r["paper"],
             f"{fmt(r['estimate'])} [{fmt(r['ci_lo'])}, {fmt(r['ci_hi'])}]", str(r["n"]), r["verdict"]]
            for r in records]
    caption = ("The papers' claims on our runs: estimate [95% interval] and verdict (error differences in "
               "points, negative = the claim's winner is better; ρ for the Fisher rows)")
    return Table(["Claim", "Setting", "Paper", "Ours [95% CI]", "n", "Verdict"], rows, "lllrrl", caption, notes)
