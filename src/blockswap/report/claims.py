"""The papers' claims, each tested on our runs: the paper's evidence, our estimate with its 95% interval, and
a verdict. The rows are one family of tests whose family-wise error Holm's step-down method controls at 5%:
a claim is supported only when its Holm-adjusted p is below 0.05 with the estimate on the claimed side (the
reverse side: not supported); everything else is inconclusive, with the reason. Each row's interval and p
come from one method, so that the interval excludes 0 exactly when p < 0.05: a bootstrap over the nets for
the Fisher rows (p inverted from the same draws), a t for the differences.

A Table 1 row is compared with the paper's ρ only through our seed noise: a perfect ranker of the true
errors shows on average the ceiling c of ours, not 1, so our ρ is tested against c·ρ_paper, c's uncertainty
resampled with the nets (`stats.against_paper`); it contradicts the paper only when that test, Holm-
adjusted in the same family, puts ρ on the weaker side. Without a net trained twice the ceiling is unknown
and no comparison with the paper is made. (A ρ stronger than the paper's contradicts nothing.)

Every comparison is a difference of test errors in points (negative = the claim's winner is better),
between runs taught by the same teachers: paired by seed (the student's seed, which is its teacher's when
a profile trains one student per teacher) with a paired t when three pairs or more exist, else Welch's t;
with fewer than three runs a side it has no interval and no verdict ("too few runs") and stays out of the
family. The best single blocktype is chosen on its runs of one seed and compared on its other seeds, so
that its selection does not favour it. The noise floor - the pooled std of one net trained with several
seeds, with its degrees of freedom - is shown beside the effects.
"""

from __future__ import annotations

import math

import numpy as np

from ..core import paper
from ..core.errors import BlockswapError
from .base import Report, register
from .correlation import correlations, errors_by_net
from .runs import Run, error_by_net, group_runs
from .stats import LEVEL, MIN_RUNS, against_paper, holm, mean_std, missing, t_difference
from .tables import Table, fmt, fmt_budget, frame_of


def add_arguments(parser) -> None:
    parser.add_argument("--scores", nargs="+", action="extend", metavar="budget=B,k=K:PATH",
                        help="the random nets' `blockswap score` CSVs, as for the correlation report")


PAIRED = MIN_RUNS  # seeds two groups must share to be compared pair by pair


def _row(claim: str, setting: str, test: dict, n: int, paper_text: str = "—", claimed: int = -1,
         **extra) -> dict:
    """One test: `test` its estimate, interval, p and why-not (`stats.t_difference`'s keys); `claimed` the
    side of 0 the claim puts the estimate on; `extra` a Table 1 row's paper_rho, its test against the paper
    (`stats.against_paper`) and ceiling. The verdict is given once the family is adjusted."""
    return {"claim": claim, "setting": setting, "paper": paper_text, "estimate": test["estimate"],
            "ci_lo": test["ci_lo"], "ci_hi": test["ci_hi"], "n": n, "p": test["p"], "claimed": claimed,
            "few": test.get("why", ""), "paper_rho": math.nan, "p_paper": math.nan, "delta": math.nan,
            "delta_lo": math.nan, "delta_hi": math.nan, "expected": math.nan, "ceiling": math.nan,
            "ceiling_lo": math.nan, "ceiling_hi": math.nan, **extra}


