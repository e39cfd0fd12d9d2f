"""What every report shares: the `Report` it builds, the registry of report kinds, and where files go.

A report kind is a `build(runs, profile, **options) -> Report` registered by name with `register`; its
keyword options are its CLI options (each report module declares them in its `add_arguments`), and its
figure names may use them ("{scatter_proxy}_vs_error"). Output files are named by the caller: the table
as files whose suffix picks the format (.csv, .md, .tex), each figure as files (.png, .pdf, .svg); or a
folder, where they get default names (see `plan_outputs`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core import paper
from ..core.errors import BlockswapError
from ..core.files import write_text
from ..core.registry import Registry, unknown_name_message
from .figures import FIGURE_FORMATS, REHEARSAL_MARK, rehearsal, save_figure
from .runs import load_runs
from .tables import TABLE_FORMATS, Table

PROFILES = (*paper.ROWS, *paper.DETECTION_ROWS, "none")  # --paper: profiles with published numbers, or none


@dataclass
class Report:
    """A built report: a DataFrame for the CSV, a formatted table for Markdown/LaTeX, matplotlib Figures."""
    frame: pd.DataFrame  # noqa: F821 - the CSV, plain numbers
    table: Table
    figures: dict  # figure name → matplotlib Figure
    notes: list[str] = field(default_factory=list)

    def write(self, outputs: Outputs) -> list[str]:
        """Every file of `outputs`, each atomically; the LaTeX label is the .tex file's stem. A rehearsal's
        captions start with `REHEARSAL_MARK` and its CSV gains a `rehearsal` column (figures: save_figure)."""
        frame, table = self.frame, self.table
        if rehearsal():
            frame = frame.assign(rehearsal=True)
            table = dataclasses.replace(table, caption=REHEARSAL_MARK + table.caption)
        written = []
        for path in outputs.table:
            fmt = path.suffix.lstrip(".")
            text = {"csv": lambda: frame.to_csv(index=False, na_rep=""), "md": table.markdown,
                    "tex": lambda stem=path.stem: table.latex(stem)}[fmt]()
            write_text(path, text)
            written.append(path)
        for name, paths in outputs.figures.items():
            written += [save_figure(self.figures[name], p) for p in paths]
        return [str(p) for p in written]


def _no_arguments(parser) -> None:
    pass


@dataclass(frozen=True)
class ReportKind:
    name: str
    help: str
    build: Callable[..., Report]  # build(runs, profile, **options)
    table: str  # the table's default file stem
    figures: tuple[str, ...]  # figure names, "{option}" fields filled from the build options
    add_arguments: Callable = _no_arguments  # add_arguments(parser): the build options as CLI options
    load: Callable = load_runs  # metrics files → what `build` takes (detection runs have their own)

    def options(self, given: dict) -> dict:
        """The build's keyword options picked from `given` (e.g. the parsed CLI arguments), by name."""
        params = inspect.signature(self.build).parameters
        return {k: v for k, v in given.items() if k in params and params[k].kind is inspect.Parameter.KEYWORD_ONLY}

    def figure_names(self, options: dict) -> tuple[str, ...]:
        params = inspect.signature(self.build).parameters
        values = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
        return tuple(f.format(**{**values, **options}) for f in self.figures)


REPORTS: Registry[ReportKind] = Registry("report")


def register(name: str, *, help: str, table: str, figures: tuple[str, ...], add_arguments=_no_arguments,
             load=load_runs):
    """Decorator: register `build(runs, profile, **options) -> Report` as the report `name`."""
    def wrap(build):
        REPORTS.add(name, ReportKind(name, help, build, table, figures, add_arguments, load))
        return build
    return wrap


def check_profile(profile: str | None) -> str:
    """--paper, normalised ('CIFAR-10' → 'cifar10'); an unknown profile is an error naming the valid ones."""
    normal = paper.normalise_profile(profile)
    if normal not in PROFILES:
        raise BlockswapError(unknown_name_message("paper profile (--paper)", profile, PROFILES))
    return normal


@dataclass(frozen=True)
class Outputs:
    table: list[Path]
    figures: dict[str, list[Path]]

    def paths(self) -> list[Path]:
        return [*self.table, *(p for ps in self.figures.values() for p in ps)]


def _suffixed(paths, formats, what: str) -> list[Path]:
    out = [Path(p) for p in paths]
    for p in out:
        if p.suffix.lstrip(".") not in formats:
            raise BlockswapError(f"{what} {p}: the suffix picks the format; use one of "
                                 f"{', '.join('.' + f for f in formats)}")
    if len(set(out)) != len(out):
        raise BlockswapError(f"{what}: a file is named twice")
    return out


def plan_outputs(kind: ReportKind, options: dict, *, table=None, figures=(), out_dir=None, figure_dir=None,
                 name: str | None = None) -> Outputs:
    """Every file the report will write, before any work.

    table: the table's files (suffix .csv/.md/.tex picks the format), else NAME.{csv,md,tex} in out_dir.
    figures: [(figure name, files…)] (.png/.pdf/.svg), else FIGURE.{png,pdf} in figure_dir or out_dir,
    prefixed NAME_ when `name` differs from the report's default table name.
    """
    if table:
        tables = _suffixed(table, TABLE_FORMATS, "--table")
    elif out_dir:
        tables = [Path(out_dir) / f"{name or kind.table}.{ext}" for ext in TABLE_FORMATS]
    else:
        raise BlockswapError("give --table FILE… (e.g. tables/main.csv tables/main.md) or --out-dir DIR")
    valid = kind.figure_names(options)
    placed: dict[str, list[Path]] = {}
    for fig_name, *files in figures:
        if fig_name not in valid:
            raise BlockswapError(unknown_name_message(f"{kind.name} figure (--figure NAME FILE…)", fig_name, valid))
        if fig_name in placed or not files:
            raise BlockswapError(f"--figure {fig_name}: give the figure once, with its files (e.g. x.png x.pdf)")
        placed[fig_name] = _suffixed(files, FIGURE_FORMATS, f"--figure {fig_name}")
    folder = figure_dir or out_dir
    for fig_name in valid:
        if fig_name not in placed:
            if not folder:
                raise BlockswapError(f"figure {fig_name!r} has no file: give --figure {fig_name} FILE… "
                                     "or --figure-dir/--out-dir")
            stem = fig_name if name in (None, kind.table) else f"{name}_{fig_name}"
            placed[fig_name] = [Path(folder) / f"{stem}.{ext}" for ext in ("png", "pdf")]
    return Outputs(tables, {n: placed[n] for n in valid})


def run(name: str, metrics: list[str], profile: str | None, outputs: Outputs, **options) -> dict:
    """Build the report `name` from metrics files and write `outputs`; {"written": [...], "notes": [...]}."""
    kind = REPORTS.get(name)
    report = kind.build(kind.load(metrics), check_profile(profile), **options)
    return {"written": report.write(outputs), "notes": report.notes}
