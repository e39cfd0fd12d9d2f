"""`blockswap <command>`: the one entry point the workflow rules call.

Each command prints a JSON object or writes the file named by -o (atomically). A mistake a user can
make ends in one line on stderr and exit status 2, with nothing half-written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

from . import __version__
from .errors import BlockswapError
from .files import check_output, check_output_dir, write_json, write_text
from .registry import unknown_name_message


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (and exit status 2, as argparse's own)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_at_least(low: int):
    """An argparse type: an integer ≥ `low`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be ≥ {low}, got {value}")
        return value
    return parse


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0 (nan, inf and negatives are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = positive_number(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def emit(obj, output: str | None) -> None:
    """Write JSON to `output` atomically, or print it."""
    if output:
        write_json(output, obj)
    else:
        print(json.dumps(obj, indent=2))


def write_jsonl(records: list[dict], output: str | None) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    if output:
        write_text(output, text)
    else:
        print(text, end="")


# --- count ---------------------------------------------------------------------------------------
def cmd_count(args) -> None:
    from . import counting
    from .genotype import load

    g = load(args.genotype, args.index)
    counts = counting.analytic(g).to_dict()
    if args.measure:
        from .models import create_model

        measured = counting.measured(create_model(g), g).to_dict()
        if measured != counts:  # a disagreement is a bug in this package, not a user error
            raise AssertionError(f"analytic {counts} != measured {measured}")
    emit(counts, args.output)


# --- genotype ------------------------------------------------------------------------------------
def cmd_import_legacy(args) -> None:
    from .counting import analytic
    from .genotype import import_legacy_csv

    rows = import_legacy_csv(args.csv, args.model, num_classes=args.num_classes, in_channels=args.in_channels,
                             image_size=args.image_size)
    if args.output and not args.output.endswith(".jsonl") and len(rows) == 1:
        emit(rows[0][0].to_dict(), args.output)
        return
    if args.output and not args.output.endswith(".jsonl"):
        raise BlockswapError(f"{args.csv} holds {len(rows)} genotypes: name a .jsonl output to keep them all")
    write_jsonl([{"id": g.id, **g.to_dict(), **analytic(g).to_dict(), "legacy": extra} for g, extra in rows],
                args.output)


# --- data --------------------------------------------------------------------------------------
def cmd_data_fetch(args) -> None:
    from .datadirs import ensure_fashion_mnist, fetch_fashion_mnist

    log = lambda text: print(text, file=sys.stderr)  # noqa: E731 - stdout carries the JSON answer
    if args.dest:
        folder = fetch_fashion_mnist(args.dest, args.method, log)
    else:
        folder = ensure_fashion_mnist(method=args.method, log=log)
    emit({"dataset": args.dataset, "data_dir": str(folder)}, None)


def add_data_commands(sub) -> None:
    from .datadirs import METHODS, PROJECT_SUBDIR

    p = sub.add_parser("data", help="find or fetch datasets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    q = dsub.add_parser("fetch", help="find Fashion-MNIST, or fetch it (no root needed) and check it")
    q.add_argument("dataset", choices=("fashion-mnist",),
                   help="the one dataset that can be fetched (CIFAR-10 and ImageNet: see the README)")
    q.add_argument("--dest", help=f"fetch into this folder even if a standard place has the files "
                                  f"(default: use a standard place, else fetch into {PROJECT_SUBDIR})")
    q.add_argument("--method", choices=METHODS, default="auto",
                   help="apt: unprivileged apt-get download + dpkg-deb -x; http: the dataset's site; auto: both")
    q.set_defaults(func=cmd_data_fetch, output_dirs=("dest",))


# --- sample --------------------------------------------------------------------------------------
def cmd_sample(args) -> None:
    from .counting import analytic
    from .sampling import sample

    genotypes = sample(args.model, args.budget, args.samples, seed=args.seed, tolerance=args.tolerance,
                       metric=args.metric, candidates=args.candidates, sampler=args.sampler,
                       in_channels=args.in_channels, num_classes=args.num_classes, image_size=args.image_size)
    write_jsonl([{"id": g.id, **g.to_dict(), **analytic(g).to_dict()} for g in genotypes], args.output)


# --- score ---------------------------------------------------------------------------------------
def load_candidates(path: str) -> list:
    """Genotypes of a candidates .jsonl (one object per line; metadata keys ignored)."""
    from .genotype import Genotype, load_records

    out = [Genotype.from_dict(d, source=f"{path}, line {n}") for n, d in enumerate(load_records(path), start=1)]
    if not out:
        raise BlockswapError(f"{path}: no candidates (expected one genotype JSON object per line)")
    return out


def cmd_score(args) -> None:
    import csv
    import io

    import torch

    from .counting import analytic
    from .data import first_batches, load_dataset
    from .proxies import parse_proxies, rank, score_candidates, score_column
    from .train import check_fits, resolve_device

    genotypes = load_candidates(args.candidates)
    proxies = parse_proxies(args.proxy)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset, args.data_dir, split="train")
    for i, g in enumerate(genotypes):
        check_fits(g, ds, what=f"{args.candidates}: candidate {i + 1}")
    if len(ds) // args.batch_size < args.minibatches:
        raise BlockswapError(f"{args.dataset} has only {len(ds) // args.batch_size} batches of {args.batch_size}; "
                             "lower --minibatches")

    def batches(seed: int) -> list:
        return first_batches(ds, args.batch_size, seed, args.minibatches)

    if args.fresh_batch:  # the original code's behaviour: a new augmented minibatch per candidate
        batch = lambda index, candidate_seed: batches(candidate_seed)  # noqa: E731
    else:
        batch = batches(args.seed)
    # One process per thread of the allocation, at most two (more gained nothing on 2-core machines).
    workers = args.workers or (min(2, args.threads or 2) if device.type == "cpu" else 1)
    scores = score_candidates(genotypes, proxies, batch, args.seed, minibatches=args.minibatches,
                              device=device, workers=workers, progress=not args.quiet)

    first = proxies[0]
    ranks = rank([s[first.name] for s in scores], first.sign)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "params", "ops", *[score_column(p.name) for p in proxies], "rank", "blocks"])
    for i in sorted(range(len(genotypes)), key=ranks.__getitem__):  # best first
        g, c = genotypes[i], analytic(genotypes[i])
        w.writerow([g.id, c.params, c.ops, *[repr(scores[i][p.name]) for p in proxies], ranks[i],
                    " ".join(g.blocks)])
    if args.output:
        write_text(args.output, buf.getvalue())
    else:
        print(buf.getvalue(), end="")
    if args.best:
        write_json(args.best, genotypes[ranks.index(1)].to_dict())