def _compare(a: list[Run], b: list[Run]) -> tuple[dict, int]:
    """(the test of mean error of `a` − mean error of `b`, n): paired by seed (a t over the pairs) when they
    share PAIRED seeds or more, else Welch's t over the runs (`stats.t_difference`: no verdict from fewer
    than three runs a side)."""
    by_seed_a, by_seed_b = _mean_by_seed(a), _mean_by_seed(b)
    common = sorted(set(by_seed_a) & set(by_seed_b))
    if len(common) >= PAIRED:
        return t_difference([by_seed_a[s] for s in common], [by_seed_b[s] for s in common], paired=True), \
            len(common)
    return t_difference([r.error for r in a], [r.error for r in b]), len(a) + len(b)


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
    records, _, loaded, _ = correlations(random, scores, profile)
    repeats = {b: errors_by_net(rs) for b, rs in group_runs(random, lambda r: r.budget).items()}
    rows = []
    for c in records:
        if c["proxy"] != "fisher":
            continue
        claimed = paper.table1_claim(profile, "fisher", c["budget"], c["k"])
        text = ("—" if not claimed else f"ρ = {claimed[0]:.3f} (Table 1)" if len(claimed) == 1 else
                f"ρ = {max(claimed):.2f} … {min(claimed):.2f} (Table 1, CIFAR-10, k={c['k']})")
        extra = {"paper_rho": math.nan, "ceiling": c["ceiling"], "ceiling_lo": c["ceiling_lo"],
                 "ceiling_hi": c["ceiling_hi"]}
        if claimed and not missing(c["spearman"]):
            # The paper's value nearest ours: the range is refuted only if its most favourable end is.
            extra["paper_rho"] = min(claimed, key=lambda v: abs(v - c["spearman"]))
            spec = next(s for s in loaded if (s.budget, s.k) == (c["budget"], c["k"]))
            df, proxies, ids = loaded[spec]
            x = df.loc[ids, proxies["fisher"]].to_numpy(dtype=float)
            keep = np.isfinite(x)
            nets = [repeats[c["budget"]][i] for i, k in zip(ids, keep) if k]
            extra.update(against_paper(x[keep], nets, extra["paper_rho"]))
        test = {"estimate": c["spearman"], "ci_lo": c["spearman_lo"], "ci_hi": c["spearman_hi"],
                "p": c["spearman_p"]}
        rows.append(_row("Fisher potential ranks nets (Spearman ρ with error < 0)",
                         f"{fmt_budget(c['budget'])}, k={c['k']}", test, c["n"], text, **extra))
    return rows


def _pick_vs_random_rows(runs) -> list[dict]:
    rows = []
    random = group_runs([r for r in runs if r.method == "random"], lambda r: r.budget)
    picks = group_runs([r for r in runs if r.method == "blockswap"], lambda r: r.budget)
    for b in sorted(set(random) & set(picks)):
        # One error per net (a net trained with several seeds counts once, by its mean).
        errors = np.array(list(error_by_net(random[b]).values()))
        pick = [r.error for r in _same_teachers(picks[b], random[b])]
        if not pick:
            continue
        beaten = float(np.mean(errors > np.mean(pick)))
        row = _row("The Fisher pick beats the random nets' mean", fmt_budget(b), t_difference(pick, errors),
                   len(pick) + len(errors))
        row["setting"] += f" (beats {100 * beaten:.0f}% of {len(errors)} random nets)"
        rows.append(row)
    return rows


def _pick_vs_single_rows(runs, profile) -> list[dict]:
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
        block, chosen_on, held_out = _best_single(at_b)
        test, n = _compare(picks[b], held_out)
        if not held_out:  # the estimate from the runs that chose it, and no verdict
            test = {**t_difference([r.error for r in picks[b]], [r.error for r in at_b[block]]),
                    "ci_lo": math.nan, "ci_hi": math.nan, "p": math.nan,
                    "why": f"too few runs ({len(picks[b])} vs 0 besides those that chose it)"}
            n = len(picks[b]) + len(at_b[block])
        single, curve = paper.figure2(profile, b) or {}, paper.samples_curve(profile, b) or {}
        text = (f"{curve[max(curve)]:.2f} vs {single['single_blocktype_error']:.2f} (§4.3)"
                if curve and single.get("single_blocktype_error") else "—")
        rows.append(_row("Mixed blocks beat the best single blocktype at equal budget",
                         f"{fmt_budget(b)}: BlockSwap − {block} (chosen on seed {chosen_on})", test, n, text))
    return rows


def _best_single(at_b: dict) -> tuple[str, int, list[Run]]:
    """(the best single blocktype, the seed it was chosen on, its runs of the other seeds): the type is
    chosen on the runs of the lowest seed every type has, and compared on the rest, so that the errors
    that chose it are not those that test it (chosen and tested on the same runs, with no true difference,
    "the reverse" came out 7-16% of the time for 3-8 types)."""
    seed_of = lambda r: -1 if r.seed is None else r.seed  # noqa: E731
    chosen_on = min(set.intersection(*({seed_of(r) for r in rs} for rs in at_b.values())), default=None)
    if chosen_on is None:  # no seed in common: chosen on all the runs, its comparison left without runs
        block = min(at_b, key=lambda k: mean_std(r.error for r in at_b[k])[0])
        return block, -1, []
    block = min(at_b, key=lambda k: mean_std(r.error for r in at_b[k] if seed_of(r) == chosen_on)[0])
    return block, chosen_on, [r for r in at_b[block] if seed_of(r) != chosen_on]


