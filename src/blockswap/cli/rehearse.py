"""`blockswap rehearse`: a paper profile's config shrunk onto the CPU, for `make rehearse PROFILE=<name>`."""

from __future__ import annotations

from pathlib import Path

from .args import emit


def cmd_rehearse(args) -> None:
    from ..workflow.rehearsal import prepare

    overlay, sources = prepare(Path(args.profile), Path(args.out))
    emit({"overlay": str(overlay), "data": sources,
          "run": f"snakemake --cores all --configfile {args.profile} {overlay}"}, None)


def add_commands(sub) -> None:
    p = sub.add_parser("rehearse", help="write a profile's rehearsal overlay (and stand-in data where needed)")
    p.add_argument("profile", help="the profile's config, e.g. workflow/config/cifar10.yaml")
    p.add_argument("--out", required=True, help="folder of the overlay, the stand-ins and the results")
    p.set_defaults(func=cmd_rehearse, output_dirs=("out",))
