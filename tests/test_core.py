"""The torch-free core and the one registry idiom."""

import subprocess
import sys

import pytest

from blockswap.errors import BlockswapError

CORE = ["registry", "errors", "files", "recipe", "substitutions", "blocktypes", "arch", "genotype", "counting",
        "sampling", "scores", "datadirs", "plan", "paper"]


def test_the_core_imports_no_torch():
    code = ("import sys; " + "; ".join(f"import blockswap.{m}" for m in CORE)
            + "; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _registries():
    from blockswap.arch import MODELS
    from blockswap.blocktypes import BLOCK_TYPES
    from blockswap.data import DATASETS
    from blockswap.proxies import PROXIES
    from blockswap.report import REPORTS

    return {"block type": BLOCK_TYPES, "model": MODELS, "dataset": DATASETS, "proxy": PROXIES, "report": REPORTS}


@pytest.mark.parametrize("what", ["block type", "model", "dataset", "proxy", "report"])
def test_every_registry_refuses_duplicates_and_suggests_names(what):
    registry = _registries()[what]
    first = registry.names()[0]
    with pytest.raises(ValueError, match="registered twice"):
        registry.add(first, registry.get(first))
    with pytest.raises(BlockswapError, match=f"unknown {what} '{first}x'. Did you mean '{first}'"):
        registry.get(first + "x")