def _pick_vs_scaled_rows(runs) -> list[dict]:
    rows = []
    picks = group_runs([r for r in runs if r.method == "blockswap"], lambda r: r.budget)
    for model, scaled in group_runs([r for r in runs if r.method == "scaled"], lambda r: r.model).items():
        size = np.mean([r.params for r in scaled])
        fitting = [b for b, rs in picks.items() if np.mean([r.params for r in rs]) <= size]
        if not fitting:
            continue
        b = max(fitting)  # the largest BlockSwap net with no more params than the scaled one
        rows.append(_row("BlockSwap beats depth/width scaling with no more params",
                         f"BlockSwap {fmt_budget(b)} − {model} ({size / 1e3:.1f}K)", *_compare(picks[b], scaled)))
    return rows


def _distillation_rows(runs) -> list[dict]:
    rows = []
    for taught, alone, what, signal in (("blockswap", "blockswap_scratch", "BlockSwap pick", "AT"),
                                        ("moonshine", "moonshine_scratch", "Moonshine", "AT"),
                                        ("moonshine_kd", "moonshine_scratch", "Moonshine", "KD")):
        a = group_runs([r for r in runs if r.method == taught], lambda r: (r.budget, r.block))
        s = group_runs([r for r in runs if r.method == alone], lambda r: (r.budget, r.block))
        for key in sorted(set(a) & set(s), key=str):
            name = f"{what} {fmt_budget(key[0]) if key[0] else ''} {key[1] or ''}".strip()
            rows.append(_row("Distillation beats training the same student without a teacher",
                             f"{name}: {signal} − no teacher", *_compare(a[key], s[key]),
                             "Moonshine: AT and KD beat training alone" if what == "Moonshine" else "—"))
    return rows


def _samples_rows(runs, profile) -> list[dict]:
    rows = []
    for b, rs in group_runs([r for r in runs if r.method == "samples"], lambda r: r.budget).items():
        by_n = group_runs(rs, lambda r: r.samples)
        if len(by_n) < 2:
            continue
        few, many = min(by_n), max(by_n)
        curve = paper.samples_curve(profile, b) or {}
        text = (f"{curve[max(curve)]:.2f} after {max(curve)} vs {curve[min(curve)]:.2f} after {min(curve)} (§4.3)"
                if curve else "—")
        rows.append(_row("More samples find a better net", f"{fmt_budget(b)}: {many} − {few} samples",
                         t_difference([r.error for r in by_n[many]], [r.error for r in by_n[few]]),
                         len(by_n[many]) + len(by_n[few]), text))
    return rows


def noise_floor(runs: list[Run]) -> tuple[float, int, int]:
    """Pooled sample std of the same genotype (same method and id) trained with several seeds, the number of
    such nets and its degrees of freedom (runs − nets: 2 nets × 3 seeds give 4, and a std from 4 degrees of
    freedom is itself uncertain by about ±35%)."""
    groups = [rs for rs in group_runs(runs, lambda r: (r.method, r.id)).values() if len(rs) >= 2]
    if not groups:
        return math.nan, 0, 0
    pooled = sum((len(rs) - 1) * np.var([r.error for r in rs], ddof=1) for rs in groups)
    df = sum(len(rs) - 1 for rs in groups)
    return float(math.sqrt(pooled / df)), len(groups), df


@register("claims", help="the papers' claims: the paper's evidence, ours with a 95% interval, and a verdict",
          table="claims", figures=(), add_arguments=add_arguments)
def build(runs: list[Run], profile: str | None, *, scores=None) -> Report:
    """One row per testable claim and setting; rows for claims without the runs they need are left out."""
    records = (_fisher_rows(runs, scores, profile) + _pick_vs_random_rows(runs) + _pick_vs_single_rows(runs, profile)
               + _pick_vs_scaled_rows(runs) + _distillation_rows(runs) + _samples_rows(runs, profile))
    if not records:
        raise BlockswapError(f"no claim can be tested on these {len(runs)} metrics files: the claims compare "
                             "BlockSwap students (labels.method blockswap) with random nets, Moonshine students, "
                             "scaled nets and no-teacher controls of the same budget, or picks after n samples")
    family = _adjust(records)
    floor, nets, df = noise_floor(runs)
    notes = [f"Noise floor: the same net trained with several seeds differs by a pooled std of {fmt(floor)} "
             f"points ({nets} nets, {df} degrees of freedom); an effect smaller than that needs many runs to "
             "show."] if nets else []
    if any(not missing(r["paper_rho"]) for r in records):
        notes.append("Fisher rows against the paper: our ρ is tested against the paper's ρ times our ceiling "
                     "(what a ranker as good as the paper's would show through our seed noise), the ceiling's "
                     "uncertainty resampled with the nets. The paper's ρ is taken as measured; its nets were "
                     "trained once too, so its own noise weakens it, and a contradiction shown here would hold "
                     "against its noise-free value a fortiori. The paper's values are CIFAR-10 at its budgets.")
    return Report(frame_of(records, ints=("n", "claimed")), _table(records, notes, family), {}, notes)


