"""`blockswap <command>`: the one entry point the workflow rules call.

Each command prints a JSON object or writes the file named by -o (atomically). A mistake a user can
make ends in one line on stderr and exit status 2, with nothing half-written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import BlockswapError
from .files import write_json, write_text


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

    g = load(args.genotype)
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


# --- sample --------------------------------------------------------------------------------------
def cmd_sample(args) -> None:
    from .counting import analytic
    from .sampling import sample

    genotypes = sample(args.model, args.budget, args.samples, seed=args.seed, tolerance=args.tolerance,
                       metric=args.metric, candidates=args.candidates, sampler=args.sampler,
                       in_channels=args.in_channels, num_classes=args.num_classes, image_size=args.image_size)
    write_jsonl([{"id": g.id, **g.to_dict(), **analytic(g).to_dict()} for g in genotypes], args.output)


def add_shape_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in-channels", type=int, help="input channels (default: the model's, 3)")
    p.add_argument("--num-classes", type=int, help="classes (default: the model's, 10 for WRN, 1000 for ResNet)")
    p.add_argument("--image-size", type=int, help="input side in pixels (default: 32 for WRN, 224 for ResNet)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blockswap", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"blockswap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("count", help="params and Ops of a genotype")
    p.add_argument("genotype", help="genotype JSON file")
    p.add_argument("--measure", action="store_true", help="also build the network and check the counts on it")
    p.add_argument("-o", "--output")
    p.set_defaults(func=cmd_count)

    p = sub.add_parser("genotype", help="genotype utilities")
    gsub = p.add_subparsers(dest="genotype_command", required=True, metavar="SUBCOMMAND")
    q = gsub.add_parser("import-legacy", help="convert an original BlockSwap genotype CSV")
    q.add_argument("csv")
    q.add_argument("--model", required=True, help="e.g. wrn-40-2 or resnet34")
    add_shape_args(q)
    q.add_argument("-o", "--output", help="OUT.json for a one-row CSV, or OUT.jsonl for all rows")
    q.set_defaults(func=cmd_import_legacy)

    p = sub.add_parser("sample", help="sample student genotypes within a budget")
    p.add_argument("--model", required=True)
    p.add_argument("--budget", type=float, required=True, help="target params (or Ops with --metric ops)")
    p.add_argument("--tolerance", type=float, default=0.025, help="accept strictly within ±this fraction")
    p.add_argument("--metric", choices=("params", "ops"), default="params")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--candidates", default="blockswap",
                   help="candidate set: blockswap (23 types), paper (21), moonshine, all, or a comma list")
    p.add_argument("--sampler", choices=("exact", "reference"), default="exact",
                   help="exact: uniform over the in-budget set without rejection; reference: the paper's")
    add_shape_args(p)
    p.add_argument("-o", "--output", help="candidates .jsonl (one genotype per line)")
    p.set_defaults(func=cmd_sample)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BlockswapError as e:
        print(f"blockswap {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
