"""What every command shares: one-line usage errors, argument types, and writing the answer."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re

from ..core.errors import BlockswapError
from ..core.files import write_json, write_text


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, except that a lone % in a help text is a percent sign ("95% interval"): argparse %-formats
    every help text, so without this one such text makes --help end in a traceback. %(default)s and %% keep
    their meaning."""

    def _get_help_string(self, action) -> str:
        return re.sub(r"%(\(|%)?", lambda m: m[0] if m[1] else "%%", super()._get_help_string(action) or "")


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (and exit status 2, as argparse's own) and whose help texts may
    hold a % (`HelpFormatter`); the parsers of subcommands are of this class too."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        if formatter_class is argparse.RawDescriptionHelpFormatter:  # the description kept as written, % too
            formatter_class = RawDescriptionHelpFormatter
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class RawDescriptionHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """`HelpFormatter` that keeps the description and epilog as written."""


SUFFIXES = {"k": 1e3, "m": 1e6, "g": 1e9}


def budget_number(text: str) -> float:
    """An argparse type, the one of every budget (params, MACs, ops, microseconds): a finite number > 0,
    optionally with K, M or G (2M = 2,000,000)."""
    scale = SUFFIXES.get(text.strip()[-1:].lower(), 1)
    try:
        value = float(text.strip()[:-1] if scale != 1 else text) * scale
    except ValueError:
        value = -1
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number such as 40000, 40K or 2M, got {text!r}")
    return value


def boolean(text: str) -> bool:
    """An argparse type: true/false, yes/no, on/off or 1/0 in any case (`Settings.flags` writes True/False)."""
    value = {"true": True, "yes": True, "on": True, "1": True,
             "false": False, "no": False, "off": False, "0": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


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


def number_list(cast):
    """An argparse type: comma-separated numbers."""
    def parse(text: str) -> list:
        try:
            return [cast(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    return parse


FIELD_PARSERS = {"int_list": number_list(int), "float_list": number_list(float), "bool": boolean}
"""The argparse types of the settings fields whose `metadata["type"]` names one (others parse as their type)."""


def add_field_option(p: argparse.ArgumentParser, f: dataclasses.Field, *, given_only: bool = False,
                     default=None) -> None:
    """A settings field (its metadata: "type", "help", optional "choices") as the option --<name>, with the
    field's default (or `default`, where a command differs) stated in its help. `given_only`: the option's
    argparse default is None, so that a value given is told from one left out."""
    value = f.default if default is None else default
    kind = f.metadata["type"] or type(value)
    listed = isinstance(value, tuple)
    shown = ",".join(map(str, value)) if listed else value
    p.add_argument("--" + f.name.replace("_", "-"), type=FIELD_PARSERS.get(kind, kind),
                   default=None if given_only else list(value) if listed else value,
                   choices=f.metadata.get("choices"),
                   help=f.metadata["help"] + ("" if value is None else f" (default {shown})"))


def parse_labels(pairs: list[str]) -> dict:
    """--label KEY=VALUE options (repeatable) as the metrics' labels."""
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BlockswapError(f"--label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


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


def add_shape_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in-channels", type=int_at_least(1), help="input channels (default: the model's, 3)")
    p.add_argument("--num-classes", type=int_at_least(1),
                   help="classes (default: the model's, 10 for WRN, 1000 for ResNet)")
    p.add_argument("--image-size", type=int_at_least(1),
                   help="input side in pixels (default: 32 for WRN, 224 for ResNet)")
