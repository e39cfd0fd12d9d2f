"""The `blockswap score` CSV and the proxies' ranking direction, without torch (the report, the workflow's
config check and the scorer all read these; the proxy functions themselves live in `proxies`)."""

from __future__ import annotations

# The columns of a scores CSV besides one per proxy; a proxy named like one gets "_proxy".
SCORE_COLUMNS = ("id", "params", "ops", "rank", "blocks")

# Every registered proxy and its sign: +1 when a higher value predicts a better net, −1 when lower does.
# `proxies.register_proxy` refuses a proxy missing here or registered with another sign.
PROXY_SIGNS = {"fisher": 1, "grad_norm": 1, "snip": 1, "l2_norm": 1, "synflow": 1, "naswot": 1, "params": 1,
               "train_accuracy": 1, "train_loss": -1}


def score_column(proxy: str) -> str:
    return proxy + "_proxy" if proxy in SCORE_COLUMNS else proxy
