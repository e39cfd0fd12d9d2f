"""The `blockswap score` CSV and the proxies' signs, as plain data (no torch): the report reads both.

A scores CSV has the columns `id, params, ops, <one per proxy>, [<proxy>_seconds per proxy,] rank, blocks,
missing`, best-ranked first; a proxy named like a fixed column gets the column `<name>_proxy`. A proxy without
a value for a candidate reads `nan` there, and `missing` says why ("proxy: reason; …").
A proxy's sign makes "higher = better": `sign * value` is what ranking sorts on.
`blockswap.search.proxies.register_proxy` refuses a proxy missing here or registered with another sign; the
workflow's config check reads the names from here.
"""

from __future__ import annotations

import csv
import io
import os

from .errors import BlockswapError

# The columns of a `blockswap score` CSV besides one per proxy.
SCORE_COLUMNS = ("id", "params", "ops", "rank", "blocks", "missing")
SECONDS = "_seconds"  # the suffix of a proxy's timing column

# +1: a higher raw value is better; -1: a lower one is.
PROXY_SIGNS = {"fisher": 1, "grad_norm": 1, "snip": 1, "l2_norm": 1, "synflow": 1, "naswot": 1, "params": 1,
               "train_accuracy": 1, "train_loss": -1, "flops": 1, "plain": 1, "grasp": 1, "jacov": 1,
               "epe_nas": 1, "zen": 1, "zico": 1, "meco": 1}
# Other names the field uses for a proxy listed here (NAS-Bench-Suite-Zero's).
PROXY_ALIASES = {"nwot": "naswot"}


def score_column(proxy: str) -> str:
    """The CSV column of a proxy's values."""
    return proxy + "_proxy" if proxy in SCORE_COLUMNS else proxy


def seconds_column(proxy: str) -> str:
    """The CSV column of the seconds a proxy took per candidate (written with `blockswap score --timings`)."""
    return proxy + SECONDS


def proxy_of_column(column: str) -> str:
    """The proxy a (non-fixed) CSV column holds: the inverse of `score_column`."""
    return column[: -len("_proxy")] if column.endswith("_proxy") else column


def format_scores(rows: list[dict], proxies: list[str], timings: bool = False) -> str:
    """The CSV text of scored candidates: each row {id, params, ops, scores: {proxy: value}, rank, blocks},
    and optionally `missing` {proxy: why} and (with `timings`) `seconds` {proxy: seconds}."""
    header = ["id", "params", "ops", *[score_column(p) for p in proxies],
              *([seconds_column(p) for p in proxies] if timings else []), "rank", "blocks", "missing"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in sorted(rows, key=lambda r: r["rank"]):  # best first
        seconds = [f"{r['seconds'][p]:.4g}" for p in proxies] if timings else []
        missing = "; ".join(f"{p}: {why}" for p, why in r.get("missing", {}).items())
        writer.writerow([r["id"], r["params"], r["ops"], *[repr(r["scores"][p]) for p in proxies], *seconds,
                         r["rank"], " ".join(r["blocks"]), missing])
    return buf.getvalue()


def read_scores(path: str | os.PathLike) -> tuple[list[dict], dict[str, str]]:
    """A scores CSV → (rows with the proxy columns as floats, {proxy: column}), or one clear error."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows, columns = list(reader), reader.fieldnames or []
    except FileNotFoundError:
        raise BlockswapError(f"{path}: scores file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BlockswapError(f"{path}: not a readable scores CSV ({str(e).splitlines()[0]})") from None
    if "id" not in columns:
        raise BlockswapError(f"{path}: no 'id' column (expected the CSV of `blockswap score`)")
    if not rows:
        raise BlockswapError(f"{path}: no candidates")
    proxies = {proxy_of_column(c): c for c in columns if c not in SCORE_COLUMNS and not c.endswith(SECONDS)}
    if not proxies:
        raise BlockswapError(f"{path}: no proxy columns besides {', '.join(SCORE_COLUMNS)}")
    for row in rows:
        for col in proxies.values():
            try:
                row[col] = float(row[col])
            except (ValueError, TypeError):
                raise BlockswapError(f"{path}: column {col!r} is not numeric ({row[col]!r})") from None
    return rows, proxies
