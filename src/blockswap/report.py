"""`blockswap report <what>`: the papers' tables and figures from run metrics, the paper's numbers beside ours.

Four reports, each a `build_*` function returning a `Report` (a DataFrame for the CSV, a formatted table
for Markdown/LaTeX, matplotlib Figures) that `Report.write` saves atomically, tables as NAME.{csv,md,tex}
and figures as STEM.{png,pdf}:
  results      Table 2/3: main; Pareto fronts pareto_params, pareto_ops (error vs params / vs Ops or MACs)
  correlation  Table 1: proxy_correlation (Spearman ρ, Kendall τ of each proxy with trained error);
               scatter fisher_vs_error (<proxy>_vs_error), one panel per budget
  density      Figure 2: density, random nets' error density with the single-blocktype nets marked
  samples      §4.3: samples, error of the top-ranked candidate vs the number of samples
Errors are top-1 test error in percent; std is the sample std (ddof=1), NaN for a single run.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import paper
from .errors import BlockswapError
from .files import atomic_path, read_json, write_text
from .proxies import SCORE_COLUMNS

METHODS = ("teacher", "scaled", "mbconv", "moonshine", "blockswap", "random", "samples")
METHOD_LABEL = {"teacher": "Teacher", "scaled": "Scaled WRN/ResNet", "mbconv": "MBConv6",
                "moonshine": "Moonshine (single block type)", "blockswap": "BlockSwap", "random": "Random mix",
                "samples": "BlockSwap pick (n samples)"}
# One colour and marker per method, fixed so every figure agrees.
STYLE = {"teacher": ("black", "*"), "scaled": ("tab:gray", "s"), "mbconv": ("tab:purple", "D"),
         "moonshine": ("tab:green", "^"), "blockswap": ("tab:red", "o"), "random": ("tab:blue", "."),
         "samples": ("tab:orange", "v")}
# Proxy signs when blockswap.proxies cannot say (higher sign·value = better).
LOCAL_SIGNS = {"fisher": 1, "grad_norm": 1, "l2_norm": 1, "snip": 1, "synflow": 1, "naswot": 1, "params": 1,
               "train_accuracy": 1, "train_loss": -1}
TABLE1_ORDER = ("train_accuracy", "l2_norm", "grad_norm", "fisher")


# ------------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class Run:
    """One trained network's metrics file, reduced to what the reports use."""
    path: str
    method: str
    budget: int | None
    model: str | None
    block: str | None
    samples: int | None
    id: str
    blocks: tuple[str, ...]
    params: int
    ops: int
    macs: int | None
    error: float
    top5: float | None


