"""Tables: display-string cells (Unicode ±, —, −) as Markdown or LaTeX (booktabs); numbers → cells; frames."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from .stats import missing

TABLE_FORMATS = ("csv", "md", "tex")  # a table's files, by suffix


@dataclass
class Table:
    """A formatted table: cells are display strings, turned into Markdown or LaTeX."""
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


def fmt(x, digits: int = 2) -> str:
    return "—" if missing(x) else f"{x:.{digits}f}"


def fmt_pm(mean, std, digits: int = 2) -> str:
    return fmt(mean, digits) if missing(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_budget(b) -> str:
    if missing(b):
        return "—"
    return f"{b / 1e6:g}M" if b >= 1e6 else f"{b / 1e3:g}K" if b >= 1e3 else f"{b:g}"


def fmt_scaled(x, scale: float, digits: int) -> str:
    """x/scale to `digits` decimals; an exact count rounds half to even, as the papers print them
    (217,050 params → 217.0K, 404,250 → 404.2K), not through a binary float (which gives 217.1)."""
    if missing(x):
        return "—"
    if float(x).is_integer():
        exact = Decimal(int(x)) / Decimal(int(scale))
        return str(exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN))
    return f"{x / scale:.{digits}f}"


def profile_note(profile: str) -> str:
    """' (cifar10)' when a paper profile's numbers are beside ours, else nothing."""
    return f" ({profile})" if profile and profile != "none" else ""


def frame_of(records: list[dict], ints: tuple[str, ...] = ()):
    """The CSV's DataFrame; `ints` as nullable ints (200000, not 200000.0, and an empty cell for none)."""
    import pandas as pd

    df = pd.DataFrame.from_records(records)
    for col in ints:
        if col in df:
            df[col] = df[col].astype("Int64")
    return df
