"""`blockswap <command>`: the one entry point the workflow rules call.

Each command prints a JSON object or writes the file named by -o (atomically). A mistake a user can
make ends in one line on stderr and exit status 2, with nothing half-written. A stop signal that a command
survives with its work kept (`errors.Stopped`: a training's resume point, compress's finished stages) ends in one
line and exit status 128 + the signal (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..core.errors import BlockswapError, Stopped
from ..core.files import check_output, check_output_dir
from . import compress, deploy, detection, rehearse, reports, search, training
from .args import Parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="blockswap", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"blockswap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for commands in (search, training, compress, deploy, reports, detection, rehearse):
        commands.add_commands(sub)
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
    except Stopped as e:
        print(f"blockswap {args.command}: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print(f"blockswap {args.command}: interrupted; no output written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