def parse_count(value) -> int:
    """200000, '200000', '200K', '0.2M', '8.1M' → int; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().upper()
        scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], 1.0)
        number = float(text[:-1] if scale != 1.0 else text) * scale
    if not math.isfinite(number) or number <= 0:
        raise ValueError(value)
    return round(number)


def _number(d: dict, key: str, path: str, required: bool = True) -> float | None:
    v = d.get(key)
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BlockswapError(f"{path}: '{key}' must be a finite number, got {v!r}")
    return v


def load_run(path: str) -> Run:
    d = read_json(path, "metrics file")
    if not isinstance(d, dict):
        raise BlockswapError(f"{path}: expected a JSON object of run metrics")
    labels = d.get("labels")
    if not isinstance(labels, dict):
        raise BlockswapError(f"{path}: no 'labels' object (needs at least labels.method)")
    method = labels.get("method")
    if method not in METHODS:
        raise BlockswapError(f"{path}: labels.method is {method!r}; expected one of {', '.join(METHODS)}")

    def count_label(key: str) -> int | None:
        if labels.get(key) in (None, ""):
            return None
        try:
            return parse_count(labels[key])
        except ValueError:
            raise BlockswapError(f"{path}: labels.{key} must be a positive count, got {labels[key]!r}") from None

    genotype = d.get("genotype") if isinstance(d.get("genotype"), dict) else {}
    run_id = d.get("genotype_id")
    if not isinstance(run_id, str) or not run_id:
        raise BlockswapError(f"{path}: no 'genotype_id' (expected a `blockswap train`/`distill` metrics file)")
    return Run(
        path=str(path), method=method, budget=count_label("budget"),
        model=labels.get("model") or genotype.get("model"), block=labels.get("block") or None,
        samples=count_label("samples"), id=run_id, blocks=tuple(genotype.get("blocks") or ()),
        params=int(_number(d, "params", path)), ops=int(_number(d, "ops", path)),
        macs=None if d.get("macs") is None else int(_number(d, "macs", path)),
        error=float(_number(d, "test_top1_error", path)), top5=_number(d, "test_top5_error", path, required=False))


def load_runs(paths: list[str]) -> list[Run]:
    if not paths:
        raise BlockswapError("no metrics files given (--metrics)")
    return [load_run(p) for p in paths]


def select(runs: list[Run], methods: tuple[str, ...], what: str) -> list[Run]:
    chosen = [r for r in runs if r.method in methods]
    if not chosen:
        raise BlockswapError(f"{what}: none of the {len(runs)} metrics files has labels.method "
                             f"{' or '.join(methods)}")
    return chosen


# ----------------------------------------------------------------------------------------- numbers
def mean_std(values) -> tuple[float, float]:
    """Mean and sample std (ddof=1); std NaN for a single value, both NaN for none."""
    a = np.asarray([v for v in values if v is not None], dtype=float)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt(x, digits: int = 2) -> str:
    return "—" if missing(x) else f"{x:.{digits}f}"


def fmt_pm(mean, std, digits: int = 2) -> str:
    return fmt(mean, digits) if missing(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_budget(b) -> str:
    if missing(b):
        return "—"
    return f"{b / 1e6:g}M" if b >= 1e6 else f"{b / 1e3:g}K" if b >= 1e3 else f"{b:g}"


def fmt_scaled(x, scale: float, digits: int) -> str:
    return "—" if missing(x) else f"{x / scale:.{digits}f}"


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
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about small-sample p-values; the statistics hold
        s, k = stats.spearmanr(x, y), stats.kendalltau(x, y)
    out.update(spearman=float(s.statistic), spearman_p=float(s.pvalue), kendall=float(k.statistic),
               kendall_p=float(k.pvalue))
    return out


def proxy_sign(name: str) -> int | None:
    """+1/-1 from the proxy registry, else the local map; None when unknown."""
    try:
        from .proxies import get_proxy

        return get_proxy(name).sign
    except (ImportError, OSError, BlockswapError):  # no torch, or a proxy the registry lacks
        return LOCAL_SIGNS.get(name)


# ---------------------------------------------------------------------------------- table output
@dataclass
class Table:
    """A formatted table: cells are display strings (Unicode ±, —, −), turned into Markdown or LaTeX."""
    header: list[str]
    rows: list[list[str]]
    align: str  # one of l/r/c per column
    caption: str
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        cell = lambda s: str(s).replace("|", r"\|")  # noqa: E731
        rule = {"l": ":---", "r": "---:", "c": ":---:"}
        lines = [f"**{self.caption}**", "",
                 "| " + " | ".join(map(cell, self.header)) + " |",
                 "|" + "|".join(rule[a] for a in self.align) + "|"]
        lines += ["| " + " | ".join(map(cell, row)) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def latex(self, label: str) -> str:
        row = lambda cells: " & ".join(latex_text(c) for c in cells) + r" \\"  # noqa: E731
        lines = [r"% Written by `blockswap report`; needs \usepackage{booktabs}.",
                 r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_text(self.caption)}}}",
                 rf"\label{{tab:{label}}}", rf"\begin{{tabular}}{{{self.align}}}", r"\toprule",
                 row(self.header), r"\midrule", *map(row, self.rows), r"\bottomrule", r"\end{tabular}"]
        if self.notes:
            lines += [r"\par\smallskip{\footnotesize", *[latex_text(n) + r"\par" for n in self.notes], "}"]
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"±": r"$\pm$", "—": "--", "–": "--", "−": "$-$", "ρ": r"$\rho$", "τ": r"$\tau$",
                  "≈": r"$\approx$", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$", "·": r"$\cdot$",
                  "<": "$<$", ">": "$>$", "…": r"\ldots{}", "`": ""}


def latex_text(text) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    out = re.sub(r"(?<![\w.])-(?=\d)", "$-$", out)  # a minus sign, not a hyphen
    return "".join(_LATEX_UNICODE.get(ch, ch) for ch in out)


@dataclass
class Report:
    name: str
    frame: "pd.DataFrame"  # noqa: F821 - the CSV, plain numbers
    table: Table
    figures: dict  # file stem → matplotlib Figure
    notes: list[str] = field(default_factory=list)

    def write(self, out_dir: str | Path, figure_dir: str | Path | None = None) -> list[str]:
        out = Path(out_dir)
        figures = Path(figure_dir) if figure_dir else out
        written = [out / f"{self.name}.csv", out / f"{self.name}.md", out / f"{self.name}.tex"]
        write_text(written[0], self.frame.to_csv(index=False, na_rep=""))
        write_text(written[1], self.table.markdown())
        write_text(written[2], self.table.latex(self.name))
        for stem, fig in self.figures.items():
            written += save_figure(fig, figures / stem)
        return [str(p) for p in written]


def save_figure(fig, stem: Path) -> list[Path]:
    """PNG and PDF, each atomically; metadata without dates so reruns give the same files."""
    paths = []
    for fmt_name, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        path = stem.with_name(f"{stem.name}.{fmt_name}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt_name, dpi=150, bbox_inches="tight", metadata=meta)
        paths.append(path)
    return paths


def profile_note(profile: str) -> str:
    """' (cifar10)' when a paper profile's numbers are beside ours, else nothing."""
    return f" ({profile})" if profile and profile != "none" else ""


