"""Commands on genotypes and searches: count, genotype import-legacy, data fetch, sample, score, select."""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import BlockswapError
from ..core.files import write_json, write_text
from ..core.recipe import FIELDS
from ..core.registry import unknown_name_message
from ..core.sampling import TOLERANCE
from ..core.scores import PROXY_SIGNS
from .args import add_shape_args, budget_number, emit, fraction, int_at_least, write_jsonl


# --- count ---------------------------------------------------------------------------------------
def cmd_count(args) -> None:
    from ..core import counting
    from ..core.genotype import load

    g = load(args.genotype, args.index)
    counts = counting.analytic(g).to_dict()
    if args.measure:
        from ..nn.measure import measured as measured_counts
        from ..nn.models import create_model

        measured = measured_counts(create_model(g), g).to_dict()
        if measured != counts:  # a disagreement is a bug in this package, not a user error
            raise AssertionError(f"analytic {counts} != measured {measured}")
    emit(counts, args.output)


# --- genotype ------------------------------------------------------------------------------------
def cmd_import_legacy(args) -> None:
    from ..core.counting import analytic
    from ..core.genotype import import_legacy_csv

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
    from ..core.datadirs import ensure_fashion_mnist, fetch_fashion_mnist

    log = lambda text: print(text, file=sys.stderr)  # noqa: E731 - stdout carries the JSON answer
    if args.dest:
        folder = fetch_fashion_mnist(args.dest, args.method, log)
    else:
        folder = ensure_fashion_mnist(method=args.method, log=log)
    emit({"dataset": args.dataset, "data_dir": str(folder)}, None)


def cmd_data_folder(args) -> None:
    from ..data.datasets import load_dataset
    from ..data.imagefolder import write_folder

    train, test = (load_dataset(args.dataset, args.data_dir, split) for split in ("train", "test"))
    write_folder(train, test, Path(args.dest))
    print(f"{args.dest}: {len(train):,} training and {len(test):,} validation images of {len(train.classes)} "
          "classes", file=sys.stderr)


