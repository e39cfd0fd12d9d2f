"""The `blockswap score` CSV and the proxies' signs, as plain data (no torch): the report reads both.

A scores CSV has the columns `id, params, ops, <one per proxy>, rank, blocks`, best-ranked first; a proxy
named like a fixed column gets the column `<name>_proxy`. A proxy's sign makes "higher = better":
`sign * value` is what ranking sorts on. `blockswap.proxies.register_proxy` refuses a proxy missing here
or registered with another sign; the workflow's config check reads the names from here.
"""

from __future__ import annotations

# The columns of a `blockswap score` CSV besides one per proxy.
SCORE_COLUMNS = ("id", "params", "ops", "rank", "blocks")

# +1: a higher raw value is better; -1: a lower one is.
PROXY_SIGNS = {"fisher": 1, "grad_norm": 1, "snip": 1, "l2_norm": 1, "synflow": 1, "naswot": 1, "params": 1,
               "train_accuracy": 1, "train_loss": -1}


def score_column(proxy: str) -> str:
    """The CSV column of a proxy's values."""
    return proxy + "_proxy" if proxy in SCORE_COLUMNS else proxy


def proxy_of_column(column: str) -> str:
    """The proxy a (non-fixed) CSV column holds: the inverse of `score_column`."""
    return column[: -len("_proxy")] if column.endswith("_proxy") else column