def new_figure(panels: int = 1, width: float = 6.4, height: float = 4.4):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(width * panels if panels > 1 else width, height), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def frame_of(records: list[dict], ints: tuple[str, ...] = ()):
    import pandas as pd

    df = pd.DataFrame.from_records(records)
    for col in ints:  # nullable ints: CSV shows 200000, not 200000.0, and an empty cell for none
        if col in df:
            df[col] = df[col].astype("Int64")
    return df


def count_round(x):
    return None if missing(x) else round(x)


# --------------------------------------------------------------------------------------- results
def group_runs(runs: list[Run], key) -> dict:
    groups: dict = {}
    for r in runs:
        groups.setdefault(key(r), []).append(r)
    return groups


def _sort_key(method, budget, model, block, samples):
    return (METHODS.index(method), -(budget or 0), model or "", block or "", samples or 0)


def build_results(runs: list[Run], profile: str | None, name: str = "main") -> Report:
    """One row per (method, budget, model, block, samples): error mean ± std, counts, the paper's row."""
    profile = paper.normalise_profile(profile)
    cost = paper.COST.get(profile, "ops")
    with_paper = paper.has_profile(profile)
    if cost == "macs":
        lacking = [r.path for r in runs if r.macs is None]
        if lacking:
            raise BlockswapError(f"{lacking[0]}: no 'macs' (the {profile} table counts MACs)")
    groups = group_runs(runs, lambda r: (r.method, r.budget, r.model, r.block, r.samples))
    records, matched = [], set()
    for key in sorted(groups, key=lambda k: _sort_key(*k)):
        method, budget, model, block, samples = key
        rs = groups[key]
        err, err_sd = mean_std(r.error for r in rs)
        top5, top5_sd = mean_std(r.top5 for r in rs)
        rec = {"method": method, "budget": budget, "model": model, "block": block, "samples": samples,
               "n": len(rs), "error_mean": err, "error_std": err_sd, "top5_mean": top5, "top5_std": top5_sd,
               "params": count_round(np.mean([r.params for r in rs])),
               "ops": count_round(np.mean([r.ops for r in rs])),
               "macs": count_round(np.mean([r.macs for r in rs])) if all(r.macs is not None for r in rs) else None}
        if with_paper:
            # Without a budget label the net's own size stands in for it.
            row = paper.lookup(profile, method, budget=budget if budget else rec["params"], model=model,
                               block=block)
            if row:
                matched.add(row)
            rec.update(paper_row=row and row.label, paper_source=row and row.source,
                       paper_error=row and row.error, paper_error_std=row and row.error_std,
                       paper_top5=row and row.top5, paper_params=row and row.params,
                       **{f"paper_{cost}": row and getattr(row, cost)}, error_minus_paper=row and err - row.error)
        records.append(rec)
    frame = frame_of(records, ints=("budget", "samples", "n", "params", "ops", "macs", "paper_params",
                                    "paper_ops", "paper_macs"))
    notes = []
    if with_paper:
        unmatched = [r.label for r in paper.ROWS[profile] if r not in matched]
        if unmatched:
            notes.append(f"Paper rows with no run here: {', '.join(unmatched)}.")
    table = _results_table(records, profile, cost, with_paper, notes)
    prefix = "" if name == "main" else f"{name}_"
    figures = {f"{prefix}pareto_params": pareto_figure(records, "params", profile),
               f"{prefix}pareto_ops": pareto_figure(records, cost, profile)}
    return Report(name, frame, table, figures, notes)