FAMILY_ALPHA = 1 - LEVEL  # the family-wise error Holm's method holds the claims table to


def _adjust(records: list[dict]) -> int:
    """Holm over every test of the table (each claim with a p, and each Table 1 row's test of the paper's
    ρ), then each row's verdict and its reason; returns the family's size."""
    adjusted = holm([r["p"] for r in records] + [r["p_paper"] for r in records])
    for r, p, p_paper in zip(records, adjusted, adjusted[len(records):]):
        r["p_holm"], r["p_paper_holm"] = p, p_paper
        r["verdict"], r["why"] = _verdict(r)
    return sum(not missing(p) for p in adjusted)


def _verdict(r: dict) -> tuple[str, str]:
    if missing(r["estimate"]):
        return "not run", ""
    if r["few"]:
        return ("too few runs" if r["few"].startswith("too few") else "inconclusive"), r["few"]
    side = r["claimed"] * r["estimate"] > 0
    shown = r["p_holm"] < FAMILY_ALPHA
    status = (f"Holm p {_p(r['p_holm'])}" if side or not shown else
              f"Holm p {_p(r['p_holm'])} on the reverse side")
    contradicts, versus = _versus_paper(r)
    if contradicts:
        return "contradicts the paper", f"{versus}; ρ itself: {status}"
    if shown:
        verdict = "supported" if side else "not supported (the reverse)"
    elif not missing(r["ceiling"]) and not missing(r["paper_rho"]) and r["ceiling"] < abs(r["paper_rho"]):
        verdict, status = "inconclusive", (f"ceiling: a perfect ranker would show |ρ| ≈ {fmt(r['ceiling'])} "
                                           f"[{fmt(r['ceiling_lo'])}, {fmt(r['ceiling_hi'])}]; {status}")
    else:
        verdict, status = "inconclusive", f"sample size: {status}"
    return verdict, "; ".join(t for t in (status, versus) if t)


def _versus_paper(r: dict) -> tuple[bool, str]:
    """(whether the row contradicts the paper, what its test against the paper's ρ found: '' without one)."""
    if missing(r["paper_rho"]):
        return False, ""
    if missing(r["delta"]):
        return False, "paper's ρ not compared: seed noise unmeasured (no net trained twice)"
    seen = (f"ρ − {fmt(r['ceiling'])} × paper's {r['paper_rho']:.2f} = {fmt(r['delta'])} "
            f"[{fmt(r['delta_lo'])}, {fmt(r['delta_hi'])}], Holm p {_p(r['p_paper_holm'])}")
    if r["claimed"] * r["delta"] >= 0:
        return False, f"as strong as the paper's through our noise ({seen})"
    if r["p_paper_holm"] < FAMILY_ALPHA:
        return True, f"weaker than the paper's beyond our noise ({seen})"
    return False, f"weaker than the paper's, not distinguishable from attenuation ({seen})"


def _p(p: float) -> str:
    return "—" if missing(p) else f"{p:.2g}" if p >= 0.001 else "< 0.001"


def _table(records, notes, family: int) -> Table:
    rows = [[r["claim"], r["setting"], r["paper"],
             f"{fmt(r['estimate'])} [{fmt(r['ci_lo'])}, {fmt(r['ci_hi'])}]", str(r["n"]), _p(r["p"]),
             r["verdict"], r["why"]]
            for r in records]
    caption = (f"The papers' claims on our runs: estimate [95% interval], p and verdict after Holm's correction "
               f"over the table's {family} tests (family-wise error 5%; rows with too few runs are not tested; "
               "error differences in points, negative = the claim's winner is better; ρ for the Fisher rows)")
    return Table(["Claim", "Setting", "Paper", "Ours [95% CI]", "n", "p", "Verdict", "Why"], rows, "lllrrrll",
                 caption, notes)
