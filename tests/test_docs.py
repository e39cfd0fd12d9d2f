"""The documentation against the code: the architecture page's layers, and the generated reference pages."""

import re
import sys
from pathlib import Path

import yaml

from test_core import _imports

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
import gen_reference  # noqa: E402


def _table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped of backticks) of the first table after `## heading`."""
    section = text.split(f"\n## {heading}\n", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    rows = [[c.strip().strip("`") for c in r.strip("|").split("|")] for r in rows]
    return [r for r in rows[2:]]  # without the header and its rule


def _folder(module: str) -> str:
    """The layer of a module: its folder (the package's __init__ the core's, __main__ the command line's)."""
    parts = module.split(".")
    return "core" if len(parts) == 1 else "cli" if parts[1] == "__main__" else parts[1]


def test_the_architecture_page_is_the_code():
    page = (ROOT / "docs/architecture.md").read_text()
    order = [row[0] for row in _table(page, "Layers")]
    graph = _imports()
    flat = [m for m in graph if len(m.split(".")) == 2 and m != "blockswap.__main__"
            and not (ROOT / "src" / m.replace(".", "/") / "__init__.py").exists()]
    assert flat == [], "modules outside a folder"
    assert len(order) == len(set(order)) and sorted(order) == sorted({_folder(m) for m in graph})
    upward = [f"{m} ({_folder(m)}) imports {d} ({_folder(d)})" for m, deps in graph.items() for d in deps
              if order.index(_folder(d)) > order.index(_folder(m))]
    assert upward == []
    assert _folder("blockswap.compress.pruning") == "compress" and _folder("blockswap") == "core"


def test_the_reference_pages_cover_every_key_command_and_module():
    pages = gen_reference.pages()
    config = pages["reference/configuration.md"]
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    for key, prop in schema["properties"].items():
        assert f"| `{key}` |" in config
        for sub in prop.get("properties", {}):
            assert f"| `{key}.{sub}` |" in config
    assert "| `teacher.recipe.epochs` | integer | `200` |" in config  # through the recipe's $ref, its default
    cli = pages["reference/cli.md"]
    paths = [" ".join(path) for path, _ in gen_reference.commands()]
    assert {"blockswap compress", "blockswap report claims", "blockswap detect train"} <= set(paths)
    assert all(f"`{p}`" in cli for p in paths)
    assert {f"reference/api/{m}.md" for m in gen_reference.modules() if not m.endswith("__main__")} < set(pages)
    assert re.search(r"^::: blockswap\.search\.fisher$", pages["reference/api/blockswap.search.fisher.md"], re.M)