def _units(profile: str, cost: str) -> dict:
    if profile == "imagenet":
        return {"params": (1e6, 1, "Params (M)"), cost: (1e9, 3, "MACs (G)")}
    return {"params": (1e3, 1, "Params (K)"), cost: (1e6, 1, "MACs (M)" if cost == "macs" else "Ops (M)")}


def _results_table(records, profile, cost, with_paper, notes) -> Table:
    units = _units(profile, cost)
    show_block = any(r["block"] for r in records)
    show_samples = any(r["samples"] for r in records)
    show_top5 = profile == "imagenet"
    header = ["Method", "Budget", "Model"] + ["Block"] * show_block + ["Samples"] * show_samples + ["n"]
    header += ["Error (%)"] + ["Top-5 (%)"] * show_top5 + [units["params"][2], units[cost][2]]
    if with_paper:
        header += ["Paper row", "Paper error (%)"] + ["Paper top-5 (%)"] * show_top5
        header += [f"Paper {units['params'][2]}", f"Paper {units[cost][2]}"]
    rows = []
    for r in records:
        cells = [METHOD_LABEL[r["method"]], fmt_budget(r["budget"]), r["model"] or "—"]
        cells += [r["block"] or "—"] * show_block + [str(r["samples"] or "—")] * show_samples + [str(r["n"])]
        cells += [fmt_pm(r["error_mean"], r["error_std"])] + [fmt_pm(r["top5_mean"], r["top5_std"])] * show_top5
        cells += [fmt_scaled(r["params"], *units["params"][:2]), fmt_scaled(r[cost], *units[cost][:2])]
        if with_paper:
            cells += [r["paper_row"] or "—", fmt_pm(r["paper_error"], r["paper_error_std"])]
            cells += [fmt(r["paper_top5"])] * show_top5
            cells += [fmt_scaled(r["paper_params"], *units["params"][:2]),
                      fmt_scaled(r[f"paper_{cost}"], *units[cost][:2])]
        rows.append(cells)
    align = "lll" + "l" * show_block + "r" * (len(header) - 3 - show_block)
    if with_paper:  # the paper-row name column is text
        i = header.index("Paper row")
        align = align[:i] + "l" + align[i + 1:]
    source = {"cifar10": "Table 2", "imagenet": "Table 3"}.get(profile)
    caption = (f"Test error (top-1, %), mean ± std over n runs{profile_note(profile)}"
               + (f"; paper: {source} of {paper.SOURCE}" if source else ""))
    return Table(header, rows, align, caption, notes)


def log_axis(ax) -> None:
    """Log x with 1-2-3-5 ticks in engineering notation (100k, 200k, 300k, 500k, 1M): labelled at any range."""
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


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


