"""The torch-free core and the one registry idiom."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from blockswap.core.errors import BlockswapError

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "blockswap"
# The package's functions import what they need on call (`blockswap.load`, so that `import blockswap` stays free
# of torch): entry points for users, never run by the package's modules, so they are not edges of the graph.
LAZY_EXPORTS = {"blockswap": {"blockswap.compress.deploy"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """{module: the package's modules it imports}, function-level imports included, `if TYPE_CHECKING:` not."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for i in ast.walk(tree) if isinstance(i, ast.If)
                       and getattr(i.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(i)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                for a in node.names:  # `from . import x` names a module; `from .m import f` the module m
                    deps.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        graph[name] = {d for d in deps if d in modules} - {name} - LAZY_EXPORTS.get(name, set())
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph`, or None (depth-first search for a back edge)."""
    state, path = {}, []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        state[m] = "done"
        path.pop()
        return None

    return next((c for m in sorted(graph) if m not in state and (c := visit(m))), None)


def _core() -> list[str]:
    """The package root and core/, and the workflow's torch-free planners that Snakemake imports."""
    return ["blockswap", *sorted(_module_name(p) for p in (PACKAGE / "core").glob("*.py")),
            "blockswap.workflow.plan", "blockswap.workflow.plan_detection", "blockswap.detection.settings"]


def test_the_core_imports_no_torch():
    code = ("import sys; " + "; ".join(f"import {m}" for m in _core())
            + "; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_module_imports_back_up_its_importers():
    graph = _imports()
    assert len(graph) > 40 and "blockswap.detection.build" in graph["blockswap.detection.train"]
    assert _cycle(graph) is None, " → ".join(_cycle(graph))
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]  # the check sees one


def test_the_core_imports_only_the_core():
    core = {m for m in _core() if m == "blockswap" or m.startswith("blockswap.core.")}
    graph = _imports()
    assert {m: sorted(graph[m] - core) for m in core if graph[m] - core} == {}


def _registries():
    from blockswap.core.arch import MODELS
    from blockswap.core.blocktypes import BLOCK_TYPES
    from blockswap.data.datasets import DATASETS
    from blockswap.report import REPORTS
    from blockswap.search.proxies import PROXIES

    return {"block type": BLOCK_TYPES, "model": MODELS, "dataset": DATASETS, "proxy": PROXIES, "report": REPORTS}


@pytest.mark.parametrize("what", ["block type", "model", "dataset", "proxy", "report"])
def test_every_registry_refuses_duplicates_and_suggests_names(what):
    registry = _registries()[what]
    first = registry.names()[0]
    with pytest.raises(ValueError, match="registered twice"):
        registry.add(first, registry.get(first))
    with pytest.raises(BlockswapError, match=f"unknown {what} '{first}x'. Did you mean '{first}'"):
        registry.get(first + "x")