def add_data_commands(sub) -> None:
    from ..core.datadirs import METHODS, PROJECT_SUBDIR

    p = sub.add_parser("data", help="find or fetch datasets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    q = dsub.add_parser("fetch", help="find Fashion-MNIST, or fetch it (no root needed) and check it")
    q.add_argument("dataset", choices=("fashion-mnist",),
                   help="the one dataset that can be fetched (CIFAR-10 and ImageNet: see docs/workflow.md)")
    q.add_argument("--dest", help=f"fetch into this folder even if a standard place has the files "
                                  f"(default: use a standard place, else fetch into {PROJECT_SUBDIR})")
    q.add_argument("--method", choices=METHODS, default="auto",
                   help="apt: unprivileged apt-get download + dpkg-deb -x; http: the dataset's site; auto: both")
    q.set_defaults(func=cmd_data_fetch, output_dirs=("dest",))
    q = dsub.add_parser("folder", help="write an in-memory dataset as an image folder (DEST/{train,val}/<class>/*.png)")
    q.add_argument("dataset", choices=("fashion-mnist", "cifar10"))
    q.add_argument("--data-dir", help="where the dataset is (default: its standard place)")
    q.add_argument("--dest", required=True, help="the folder to write (must not exist)")
    q.set_defaults(func=cmd_data_folder, output_dirs=("dest",))


# --- sample --------------------------------------------------------------------------------------
def cmd_sample(args) -> None:
    from ..core.counting import analytic
    from ..core.sampling import sample, sample_table

    if args.metric != "latency":
        genotypes = sample(args.model, args.budget, args.samples, seed=args.seed, tolerance=args.tolerance,
                           metric=args.metric, candidates=args.candidates, sampler=args.sampler,
                           in_channels=args.in_channels, num_classes=args.num_classes, image_size=args.image_size)
        write_jsonl([{"id": g.id, **g.to_dict(), **analytic(g).to_dict()} for g in genotypes], args.output)
        return
    from ..nn.latency import SHAPE_KEYS, cost_table, load_table, predict

    if not args.latency_table:
        raise BlockswapError("--metric latency needs --latency-table FILE; measure one on this machine with "
                             "`blockswap latency-table`")
    table = load_table(args.latency_table, args.device, model=args.model,
                       shape={key: getattr(args, key) for key in SHAPE_KEYS})
    genotypes = sample_table(cost_table(table), args.budget, args.samples, args.seed, args.tolerance, args.sampler)
    write_jsonl([{"id": g.id, **g.to_dict(), **analytic(g).to_dict(), "predicted_us": round(predict(table, g), 2)}
                 for g in genotypes], args.output)


def cmd_latency_table(args) -> None:
    from ..nn.latency import measure_table, save_table
    from ..training.engine import resolve_device
    from ..training.runner import resolve_threads

    resolve_device(args.device)  # a CUDA device that is not there: one line, before any timing
    threads = resolve_threads(args.threads)  # a job under the table's budgets must run at the same count
    given = {k: getattr(args, k) for k in ("batch_size", "repeats", "calibration") if getattr(args, k) is not None}
    table = measure_table(args.model, args.candidates, args.device, seed=args.seed, in_channels=args.in_channels,
                          num_classes=args.num_classes, image_size=args.image_size, **given,
                          progress=None if args.quiet else (lambda line: print(line, file=sys.stderr)))
    save_table(table, args.output)
    print(f"{args.output}: {sum(map(len, table['blocks']))} block timings on {table['device_name']} at {threads} "
          f"threads; fixed term {table['fixed_us']:.0f} µs, blocks scaled by {table['scale']:.3g}", file=sys.stderr)


# --- score ---------------------------------------------------------------------------------------
def load_candidates(path: str) -> list:
    """Genotypes of a candidates .jsonl (one object per line; metadata keys ignored)."""
    from ..core.genotype import Genotype, load_records

    out = [Genotype.from_dict(d, source=f"{path}, line {n}") for n, d in enumerate(load_records(path), start=1)]
    if not out:
        raise BlockswapError(f"{path}: no candidates (expected one genotype JSON object per line)")
    return out


def write_scores(args, genotypes: list, scores: list, ranks: list[int], proxies: list[str],
                 timings: bool = False) -> None:
    """The scores CSV of the candidates (`proxies.Scores` each) to `args.output` (else printed) and, with
    `args.best`, the best-ranked genotype's JSON."""
    from ..core.counting import analytic
    from ..core.scores import format_scores

    rows = [{"id": g.id, "params": c.params, "ops": c.ops, "scores": score, "rank": r, "blocks": g.blocks,
             "missing": score.missing, "seconds": score.seconds}
            for g, c, score, r in zip(genotypes, map(analytic, genotypes), scores, ranks)]
    text = format_scores(rows, proxies, timings=timings)
    if args.output:
        write_text(args.output, text)
    else:
        print(text, end="")
    if args.best:
        write_json(args.best, genotypes[ranks.index(1)].to_dict())


def cmd_score(args) -> None:
    import torch

    from ..data.datasets import check_fits, first_batches, load_dataset
    from ..search.proxies import parse_proxies, rank, score_candidates
    from ..training.engine import resolve_device

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
    write_scores(args, genotypes, scores, ranks, [p.name for p in proxies], timings=args.timings)


# --- select --------------------------------------------------------------------------------------
def cmd_select(args) -> None:
    """The best-ranked candidate among the first n of a candidates file, by a scores CSV."""
    from ..core.scores import read_scores, score_column

    if args.proxy not in PROXY_SIGNS:
        raise BlockswapError(unknown_name_message("proxy", args.proxy, PROXY_SIGNS))
    sign = PROXY_SIGNS[args.proxy]
    candidates = load_candidates(args.candidates)[: args.first]
    rows, _ = read_scores(args.scores)
    column = score_column(args.proxy)
    if column not in rows[0]:
        raise BlockswapError(f"{args.scores}: no column {column!r} (a `blockswap score --proxy {args.proxy}` "
                             "output)")
    scores = {row["id"]: row[column] for row in rows}
    missing = [g.id for g in candidates if g.id not in scores]
    if missing:
        raise BlockswapError(f"{args.scores} has no score for candidate {missing[0]} of {args.candidates}; "
                             "were they scored from this candidates file?")
    best = max(candidates, key=lambda g: sign * scores[g.id])  # ties: the earliest sample wins
    emit(best.to_dict(), args.output)


def add_commands(sub) -> None:
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

    add_sample_command(sub)
    add_latency_table_command(sub)
    add_score_command(sub)
    add_data_commands(sub)
    p = sub.add_parser("select", help="the best-scored candidate among the first n samples")
    p.add_argument("candidates", help="candidates .jsonl from `blockswap sample`")
    p.add_argument("scores", help="scores CSV from `blockswap score`")
    p.add_argument("--proxy", default="fisher", help="the proxy column that ranks them")
    p.add_argument("--first", type=int_at_least(1), required=True, help="consider only the first n candidates")
    p.add_argument("-o", "--output", help="genotype JSON of the pick")
    p.set_defaults(func=cmd_select, outputs=("output",))


def add_sample_command(sub) -> None:
    p = sub.add_parser("sample", help="sample student genotypes within a budget")
    p.add_argument("--model", required=True)
    p.add_argument("--budget", type=budget_number, required=True,
                   help="target params, e.g. 40K or 2M (Ops or MACs with --metric ops|macs, microseconds with "
                        "--metric latency)")
    p.add_argument("--tolerance", type=fraction, default=TOLERANCE,
                   help=f"accept strictly within ±this fraction (default {TOLERANCE})")
    p.add_argument("--metric", choices=("params", "ops", "macs", "latency"), default="params")
    p.add_argument("--latency-table", help="with --metric latency: the table from `blockswap latency-table`")
    p.add_argument("--device", default="cpu", help="with --metric latency: the device the table must be of")
    p.add_argument("--samples", type=int_at_least(1), default=1000)
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--candidates",
                   help="candidate set: blockswap (23 types; the default for basic blocks), paper (21), moonshine, "
                        "structured (8 structured substitutions of Gray et al. 2019), bottleneck (BlockSwap's per-conv "
                        "types and the bottleneck middles; the default for resnet50, resnet101, wide_resnet50_2), "
                        "all, named sets joined by + (blockswap+structured: the mixed search), or a comma list; a "
                        "named set gives the types the model's blocks take")
    p.add_argument("--sampler", choices=("exact", "reference"), default="exact",
                   help="exact: uniform over the in-budget set without rejection; reference: the paper's")
    add_shape_args(p)
    p.add_argument("-o", "--output", help="candidates .jsonl (one genotype per line)")
    p.set_defaults(func=cmd_sample, outputs=("output",))