# ----------------------------------------------------------------------------------- correlation
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

    try:
        df = pd.read_csv(path, dtype={"id": str})
    except FileNotFoundError:
        raise BlockswapError(f"{path}: scores file not found") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise BlockswapError(f"{path}: not a readable scores CSV ({str(e).splitlines()[0]})") from None
    if "id" not in df.columns:
        raise BlockswapError(f"{path}: no 'id' column (expected the CSV of `blockswap score`)")
    # `blockswap score` names a proxy that clashes with a fixed column `<name>_proxy`.
    proxies = {(c[:-len("_proxy")] if c.endswith("_proxy") else c): c
               for c in df.columns if c not in SCORE_COLUMNS}
    if not proxies:
        raise BlockswapError(f"{path}: no proxy columns besides {', '.join(SCORE_COLUMNS)}")
    for col in proxies.values():
        try:
            df[col] = pd.to_numeric(df[col])
        except (ValueError, TypeError):
            raise BlockswapError(f"{path}: column {col!r} is not numeric") from None
    if df.empty:
        raise BlockswapError(f"{path}: no candidates")
    return df.drop_duplicates("id").set_index("id"), proxies


def build_correlation(specs: list[ScoresSpec], runs: list[Run], profile: str | None, name: str = "proxy_correlation",
                      scatter_proxy: str = "fisher", scatter_k: int | None = None) -> Report:
    """Table 1: ρ and τ of each proxy's raw value with the trained error of the same genotype id."""
    if not specs:
        raise BlockswapError("no --scores files given")
    if len({(s.budget, s.k) for s in specs}) != len(specs):
        raise BlockswapError("two --scores files for the same budget and k")
    runs = select(runs, ("random",), "correlation")
    error_of = {i: mean_std(r.error for r in rs)[0] for i, rs in group_runs(runs, lambda r: r.id).items()}
    records, notes, loaded = [], [], {}
    for spec in sorted(specs, key=lambda s: (s.budget, s.k)):
        df, proxies = load_scores(spec.path)
        ids = [i for i in df.index if i in error_of]
        if not ids:
            raise BlockswapError(f"{spec.path}: none of its {len(df)} genotype ids has a trained random net "
                                 f"among the metrics files")
        loaded[spec] = (df, proxies, ids)
        errors = [error_of[i] for i in ids]
        for proxy, col in proxies.items():
            c = correlate(df.loc[ids, col].to_numpy(dtype=float), errors)
            if c["note"]:
                notes.append(f"{proxy}, {fmt_budget(spec.budget)}, k={spec.k}: {c['note']}.")
            records.append({"proxy": proxy, "sign": proxy_sign(proxy), "budget": spec.budget, "k": spec.k,
                            **c, "paper_spearman": paper.table1_rho(profile, proxy, spec.budget, spec.k)})
    frame = frame_of(records, ints=("sign", "budget", "k", "n"))
    table = _correlation_table(records, profile, notes)
    fig = scatter_figure(loaded, error_of, scatter_proxy, scatter_k, profile)
    return Report(name, frame, table, {f"{scatter_proxy}_vs_error": fig}, notes)


def _proxy_order(names) -> list[str]:
    names = list(dict.fromkeys(names))
    return [p for p in TABLE1_ORDER if p in names] + [p for p in names if p not in TABLE1_ORDER]


def _correlation_table(records, profile, notes) -> Table:
    columns = sorted({(r["budget"], r["k"]) for r in records})
    cell = {(r["proxy"], r["budget"], r["k"]): r for r in records}
    rows = []
    for proxy in _proxy_order(r["proxy"] for r in records):
        sign = cell[next((proxy, b, k) for b, k in columns if (proxy, b, k) in cell)]["sign"]
        cells = [f"{proxy} ({'+' if sign == 1 else '−' if sign == -1 else '?'})"]
        for b, k in columns:
            r = cell.get((proxy, b, k))
            if r is None:
                cells.append("—")
                continue
            text = f"{fmt(r['spearman'])} / {fmt(r['kendall'])}"
            if not missing(r["paper_spearman"]):
                text += f" ({r['paper_spearman']:.3f})"
            cells.append(text)
        rows.append(cells)
    header = ["Proxy (sign)"] + [f"{fmt_budget(b)}, k={k}" for b, k in columns]
    has_paper = any(not missing(r["paper_spearman"]) for r in records)
    caption = ("Spearman ρ / Kendall τ of each proxy's raw value with trained test error, per budget and "
               "k minibatches" + (" (paper's ρ, Table 1, in brackets)" if has_paper else ""))
    lead = ["Sign: + means higher is better, so a good proxy has ρ < 0 with error (− : the reverse)."]
    return Table(header, rows, "l" + "r" * len(columns), caption, lead + notes)


