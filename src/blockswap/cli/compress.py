"""`blockswap compress`: a user's trained network and image folder in, a distilled student under a budget out."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..core.recipe import DISTILL_DEFAULTS, DISTILL_FIELDS, FIELDS, TrainConfig
from .args import add_field_option, budget_number, int_at_least
from .training import add_setting

NOT_OPTIONS = ("dataset", "data_dir")  # the folder is --data; its dataset is always "folder"
# compress's recipes, each the values of the options it sets where the user gives none. paper: BlockSwap's
# CIFAR recipe (200 epochs of 128, 100 candidates), for a GPU; cpu: sized for a CPU - a folder of a few thousand
# small images in tens of minutes (15 epochs of 64 at the linearly scaled lr, 20 candidates).
RECIPES = {"paper": {"epochs": FIELDS["epochs"].default, "batch_size": FIELDS["batch_size"].default,
                     "lr": FIELDS["lr"].default, "samples": 100},
           "cpu": {"epochs": 15, "batch_size": 64, "lr": 0.05, "samples": 20}}


def apply_recipe(args) -> str:
    """Fill the options the user left out from --recipe (auto: paper on a GPU, cpu otherwise); return its name."""
    from ..training.engine import resolve_device

    name = args.recipe
    if name == "auto":
        name = "paper" if resolve_device(args.device).type == "cuda" else "cpu"
    for option, value in RECIPES[name].items():
        if getattr(args, option) is None:
            setattr(args, option, value)
    return name


def cmd_compress(args) -> None:
    """Ctrl-C, SIGTERM or SIGUSR1 end the job in one line, exit status 128 + signal: in the distillation at a whole
    step with its resume file written (`runner.Preempted`), elsewhere with the finished stages kept."""
    from ..compress.pipeline import compress
    from ..core.errors import Stopped
    from ..training.runner import signals_raise

    apply_recipe(args)
    config = TrainConfig(**{name: getattr(args, name) for name in args.settings}, dataset="folder",
                         data_dir=args.data, progress=not args.quiet)
    kept = f"the finished stages are kept in {args.output}; run the same command again to resume"
    with signals_raise(kept):
        try:
            report = compress(args.teacher, args.data, args.budget, args.output, config=config, metric=args.metric,
                              method=args.method, samples=args.samples, latency_table=args.latency_table,
                              round_to=args.round_to,
                              log=lambda line: print(line, file=sys.stderr))
        except KeyboardInterrupt:  # Ctrl-C pressed twice in the distillation: it resumes from its last epoch's end
            raise Stopped(signal.SIGINT, f"interrupted at once; {kept}") from None
    s = report["student"]
    print(f"{args.output}/model_card.md: {report['method']} student, {s['params']:,} params, "
          f"top-1 error {s['test_top1_error']:.2f}% (teacher {report['teacher']['test_top1_error']:.2f}%)",
          file=sys.stderr)


def budget_or_fraction(text: str) -> float | str:
    """An argparse type: a `budget_number`, or a fraction of the teacher's cost as "0.7x" (kept as text)."""
    if not text.strip().lower().endswith("x"):
        return budget_number(text)
    from ..compress.job import fraction_of_teacher
    from ..core.errors import BlockswapError

    try:
        fraction_of_teacher(text)
    except BlockswapError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text.strip().lower()


def cmd_compress_table(args) -> None:
    from ..compress.table import comparison, comparison_figure, comparison_markdown, latency_conditions
    from ..core.files import write_text
    from ..report.figures import REHEARSAL_MARK, rehearsal, save_figure

    check_figure_path(args.figure, "--figure")
    reports = [read_compress_report(path) for path in args.reports]
    rows, teacher = comparison(reports), reports[0]["teacher"]
    write_text(args.output, (REHEARSAL_MARK + "\n\n" if rehearsal() else "")
               + comparison_markdown(rows, teacher, latency_conditions(reports[0])))
    if args.figure:  # marked as a rehearsal by save_figure
        teacher_latency = next(iter(reports[0].get("latency", {}).get("teacher", [])), None)
        save_figure(comparison_figure(rows, teacher, teacher_latency), args.figure)


REPORT_KEYS = ("method", "metric", "budget", "seed", "student", "teacher")


