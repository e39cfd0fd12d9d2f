"""The papers' claims, each tested on our runs: the paper's evidence, our estimate with its 95% interval, and
a verdict. The rows are one family of tests whose family-wise error Holm's step-down method controls at 5%:
a claim is supported only when its Holm-adjusted p is below 0.05 with the estimate on the claimed side (the
reverse side: not supported), and a Table 1 row contradicts the paper when the test of the paper's ρ is
rejected after the same adjustment; everything else is inconclusive, with the reason: the seed noise's
attenuation ceiling (the largest |ρ| the trained errors allow lies below the paper's) or the sample size. (A ρ
stronger than the paper's contradicts nothing.)

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
from .runs import Run, error_by_net, group_runs
from .stats import (
    LEVEL,
    difference_ci,
    difference_p,
    holm,
    mean_ci,
    mean_std,
    missing,
    spearman_p_against,
    t_pvalue,
    z_pvalue,
)
from .tables import Table, fmt, fmt_budget, frame_of


def add_arguments(parser) -> None:
    parser.add_argument("--scores", nargs="+", action="extend", metavar="budget=B,k=K:PATH",
                        help="the random nets' `blockswap score` CSVs, as for the correlation report")


PAIRED = 3  # seeds two groups must share to be compared pair by pair
Z = float(NormalDist().inv_cdf(0.5 + LEVEL / 2))  # 1.96


def _row(claim: str, setting: str, est: float, lo: float, hi: float, n: int, p: float, paper_text: str = "—",
         claimed: int = -1, **extra) -> dict:
    """One test: `claimed` the side of 0 the claim puts the estimate on; `extra` a Table 1 row's paper_rho,
    p_paper (the test of the paper's ρ) and ceiling. The verdict is given once the family is adjusted."""
    return {"claim": claim, "setting": setting, "paper": paper_text, "estimate": est, "ci_lo": lo, "ci_hi": hi,
            "n": n, "p": p, "claimed": claimed, "paper_rho": math.nan, "p_paper": math.nan,
            "ceiling": math.nan, **extra}


def _compare(a: list[Run], b: list[Run], floor: float) -> tuple[float, float, float, int, float]:
    """mean error of `a` − mean error of `b`, its 95% interval, n and two-sided p. Paired by seed (a t-test
    over the pairs) when they share PAIRED seeds or more. Otherwise each run varies by the noise floor (a
    normal interval of ±z·floor·√(1/n_a + 1/n_b)): a t-interval over two pairs (t = 12.7) or a bootstrap of
    two runs would say more about the few runs than about the effect. Without a floor, a bootstrap."""
    by_seed_a, by_seed_b = _mean_by_seed(a), _mean_by_seed(b)
    common = sorted(set(by_seed_a) & set(by_seed_b))
    if len(common) >= PAIRED:
        pairs = [by_seed_a[s] - by_seed_b[s] for s in common]
        return (*mean_ci(pairs), len(common), t_pvalue(pairs))
    ea, eb = [r.error for r in a], [r.error for r in b]
    if missing(floor):
        return (*difference_ci(ea, eb), len(a) + len(b), difference_p(ea, eb))
    d = float(np.mean(ea) - np.mean(eb))
    se = floor * math.sqrt(1 / len(ea) + 1 / len(eb))
    return d, d - Z * se, d + Z * se, len(a) + len(b), z_pvalue(d, se)


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
    rows = []
    for c in correlations(random, scores, profile)[0]:
        if c["proxy"] != "fisher":
            continue
        claimed = paper.table1_claim(profile, "fisher", c["budget"], c["k"])
        text = ("—" if not claimed else f"ρ = {claimed[0]:.3f} (Table 1)" if len(claimed) == 1 else
                f"ρ = {max(claimed):.2f} … {min(claimed):.2f} (Table 1, CIFAR-10, k={c['k']})")
        # The paper's value nearest ours: the range is refuted only if its most favourable end is.
        near = min(claimed, key=lambda v: abs(v - c["spearman"])) if claimed and not missing(c["spearman"]) \
            else math.nan
        rows.append(_row("Fisher potential ranks nets (Spearman ρ with error < 0)",
                         f"{fmt_budget(c['budget'])}, k={c['k']}", c["spearman"], c["spearman_lo"],
                         c["spearman_hi"], c["n"], c["spearman_p"], text, paper_rho=near,
                         p_paper=spearman_p_against(c["spearman"], near, c["n"]) if claimed else math.nan,
                         ceiling=c["ceiling"]))
    return rows


def _pick_vs_random_rows(runs, floor: float) -> list[dict]:
    rows = []
    random = group_runs([r for r in runs if r.method == "random"], lambda r: r.budget)
    picks = group_runs([r for r in runs if r.method == "blockswap"], lambda r: r.budget)
    for b in sorted(set(random) & set(picks)):
        # One error per net (a net trained with several seeds counts once, by its mean).
        errors = np.array(list(error_by_net(random[b]).values()))
        pick = [r.error for r in _same_teachers(picks[b], random[b])]
        if not pick:
            continue
        d, lo, hi = difference_ci(pick, errors, single_std=floor)  # one pick run varies by the noise floor
        beaten = float(np.mean(errors > np.mean(pick)))
        row = _row("The Fisher pick beats the random nets' mean", fmt_budget(b), d, lo, hi, len(pick) + len(errors),
                   difference_p(pick, errors, single_std=floor))
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
        d, lo, hi, n, p = _compare(picks[b], best, floor)
        single, curve = paper.figure2(profile, b) or {}, paper.samples_curve(profile, b) or {}
        text = (f"{curve[max(curve)]:.2f} vs {single['single_blocktype_error']:.2f} (§4.3)"
                if curve and single.get("single_blocktype_error") else "—")
        rows.append(_row("Mixed blocks beat the best single blocktype at equal budget",
                         f"{fmt_budget(b)}: BlockSwap − {block}", d, lo, hi, n, p, text))
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
        d, lo, hi, n, p = _compare(picks[b], scaled, floor)
        rows.append(_row("BlockSwap beats depth/width scaling with no more params",
                         f"BlockSwap {fmt_budget(b)} − {model} ({size / 1e3:.1f}K)", d, lo, hi, n, p))
    return rows


def _distillation_rows(runs, floor) -> list[dict]:
    rows = []
    for taught, alone, what, signal in (("blockswap", "blockswap_scratch", "BlockSwap pick", "AT"),
                                        ("moonshine", "moonshine_scratch", "Moonshine", "AT"),
                                        ("moonshine_kd", "moonshine_scratch", "Moonshine", "KD")):
        a = group_runs([r for r in runs if r.method == taught], lambda r: (r.budget, r.block))
        s = group_runs([r for r in runs if r.method == alone], lambda r: (r.budget, r.block))
        for key in sorted(set(a) & set(s), key=str):
            d, lo, hi, n, p = _compare(a[key], s[key], floor)
            name = f"{what} {fmt_budget(key[0]) if key[0] else ''} {key[1] or ''}".strip()
            rows.append(_row("Distillation beats training the same student without a teacher",
                             f"{name}: {signal} − no teacher", d, lo, hi, n, p,
                             "Moonshine: AT and KD beat training alone" if what == "Moonshine" else "—"))
    return rows


def _samples_rows(runs, profile) -> list[dict]:
    rows = []
    for b, rs in group_runs([r for r in runs if r.method == "samples"], lambda r: r.budget).items():
        by_n = group_runs(rs, lambda r: r.samples)
        if len(by_n) < 2:
            continue
        few, many = min(by_n), max(by_n)
        a, b_ = [r.error for r in by_n[many]], [r.error for r in by_n[few]]
        d, lo, hi = difference_ci(a, b_)
        curve = paper.samples_curve(profile, b) or {}
        text = (f"{curve[max(curve)]:.2f} after {max(curve)} vs {curve[min(curve)]:.2f} after {min(curve)} (§4.3)"
                if curve else "—")
        rows.append(_row("More samples find a better net", f"{fmt_budget(b)}: {many} − {few} samples", d, lo, hi,
                         len(by_n[many]) + len(by_n[few]), difference_p(a, b_), text))
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
    _adjust(records)
    notes = [f"Noise floor: the same net trained with several seeds differs by a pooled std of {fmt(floor)} "
             f"points ({nets} nets); an effect smaller than that needs many runs to show."] if nets else []
    return Report(frame_of(records, ints=("n", "claimed")), _table(records, notes), {}, notes)


FAMILY_ALPHA = 1 - LEVEL  # the family-wise error Holm's method holds the claims table to


def _adjust(records: list[dict]) -> None:
    """Holm over every test of the table (each claim, and each Table 1 row's test of the paper's ρ), then
    each row's verdict and its reason."""
    adjusted = holm([r["p"] for r in records] + [r["p_paper"] for r in records])
    for r, p, p_paper in zip(records, adjusted, adjusted[len(records):]):
        r["p_holm"], r["p_paper_holm"] = p, p_paper
        r["verdict"], r["why"] = _verdict(r)


def _verdict(r: dict) -> tuple[str, str]:
    if missing(r["estimate"]):
        return "not run", ""
    if missing(r["p_holm"]):
        return "inconclusive (too few runs)", "no interval"
    side = r["claimed"] * r["estimate"] > 0
    weaker = r["claimed"] * (r["estimate"] - r["paper_rho"]) < 0  # nearer 0 (or beyond) than the paper's ρ
    if weaker and not missing(r["p_paper_holm"]) and r["p_paper_holm"] < FAMILY_ALPHA:
        what = "on the claimed side" if side and r["p_holm"] < FAMILY_ALPHA else "not shown ≠ 0"
        return "contradicts the paper", f"ρ ≠ paper's {r['paper_rho']:.2f} (Holm p {_p(r['p_paper_holm'])}); {what}"
    if r["p_holm"] < FAMILY_ALPHA:
        return ("supported" if side else "not supported (the reverse)"), f"Holm p {_p(r['p_holm'])}"
    if not missing(r["ceiling"]) and not missing(r["paper_rho"]) and r["ceiling"] < abs(r["paper_rho"]):
        return "inconclusive", f"ceiling: seed noise allows |ρ| ≤ {fmt(r['ceiling'])}"
    return "inconclusive", f"sample size: Holm p {_p(r['p_holm'])}"


def _p(p: float) -> str:
    return "—" if missing(p) else f"{p:.2g}" if p >= 0.001 else "< 0.001"


def _table(records, notes) -> Table:
    rows = [[r["claim"], r["setting"], r["paper"],
             f"{fmt(r['estimate'])} [{fmt(r['ci_lo'])}, {fmt(r['ci_hi'])}]", str(r["n"]), _p(r["p"]),
             r["verdict"], r["why"]]
            for r in records]
    caption = ("The papers' claims on our runs: estimate [95% interval], p and verdict after Holm's correction "
               "over all the table's tests (family-wise error 5%; error differences in points, negative = the "
               "claim's winner is better; ρ for the Fisher rows)")
    return Table(["Claim", "Setting", "Paper", "Ours [95% CI]", "n", "p", "Verdict", "Why"], rows, "lllrrrll",
                 caption, notes)