def scatter_figure(loaded: dict, error_of: dict, proxy: str, k: int | None, profile):
    """Proxy vs trained error, one panel per budget (k: the given one, else the smallest), ρ/τ in titles."""
    budgets = sorted({s.budget for s in loaded})
    fig, axes = new_figure(len(budgets), width=4.6, height=4.0)
    sign = proxy_sign(proxy) or 1
    for ax, budget in zip(axes, budgets):
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
        x, y = x[ok], y[ok]
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


# --------------------------------------------------------------------------------------- density
SINGLE = ("moonshine", "mbconv")  # nets of one block type


def _budget_near(params: int, budgets) -> int | None:
    hits = [b for b in budgets if paper.near(params, b)]
    return min(hits, key=lambda b: abs(params - b)) if hits else None


def _net_label(r: Run) -> str:
    if r.method == "blockswap":
        return "BlockSwap pick"
    block = r.block or (r.blocks[0] if len(set(r.blocks)) == 1 else None)
    return block or r.model or r.method


def build_density(runs: list[Run], profile: str | None, name: str = "density") -> Report:
    """Figure 2: the random nets' error density per budget, single-blocktype nets (and BlockSwap) marked."""
    randoms = select(runs, ("random",), "density")
    unlabelled = [r.path for r in randoms if r.budget is None]
    if unlabelled:
        raise BlockswapError(f"{unlabelled[0]}: a random net needs labels.budget")
    by_budget = group_runs(randoms, lambda r: r.budget)
    budgets = sorted(by_budget)
    notes, marked = [], {}
    for r in runs:
        if r.method not in SINGLE + ("blockswap",):
            continue
        b = r.budget if r.budget in by_budget else _budget_near(r.budget or r.params, budgets)
        if b is None:
            notes.append(f"{r.path}: no random nets within 2.5% of its budget; not shown.")
            continue
        marked.setdefault(b, {}).setdefault((r.method, _net_label(r)), []).append(r)

    records = []
    for b in budgets:
        rand = np.array([r.error for r in by_budget[b]])
        rmean, rstd = mean_std(rand)
        fig2 = paper.figure2(profile, b) or {}
        base = {"budget": b, "random_mean": rmean, "random_std": rstd, "random_n": len(rand),
                "paper_single_blocktype": fig2.get("single_blocktype_error"),
                "paper_single_blocktype_block": fig2.get("single_blocktype_block"),
                "paper_random_mean": fig2.get("random_mean")}
        nets = marked.get(b, {})
        if not nets:
            records.append({**base, "net": None, "method": None, "n": 0, "error": math.nan, "error_std": math.nan,
                            "beaten_fraction": math.nan})
        for (method, label), rs in sorted(nets.items(), key=lambda kv: mean_std(r.error for r in kv[1])[0]):
            err, sd = mean_std(r.error for r in rs)
            records.append({**base, "net": label, "method": method, "n": len(rs), "error": err,
                            "error_std": sd, "beaten_fraction": float(np.mean(rand > err))})
    frame = frame_of(records, ints=("budget", "random_n", "n"))
    table = _density_table(records, notes)
    return Report(name, frame, table, {name: density_figure(by_budget, records)}, notes)


def _density_table(records, notes) -> Table:
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
    lead = ["'Random nets beaten': the fraction of random nets with a strictly higher error."]
    return Table(header, rows, "lrrlrrr" + "r" * (2 * has_paper), caption, lead + notes)