def read_compress_report(path: str) -> dict:
    """A report.json of `blockswap compress`, or one line naming the file and what it lacks."""
    from ..core.errors import BlockswapError
    from ..core.files import read_json

    report = read_json(path, "compress report")
    missing = [k for k in REPORT_KEYS if k not in report] if isinstance(report, dict) else list(REPORT_KEYS)
    if missing:
        raise BlockswapError(f"{path} is not a compress report (no {', '.join(missing[:3])}); give the report.json "
                             "files of `blockswap compress` jobs")
    return report


def check_figure_path(path: str | None, option: str) -> None:
    """A figure's format comes from its suffix: one it cannot write is refused before any work."""
    from ..core.errors import BlockswapError
    from ..report.figures import figure_formats

    if path and Path(path).suffix.lstrip(".").lower() not in figure_formats():
        raise BlockswapError(f"{option} {path}: unknown figure format {Path(path).suffix or '(no suffix)'}; end "
                             f"it in {', '.join('.' + f for f in figure_formats())}")


def add_commands(sub) -> None:
    from ..compress.job import METHODS

    p = sub.add_parser("compress", help="compress a trained network (torchvision ResNet or blockswap checkpoint) "
                       "under a params, MACs or latency budget on an image folder")
    p.add_argument("--teacher", required=True, help="weights file (a torchvision resnet18/34/50/101 or "
                   "wide_resnet50_2 state dict, or a blockswap checkpoint), or a torchvision name whose weights are "
                   "in torch's hub cache")
    p.add_argument("--data", required=True, help="image folder: DATA/train/<class>/* and DATA/val/<class>/*")
    p.add_argument("--budget", required=True, type=budget_or_fraction,
                   help="the student's size in --metric's unit (40K, 2M, ...), or a fraction of the teacher's own "
                   "(0.7x: 70%% of its params, MACs or predicted latency)")
    p.add_argument("--metric", choices=("params", "macs", "latency"), default="params",
                   help="what the budget counts (latency: microseconds at the table's batch size and threads, needs "
                   "--latency-table)")
    p.add_argument("--latency-table", help="with --metric latency: `blockswap latency-table` on this device")
    p.add_argument("--method", choices=METHODS, default="blockswap",
                   help="how the student is made; it is then distilled the same way (default blockswap)")
    p.add_argument("--round-to", type=int_at_least(2), help="pruning: every pruned layer's channels a multiple of "
                   "this (8 or 16, as vectorised kernels want) (default: any count)")
    recipes = "; ".join(f"{name}: " + ", ".join(f"{k} {v:g}" for k, v in r.items()) for name, r in RECIPES.items())
    p.add_argument("--recipe", choices=("auto", *RECIPES), default="auto",
                   help=f"the defaults of --epochs, --batch-size, --lr and --samples ({recipes}); auto: paper on a "
                        "GPU, cpu on the CPU (default auto)")
    p.add_argument("--samples", type=int_at_least(1), help="blockswap: candidates ranked by Fisher (default: "
                   "--recipe's)")
    for name in DISTILL_FIELDS:
        add_setting(p, name, DISTILL_DEFAULTS[name])
    settings = [n for n, f in FIELDS.items() if f.metadata["cli"] and n not in NOT_OPTIONS]
    for name in settings:
        if name in RECIPES["cpu"]:
            add_field_option(p, FIELDS[name], given_only=True)
            action = p._option_string_actions["--" + name.replace("_", "-")]
            action.help = f"{FIELDS[name].metadata['help']} (default: --recipe's)"
        else:
            add_setting(p, name)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", required=True, help="the job's folder (resumed when run again)")
    p.set_defaults(func=cmd_compress, settings=(*settings, *DISTILL_FIELDS), output_dirs=("output",))

    p = sub.add_parser("compress-table", help="compress reports side by side: error per budget and method, "
                       "each method's paired difference from BlockSwap with its 95% interval")
    p.add_argument("reports", nargs="+", help="report.json files of `blockswap compress` jobs")
    p.add_argument("-o", "--output", required=True, help="the Markdown table")
    p.add_argument("--figure", help="also the Pareto figure: error against params and against measured latency per "
                   "method (.png, .pdf, .svg)")
    p.set_defaults(func=cmd_compress_table, outputs=("output", "figure"))