# --- train / distill / evaluate ------------------------------------------------------------------
def _number_list(cast):
    def parse(text: str) -> list:
        try:
            return [cast(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    return parse


def _train_config(args, **objective):
    from .train import TrainConfig

    return TrainConfig(dataset=args.dataset, data_dir=args.data_dir, subset=args.subset,
                       test_subset=args.test_subset, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                       crs_ratio=args.crs_ratio, schedule=args.schedule, milestones=tuple(args.milestones),
                       gamma=args.gamma, lr_unit=args.lr_unit, cutout=args.cutout, eval_every=args.eval_every,
                       seed=args.seed, device=args.device, threads=args.threads, progress=not args.quiet,
                       **objective)


def _student(args):
    """--genotype G.json, --genotype C.jsonl --index I (0-based), or --model M [--block B] (a model name)."""
    from .genotype import load

    if args.model:
        if args.index is not None:
            raise BlockswapError("--index goes with --genotype C.jsonl")
        return args.model
    if args.block:
        raise BlockswapError("--block goes with --model (every block of that model one type)")
    return load(args.genotype, args.index)


def _labels(pairs: list[str]) -> dict:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BlockswapError(f"--label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def _run_training(args, config, teacher=None, teacher_genotype=None) -> None:
    from .train import Preempted, train

    try:
        metrics = train(config, _student(args), out_checkpoint=args.checkpoint, metrics_path=args.output,
                        resume_path=args.resume, teacher=teacher, teacher_genotype=teacher_genotype,
                        block=args.block or "Conv", labels=_labels(args.label))
    except Preempted as e:  # SLURM preemption/time limit: not an error, the job is to be requeued
        print(f"blockswap {args.command}: {e}", file=sys.stderr)
        raise SystemExit(e.exit_status) from None
    if not args.output:
        print(json.dumps(metrics, indent=2))


def cmd_train(args) -> None:
    _run_training(args, _train_config(args))


def cmd_distill(args) -> None:
    from .genotype import load

    config = _train_config(args, at_beta=tuple(args.at_beta), kd_alpha=args.kd_alpha,
                           kd_temperature=args.kd_temperature)
    if not config.uses_teacher:
        raise BlockswapError("distill needs --at-beta > 0 or --kd-alpha > 0; use `blockswap train` without a teacher")
    expect = load(args.teacher_genotype) if args.teacher_genotype else None
    _run_training(args, config, teacher=args.teacher, teacher_genotype=expect)


def cmd_evaluate(args) -> None:
    import torch

    from .counting import analytic
    from .data import load_dataset
    from .files import provenance
    from .genotype import Genotype
    from .train import check_fits, evaluate, load_model, resolve_device

    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    device = resolve_device(args.device)
    model, ckpt = load_model(args.checkpoint, device=device)
    genotype = Genotype.from_dict(ckpt["genotype"])
    name = args.dataset or ckpt["config"].get("dataset")
    data_dir = args.data_dir if args.data_dir is not None else ckpt["config"].get("data_dir")
    dataset = load_dataset(name, data_dir, "test", args.test_subset, 0)
    check_fits(genotype, dataset, what=f"{args.checkpoint}: genotype")
    result = evaluate(model, dataset, args.batch_size, device)
    if not math.isfinite(result["loss"]):
        raise BlockswapError(f"{args.checkpoint}: the test loss is {result['loss']}; its weights are not usable "
                             "(a diverged run?)")
    emit({"checkpoint": args.checkpoint, "genotype_id": genotype.id, "model": genotype.model, "dataset": name,
          "split": "test", "examples": result["n"], "test_top1_error": result["top1_error"],
          "test_top5_error": result["top5_error"], "test_loss": result["loss"], **analytic(genotype).to_dict(),
          "provenance": provenance({"checkpoint": args.checkpoint, "dataset": name,
                                    "test_subset": args.test_subset}, None, str(device))}, args.output)


def _add_training_args(p: argparse.ArgumentParser, teacher: bool) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--genotype", help="genotype JSON of the network to train (or a .jsonl with --index)")
    which.add_argument("--model", help="e.g. wrn-16-2: that network with every block --block, shaped for the dataset")
    p.add_argument("--block", help="with --model: the block type of every block (default Conv)")
    p.add_argument("--index", type=int_at_least(0),
                   help="with --genotype C.jsonl: train its genotype number I (from 0)")
    if teacher:
        p.add_argument("--teacher", required=True, help="teacher checkpoint (.pt from `blockswap train`)")
        p.add_argument("--teacher-genotype", help="refuse a teacher checkpoint of any other genotype")
        p.add_argument("--at-beta", type=_number_list(float), default=[1000.0],
                       help="AT weight β, one value or one per attention point (default 1000; 0: no AT)")
        p.add_argument("--kd-alpha", type=float, default=0.0,
                       help="KD mixing: (1-α)·CE + α·KD (default 0: no KD)")
        p.add_argument("--kd-temperature", type=float, default=4.0)
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist, cifar10 or imagenet")
    p.add_argument("--data-dir", help="dataset folder (default: the dataset's standard place, if any)")
    p.add_argument("--subset", type=int, help="train on a class-stratified subset of N examples")
    p.add_argument("--test-subset", type=int, help="test on a class-stratified subset of N examples")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--crs-ratio", type=float,
                   help="CRS-wd: multiply the weight decay by this compression ratio")
    p.add_argument("--schedule", choices=("cosine", "step"), default="cosine")
    p.add_argument("--milestones", type=_number_list(int), default=[60, 120, 160],
                   help="epochs where the step schedule multiplies the lr by --gamma")
    p.add_argument("--gamma", type=float, default=0.2)
    p.add_argument("--lr-unit", choices=("epoch", "iteration"), default="epoch",
                   help="change the lr once per epoch (reference code) or every step")
    p.add_argument("--cutout", type=int, help="Cutout square side (default: the dataset's, 16 on CIFAR-10)")
    p.add_argument("--eval-every", type=int, default=1, help="test every N epochs (the last one always)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="torch threads (default: the CPUs this job may use)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (one line per epoch still)")
    p.add_argument("-o", "--output", help="metrics JSON (default: print)")
    p.add_argument("--checkpoint", required=True, help="final checkpoint .pt, written when training is done")
    p.add_argument("--resume", help="resume checkpoint (default: <checkpoint>.resume)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="copied into the metrics' labels (repeatable), e.g. method=blockswap budget=200k")


def add_train_commands(sub) -> None:
    p = sub.add_parser("train", help="train a network from scratch (a teacher, or a student alone)")
    _add_training_args(p, teacher=False)
    p.set_defaults(func=cmd_train, outputs=("output", "checkpoint", "resume"))

    p = sub.add_parser("distill", help="train a student with attention transfer / KD from a teacher")
    _add_training_args(p, teacher=True)
    p.set_defaults(func=cmd_distill, outputs=("output", "checkpoint", "resume"))

    p = sub.add_parser("evaluate", help="top-1/top-5 test error of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", help="default: the checkpoint's")
    p.add_argument("--data-dir", help="default: the checkpoint's")
    p.add_argument("--test-subset", type=int_at_least(1),
                   help="a class-stratified subset of N test examples (default: all)")
    p.add_argument("--batch-size", type=int_at_least(1), default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int_at_least(1))
    p.add_argument("-o", "--output", help="metrics JSON (default: print)")
    p.set_defaults(func=cmd_evaluate, outputs=("output",))


def add_shape_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in-channels", type=int_at_least(1), help="input channels (default: the model's, 3)")
    p.add_argument("--num-classes", type=int_at_least(1),
                   help="classes (default: the model's, 10 for WRN, 1000 for ResNet)")
    p.add_argument("--image-size", type=int_at_least(1),
                   help="input side in pixels (default: 32 for WRN, 224 for ResNet)")


# --- select --------------------------------------------------------------------------------------
def cmd_select(args) -> None:
    """The best-ranked candidate among the first n of a candidates file, by a scores CSV."""
    import csv

    from .scores import PROXY_SIGNS, score_column

    if args.proxy not in PROXY_SIGNS:
        raise BlockswapError(unknown_name_message("proxy", args.proxy, PROXY_SIGNS))
    sign = PROXY_SIGNS[args.proxy]
    candidates = load_candidates(args.candidates)[: args.first]
    column = score_column(args.proxy)
    try:
        with open(args.scores, newline="") as f:
            scores = {row["id"]: float(row[column]) for row in csv.DictReader(f)}
    except FileNotFoundError:
        raise BlockswapError(f"{args.scores}: scores file not found") from None
    except (KeyError, ValueError):
        raise BlockswapError(f"{args.scores}: expected columns 'id' and {column!r} with numbers "
                             "(a `blockswap score` output)") from None
    missing = [g.id for g in candidates if g.id not in scores]
    if missing:
        raise BlockswapError(f"{args.scores} has no score for candidate {missing[0]} of {args.candidates}; "
                             "were they scored from this candidates file?")
    best = max(candidates, key=lambda g: sign * scores[g.id])  # ties: the earliest sample wins
    emit(best.to_dict(), args.output)


# --- report --------------------------------------------------------------------------------------
class _FigureAction(argparse.Action):
    """--figure NAME FILE [FILE …], repeatable: [[NAME, FILE, …], …] in `dest`, every FILE in figure_files."""

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) < 2:
            raise argparse.ArgumentError(self, "expected a figure name and its files, e.g. pareto_params a.png a.pdf")
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), list(values)])
        namespace.figure_files = [*(getattr(namespace, "figure_files", None) or []), *values[1:]]


def cmd_report(args) -> None:
    from . import report

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


def add_report_commands(sub) -> None:
    from .report import PROFILES, REPORTS

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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="blockswap", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"blockswap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("count", help="params and Ops of a genotype")
    p.add_argument("genotype", help="genotype JSON file (or a candidates .jsonl with --index)")
    p.add_argument("--index", type=int_at_least(0), help="with a .jsonl: count its genotype number I (from 0)")
    p.add_argument("--measure", action="store_true", help="also build the network and check the counts on it")
    p.add_argument("-o", "--output")
    p.set_defaults(func=cmd_count, outputs=("output",))

    p = sub.add_parser("genotype", help="genotype utilities")
    gsub = p.add_subparsers(dest="genotype_command", required=True, metavar="SUBCOMMAND")
    q = gsub.add_parser("import-legacy", help="convert an original BlockSwap genotype CSV")
    q.add_argument("csv")
    q.add_argument("--model", required=True, help="e.g. wrn-40-2 or resnet34")
    add_shape_args(q)
    q.add_argument("-o", "--output", help="OUT.json for a one-row CSV, or OUT.jsonl for all rows")
    q.set_defaults(func=cmd_import_legacy, outputs=("output",))

    p = sub.add_parser("sample", help="sample student genotypes within a budget")
    p.add_argument("--model", required=True)
    p.add_argument("--budget", type=positive_number, required=True, help="target params (or Ops with --metric ops)")
    p.add_argument("--tolerance", type=fraction, default=0.025, help="accept strictly within ±this fraction")
    p.add_argument("--metric", choices=("params", "ops"), default="params")
    p.add_argument("--samples", type=int_at_least(1), default=1000)
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--candidates", default="blockswap",
                   help="candidate set: blockswap (23 types), paper (21), moonshine, all, or a comma list")
    p.add_argument("--sampler", choices=("exact", "reference"), default="exact",
                   help="exact: uniform over the in-budget set without rejection; reference: the paper's")
    add_shape_args(p)
    p.add_argument("-o", "--output", help="candidates .jsonl (one genotype per line)")
    p.set_defaults(func=cmd_sample, outputs=("output",))

    p = sub.add_parser("score", help="rank candidate genotypes by zero-cost proxies (Fisher potential)")
    p.add_argument("candidates", help="candidates .jsonl from `blockswap sample`")
    p.add_argument("--proxy", default="fisher",
                   help="comma list, the first one ranks: fisher, grad_norm, snip, synflow, naswot, l2_norm, "
                        "params, train_accuracy, train_loss")
    p.add_argument("--dataset", required=True, help="fashion-mnist, cifar10 or imagenet")
    p.add_argument("--data-dir", help="dataset folder (default: the dataset's standard place, if any)")
    p.add_argument("--batch-size", type=int_at_least(1), default=128,
                   help="minibatch size (the training batch size)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="picks the minibatch and every candidate's init")
    p.add_argument("--minibatches", type=int_at_least(1), default=1,
                   help="k: Fisher summed over k minibatches; training proxies take k SGD steps")
    p.add_argument("--fresh-batch", action="store_true",
                   help="a new augmented minibatch per candidate (the original code) instead of one fixed batch")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int_at_least(1), help="torch intra-op threads in all (default: torch's choice)")
    p.add_argument("--workers", type=int_at_least(1),
                   help="processes scoring candidates in parallel, CPU only (default: min(2, --threads) on CPU, "
                        "1 on CUDA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", help="scores .csv (default: print)")
    p.add_argument("--best", help="also write the top-ranked genotype to this JSON file")
    p.set_defaults(func=cmd_score, outputs=("output", "best"))

    add_data_commands(sub)
    add_train_commands(sub)
    add_report_commands(sub)
    p = sub.add_parser("select", help="the best-scored candidate among the first n samples")
    p.add_argument("candidates", help="candidates .jsonl from `blockswap sample`")
    p.add_argument("scores", help="scores CSV from `blockswap score`")
    p.add_argument("--proxy", default="fisher", help="the proxy column that ranks them")
    p.add_argument("--first", type=int_at_least(1), required=True, help="consider only the first n candidates")
    p.add_argument("-o", "--output", help="genotype JSON of the pick")
    p.set_defaults(func=cmd_select, outputs=("output",))
    return parser


def check_outputs(args) -> None:
    """Every file or folder a command will write, checked before it starts any work."""
    for name in getattr(args, "outputs", ()):
        value = getattr(args, name, None)
        for path in value if isinstance(value, list) else [value] if value else []:  # a list: every file
            check_output(path, f"--{name.replace('_', '-')}")
    for name in getattr(args, "output_dirs", ()):
        if getattr(args, name, None):
            check_output_dir(getattr(args, name), f"--{name.replace('_', '-')}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_outputs(args)
        args.func(args)
    except BlockswapError as e:
        print(f"blockswap {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"blockswap {args.command}: interrupted; no output written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