def add_latency_table_command(sub) -> None:
    p = sub.add_parser("latency-table", help="time every candidate block type at every block, for latency budgets")
    p.add_argument("--model", required=True)
    p.add_argument("--candidates", help="candidate set, as `sample --candidates` (default: the model's own)")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where the student will run")
    # Defaults: blockswap.nn.latency's (one image, 30 timed runs, 8 calibration nets).
    p.add_argument("--batch-size", type=int_at_least(1), help="images per forward")
    p.add_argument("--repeats", type=int_at_least(1), help="timed runs per module; the median counts")
    p.add_argument("--calibration", type=int_at_least(1),
                   help="random whole nets across the feasible range that fit the fixed term (stem, head, per-net "
                   "overhead) and the blocks' scale")
    p.add_argument("--threads", type=int_at_least(1), help="torch intra-op threads, as the jobs under its budgets "
                   "will run (their --threads); default: the CPUs this process may use, as theirs")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--quiet", action="store_true")
    add_shape_args(p)
    p.add_argument("-o", "--output", required=True, help="the table (JSON)")
    p.set_defaults(func=cmd_latency_table, outputs=("output",))


def add_score_command(sub) -> None:
    p = sub.add_parser("score", help="rank candidate genotypes by zero-cost proxies (Fisher potential)")
    p.add_argument("candidates", help="candidates .jsonl from `blockswap sample`")
    p.add_argument("--proxy", default="fisher",
                   help=f"comma list, the first one ranks: {', '.join(PROXY_SIGNS)} (nwot = naswot)")
    p.add_argument("--dataset", required=True, help="fashion-mnist, cifar10 or imagenet")
    p.add_argument("--data-dir", help="dataset folder (default: the dataset's standard place, if any)")
    p.add_argument("--batch-size", type=int_at_least(1), default=FIELDS["batch_size"].default,
                   help="minibatch size: the training batch size, as the paper scores (default %(default)s)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="picks the minibatch and every candidate's init")
    p.add_argument("--minibatches", type=int_at_least(1), default=1,
                   help="k: Fisher summed over k minibatches; training proxies take k SGD steps")
    p.add_argument("--fresh-batch", action="store_true",
                   help="a new augmented minibatch per candidate (the original code) instead of one fixed batch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int_at_least(1), help="torch intra-op threads in all (default: torch's choice)")
    p.add_argument("--workers", type=int_at_least(1),
                   help="processes scoring candidates in parallel, CPU only (default: min(2, --threads) on CPU, "
                        "1 on CUDA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--timings", action="store_true",
                   help="add each proxy's seconds per candidate (<proxy>_seconds columns; the k steps included)")
    p.add_argument("-o", "--output", help="scores .csv (default: print)")
    p.add_argument("--best", help="also write the top-ranked genotype to this JSON file")
    p.set_defaults(func=cmd_score, outputs=("output", "best"))