def density_figure(by_budget: dict, records: list[dict]):
    """One panel per budget: histogram + KDE of random nets' errors, a vertical line per marked net."""
    from matplotlib import colormaps

    budgets = sorted(by_budget)
    fig, axes = new_figure(len(budgets), width=4.8, height=3.8)
    colours = colormaps["tab10"].colors
    for ax, b in zip(axes, budgets):
        err = np.array([r.error for r in by_budget[b]])
        *_, bars = ax.hist(err, bins="auto", density=True, color="tab:blue", alpha=0.3,
                           label=f"random nets (n={len(err)})")
        handles = [bars[0]]  # legend: the distribution (its first bar carries the label), then the nets
        if len(err) >= 3 and np.ptp(err) > 0:
            from scipy.stats import gaussian_kde

            grid = np.linspace(err.min() - np.ptp(err) * 0.2, err.max() + np.ptp(err) * 0.2, 200)
            handles += ax.plot(grid, gaussian_kde(err)(grid), color="tab:blue", label="random nets (KDE)")
        rows = [r for r in records if r["budget"] == b]
        i = 0
        for r in rows:
            if r["net"] is None:
                continue
            pick = r["method"] == "blockswap"
            handles.append(ax.axvline(r["error"], color="black" if pick else colours[(i + 1) % len(colours)],
                                      linestyle="--" if pick else "-", linewidth=1.8,
                                      label=f"{r['net']} ({r['error']:.2f}%)"))
            i += not pick
        p = rows[0]
        if not missing(p["paper_single_blocktype"]):
            block = p["paper_single_blocktype_block"]
            handles.append(ax.axvline(p["paper_single_blocktype"], color="gray", linestyle=":", linewidth=1.8,
                                      label=f"paper: {block or 'single-blocktype'} "
                                            f"({p['paper_single_blocktype']:.2f}%)"))
        ax.set_title(f"{fmt_budget(b)} params")
        ax.set_xlabel("Trained test error (%)")
        ax.set_ylabel("Density")
        ax.legend(handles=handles, fontsize="x-small")
    fig.suptitle("Random mixed-block nets vs single-blocktype nets")
    return fig


# --------------------------------------------------------------------------------------- samples
def build_samples(runs: list[Run], profile: str | None, name: str = "samples",
                  full_search: int | None = None) -> Report:
    """Error of the top-ranked candidate after n samples, per budget, mean ± std over search seeds.

    With `full_search` N, the BlockSwap students (the pick of the whole search) are the points at n = N.
    """
    if full_search is not None:
        if full_search < 1:
            raise BlockswapError(f"--full-search must be ≥ 1, got {full_search}")
        budgets = {r.budget for r in runs if r.method == "samples" and r.budget}
        # A BlockSwap student's budget joins the samples curve it is within 2.5 % of.
        runs = [replace(r, method="samples", samples=full_search,
                        budget=_budget_near(r.budget, budgets) or r.budget if r.budget else None)
                if r.method == "blockswap" else r for r in runs]
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
    has_paper = any(r["paper_error"] is not None for r in records)
    header = ["Budget", "Samples", "Runs", "Error (%)", "Params (K)"] + ["Paper error (%)"] * has_paper
    rows = [[fmt_budget(r["budget"]), str(r["samples"]), str(r["n"]), fmt_pm(r["error_mean"], r["error_std"]),
             fmt_scaled(r["params"], 1e3, 1)] + [fmt(r["paper_error"])] * has_paper for r in records]
    caption = ("Test error of the top-ranked candidate after n samples" + ("; paper: §4.3" if has_paper else ""))
    table = Table(header, rows, "lrrrr" + "r" * has_paper, caption)
    return Report(name, frame, table, {name: samples_figure(records, profile)})


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


# ------------------------------------------------------------------------------------- CLI glue
def run(what: str, metrics: list[str], profile: str, out_dir: str, figure_dir: str | None = None,
        name: str | None = None, scores: list[str] | None = None, scatter_proxy: str = "fisher",
        scatter_k: int | None = None, full_search: int | None = None) -> dict:
    """Build one report ('results', 'correlation', 'density', 'samples') and write its files."""
    runs = load_runs(metrics)
    name = name or {"results": "main", "correlation": "proxy_correlation"}.get(what, what)
    if what == "results":
        report = build_results(runs, profile, name)
    elif what == "correlation":
        report = build_correlation([parse_scores_spec(s) for s in scores or []], runs, profile, name,
                                   scatter_proxy, scatter_k)
    elif what == "density":
        report = build_density(runs, profile, name)
    elif what == "samples":
        report = build_samples(runs, profile, name, full_search)
    else:
        raise ValueError(what)
    return {"written": report.write(out_dir, figure_dir), "notes": report.notes}
