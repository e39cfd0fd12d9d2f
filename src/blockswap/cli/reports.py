"""report: tables and figures from run metrics, one registered report per subcommand."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ..core.errors import BlockswapError
from ..core.files import check_output


# --- report --------------------------------------------------------------------------------------
class _FigureAction(argparse.Action):
    """--figure NAME FILE [FILE …], repeatable: [[NAME, FILE, …], …] in `dest`, every FILE in figure_files."""

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) < 2:
            raise argparse.ArgumentError(self, "expected a figure name and its files, e.g. pareto_params a.png a.pdf")
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), list(values)])
        namespace.figure_files = [*(getattr(namespace, "figure_files", None) or []), *values[1:]]


def cmd_report(args) -> None:
    from .. import report

    kind = report.REPORTS.get(args.report_command)
    profile = report.check_profile(args.paper)
    options = kind.options(vars(args))
    outputs = report.plan_outputs(kind, options, table=args.table, figures=args.figure or (),
                                  out_dir=args.out_dir, figure_dir=args.figure_dir, name=args.name)
    for path in outputs.paths():  # the files named by --out-dir/--figure-dir, too, before any work
        check_output(path, "report output")
    print(json.dumps(report.run(kind.name, args.metrics, profile, outputs, **options), indent=2))


REPORT_OUTPUTS = """outputs: name the files (the rules do), or give a folder for default names:
  --table FILE…        the table's files; the suffix picks the format (.csv, .md, .tex)
  --figure NAME FILE…  one figure's files (.png, .pdf, .svg), repeatable
                       figures of this report: {figures}
  --out-dir DIR        the rest: table DIR/{table}.{{csv,md,tex}}, figures DIR/NAME.{{png,pdf}}
  --figure-dir DIR     figures not named by --figure go here instead of --out-dir
e.g. blockswap report {name} --metrics runs/*/metrics.json {example}--paper cifar10 --out-dir tables
"""


def cmd_results_page(args) -> None:
    from ..report import page

    results = Path(args.results)
    if not results.is_dir():
        raise BlockswapError(f"{results}: no such results folder; give results/<profile> of a finished run")
    profile = args.profile or results.name
    written = [page.write_page(results, profile, Path(args.output) if args.output else None)]
    if args.docs:
        written.append(page.copy_to_docs(results, profile, Path(args.docs)))
    print("\n".join(map(str, written)))


def add_commands(sub) -> None:
    from ..report import PROFILES, REPORTS

    p = sub.add_parser("results-page", help="a finished profile's RESULTS.md: its tables, figures, commit, machine, "
                       "threads and time, all read from its own files",
                       description="Write RESULTS_DIR/RESULTS.md (or -o) from the run's own files: the claims and "
                       "main tables, the others linked, the figures, the commit its result files record, the CPU "
                       "model, the jobs' thread counts and the benchmarked jobs' wall and CPU time. --docs also "
                       "writes DIR/<profile>.md with its figures in DIR/<profile>/.")
    p.add_argument("results", metavar="RESULTS_DIR", help="the profile's results folder, e.g. results/default")
    p.add_argument("--profile", help="the profile's name (default: the folder's name)")
    p.add_argument("-o", "--output", help="the page (default RESULTS_DIR/RESULTS.md)")
    p.add_argument("--docs", metavar="DIR", help="also copy it into the documentation, e.g. docs/results")
    p.set_defaults(func=cmd_results_page, outputs=("output",), output_dirs=("docs",))

    p = sub.add_parser("report", help="tables and figures from run metrics, the papers' numbers beside ours")
    rsub = p.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    for name in REPORTS:
        kind = REPORTS.get(name)
        figures = ", ".join(re.sub(r"\{(\w+)\}", lambda m: f"<{m[1]}>", f) for f in kind.figures)
        example = "--scores budget=200K,k=1:scores.csv " if name == "correlation" else ""
        epilog = REPORT_OUTPUTS.format(name=name, figures=figures, table=kind.table, example=example)
        q = rsub.add_parser(name, help=kind.help, description=kind.help, epilog=epilog,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        kind.add_arguments(q)
        q.add_argument("--metrics", nargs="+", action="extend", required=True, metavar="M.json",
                       help="run metrics JSON files (repeatable); files without labels.method count as "
                            "'unlabelled' (train with --label method=NAME to group them)")
        q.add_argument("--paper", default="none",
                       help=f"profile whose published numbers go beside ours: {', '.join(PROFILES)} (default none)")
        q.add_argument("--table", nargs="+", action="extend", metavar="FILE",
                       help="the table's files, format by suffix (.csv, .md, .tex)")
        q.add_argument("--figure", nargs="+", action=_FigureAction, metavar=("NAME", "FILE"),
                       help="a figure's files, format by suffix (.png, .pdf, .svg); repeatable")
        q.add_argument("--out-dir", help="folder for the table (and figures) not named by --table/--figure")
        q.add_argument("--figure-dir", help="folder for the figures not named by --figure (default: --out-dir)")
        q.add_argument("--name", help=f"with --out-dir: the table's file stem (default {kind.table}); "
                                      "figures' stems get NAME_ in front")
        q.set_defaults(func=cmd_report, outputs=("table", "figure_files"), output_dirs=("out_dir", "figure_dir"))


