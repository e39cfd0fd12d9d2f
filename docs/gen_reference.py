"""The reference pages generated from the code, never copied by hand: the configuration (from the workflow's JSON
Schemas), the command line (from `blockswap.cli.build_parser()`) and the API (one mkdocstrings page a module).

docs/hooks.py adds them to every `mkdocs build` as generated files; `python docs/gen_reference.py OUT` writes
them into OUT to read them without MkDocs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = {"config": ROOT / "workflow/schemas/config.schema.yaml",
           "compress": ROOT / "workflow/schemas/compress.schema.yaml"}
PACKAGE = ROOT / "src" / "blockswap"


# ------------------------------------------------------------------------------------------- configuration
def _type(node: dict) -> str:
    kind = node.get("type", "object" if "properties" in node else "")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if "enum" in node:
        kinds = ["one of " + ", ".join(f"`{v}`" for v in node["enum"])]
    elif "const" in node:
        kinds = [f"`{node['const']}`"]
    if "array" in kinds and isinstance(node.get("items"), dict):
        kinds[kinds.index("array")] = f"array of {_type(node['items']) or 'any'}"
    return " or ".join(kinds)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(node: dict) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    return "{}" if value == {} else f"`{json.dumps(value, ensure_ascii=False)}`"


def _rows(node: dict, prefix: str, definitions: dict, required=()) -> list[str]:
    rows = []
    for key, prop in node.get("properties", {}).items():
        ref = prop.get("$ref")
        target = definitions[ref.rsplit("/", 1)[1]] if ref else prop
        merged = {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
        name = f"{prefix}{key}"
        description = merged.get("description", target.get("description", ""))
        default = _cell(_default(merged)) or ("(required)" if key in required else "")
        rows.append(f"| `{name}` | {_cell(_type(merged))} | {default} | {_cell(description)} |")
        if "properties" in target:
            rows += _rows(target, f"{name}.", definitions, target.get("required", ()))
    return rows


def config_reference() -> str:
    out = ["# Configuration reference", "",
           "Generated at every documentation build from the workflow's JSON Schemas, which the workflow validates",
           "each profile against before any job runs: every key, its type, its default and what it does. A key a",
           "profile leaves out takes the default given here (never another profile's value); a key not listed is",
           "refused. Nested keys are written with dots: `teacher.recipe.epochs` is `epochs` under `recipe` under",
           "`teacher`.", ""]
    for path in SCHEMAS.values():
        schema = yaml.safe_load(path.read_text())
        definitions = schema.get("definitions", {})
        out += [f"## `{path.name}`: {schema['title']}", "",
                f"`{path.relative_to(ROOT)}`. {_cell(schema.get('description', ''))}", "",
                "| key | type | default | description |", "|---|---|---|---|",
                *_rows(schema, "", definitions, schema.get("required", ())), ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- command line
def _walk(parser: argparse.ArgumentParser, path: list[str]):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + [name])


def commands() -> list[tuple[list[str], argparse.ArgumentParser]]:
    """Every (command path, parser) of `blockswap`, the top level first, in the parser's order."""
    sys.path.insert(0, str(ROOT / "src"))
    from blockswap.cli import build_parser

    return list(_walk(build_parser(), ["blockswap"]))


def cli_reference() -> str:
    os.environ["COLUMNS"] = "110"  # argparse wraps its help at the terminal's width: the same page everywhere
    out = ["# Command-line reference", "",
           "Generated at every documentation build from the parser itself (`blockswap.cli.build_parser()`): each",
           "command's and subcommand's `--help`, as `blockswap … --help` prints it. `python -m blockswap` is the",
           "same program.", ""]
    for path, parser in commands():
        depth = min(len(path), 4)
        out += [f"{'#' * (depth + 1)} `{' '.join(path)}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- API
def modules() -> list[str]:
    """Every module of the package, dotted, sorted."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def api_pages() -> dict[str, str]:
    """{path under docs/: page} for the API reference: an index and one page a module."""
    pages = {}
    rows = []
    for name in modules():
        if name.endswith("__main__"):
            continue
        page = f"reference/api/{name}.md"
        pages[page] = f"# `{name}`\n\n::: {name}\n"
        rows.append(f"- [`{name}`]({name}.md)")
    pages["reference/api/index.md"] = "\n".join(
        ["# API reference", "", "Generated from the docstrings of every module (see",
         "[Architecture](../../architecture.md) for how the modules depend on each other).", "", *rows, ""])
    return pages


# ------------------------------------------------------------------------------------------- results
def results_index() -> str:
    """The list of the results pages in docs/results/, each written by a run (`blockswap results-page --docs`)."""
    found = sorted(p.stem for p in (ROOT / "docs/results").glob("*.md"))
    out = ["# Results", "",
           "Each profile's run writes its own page, `results/<profile>/RESULTS.md`: the claims with their verdicts,",
           "the main table, the figures, and the commit, machine, thread counts, wall time and CPU time of the run,",
           "all read from the run's own files (no number is typed in; `tests/test_results_page.py` checks that).",
           "To publish one here after a run of the current code:", "",
           "```bash", "blockswap results-page results/default --docs docs/results", "```", ""]
    if found:
        out += [f"- [{name}]({name}.md)" for name in found]
    else:
        out += ["No run of the current code has been published here yet."]
    return "\n".join(out + [""])


def pages() -> dict[str, str]:
    return {"reference/configuration.md": config_reference(), "reference/cli.md": cli_reference(),
            "results/index.md": results_index(), **api_pages()}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "site-reference")
    for relative, text in pages().items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_text(text)
    print(f"{len(pages())} pages in {out}")
