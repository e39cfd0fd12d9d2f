"""Run metrics files (`blockswap train`/`distill` output), reduced to what the reports use."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core import paper
from ..core.errors import BlockswapError
from ..core.files import read_json

UNLABELLED = "unlabelled"  # a metrics file whose labels name no method (trained without --label method=…)
METHODS = ("teacher", "scaled", "mbconv", "moonshine", "moonshine_kd", "moonshine_scratch", "blockswap",
           "blockswap_scratch", "structured", "structured_scratch", "structured_crs_off", "random", "samples",
           UNLABELLED)
METHOD_LABEL = {"teacher": "Teacher", "scaled": "Scaled WRN/ResNet", "mbconv": "MBConv6",
                "moonshine": "Moonshine (single block type)", "moonshine_kd": "Moonshine, KD instead of AT",
                "moonshine_scratch": "Moonshine, no teacher", "blockswap": "BlockSwap",
                "blockswap_scratch": "BlockSwap pick, no teacher", "structured": "Structured substitution",
                "structured_scratch": "Structured, no teacher", "structured_crs_off": "Structured, CRS-wd off",
                "random": "Random mix",
                "samples": "BlockSwap pick (n samples)", UNLABELLED: "Unlabelled"}
LABEL_HINT = "label runs at training time with --label method=NAME"


@dataclass(frozen=True)
class Run:
    """One trained network's metrics file, reduced to what the reports use."""
    path: str
    method: str
    budget: int | None
    model: str | None
    block: str | None
    samples: int | None
    id: str
    blocks: tuple[str, ...]
    params: int
    ops: int
    macs: int | None
    error: float
    top5: float | None
    seed: int | None = None  # labels.seed (the student's), else labels.teacher_seed: pairs runs
    teacher_seed: int | None = None  # labels.teacher_seed; None for a run without a teacher


def parse_count(value) -> int:
    """200000, '200000', '200K', '0.2M', '8.1M' → int; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().upper()
        scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], 1.0)
        number = float(text[:-1] if scale != 1.0 else text) * scale
    if not math.isfinite(number) or number <= 0:
        raise ValueError(value)
    return round(number)


def _number(d: dict, key: str, path: str, required: bool = True) -> float | None:
    v = d.get(key)
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BlockswapError(f"{path}: '{key}' must be a finite number, got {v!r}")
    return v


def _method(labels: dict, path: str) -> str:
    """labels.method; a file without one (trained without --label method=…) is UNLABELLED."""
    method = labels.get("method")
    if method in (None, ""):
        return UNLABELLED
    if method not in METHODS or method == UNLABELLED:
        named = [m for m in METHODS if m != UNLABELLED]
        raise BlockswapError(f"{path}: labels.method is {method!r}; expected one of {', '.join(named)}")
    return method


def load_run(path: str) -> Run:
    d = read_json(path, "metrics file")
    if not isinstance(d, dict):
        raise BlockswapError(f"{path}: expected a JSON object of run metrics")
    labels = d.get("labels")
    if not isinstance(labels, dict):
        raise BlockswapError(f"{path}: no 'labels' object (expected a `blockswap train`/`distill` metrics file)")
    method = _method(labels, path)

    def count_label(key: str) -> int | None:
        if labels.get(key) in (None, ""):
            return None
        try:
            return parse_count(labels[key])
        except ValueError:
            raise BlockswapError(f"{path}: labels.{key} must be a positive count, got {labels[key]!r}") from None

    genotype = d.get("genotype") if isinstance(d.get("genotype"), dict) else {}
    run_id = d.get("genotype_id")
    if not isinstance(run_id, str) or not run_id:
        raise BlockswapError(f"{path}: no 'genotype_id' (expected a `blockswap train`/`distill` metrics file)")
    return Run(
        path=str(path), method=method, budget=count_label("budget"),
        model=labels.get("model") or genotype.get("model"), block=labels.get("block") or None,
        samples=count_label("samples"), id=run_id, blocks=tuple(genotype.get("blocks") or ()),
        params=int(_number(d, "params", path)), ops=int(_number(d, "ops", path)),
        macs=None if d.get("macs") is None else int(_number(d, "macs", path)),
        error=float(_number(d, "test_top1_error", path)), top5=_number(d, "test_top5_error", path, required=False),
        seed=_seed(labels, "seed", path), teacher_seed=_seed(labels, "teacher_seed", path))


def _seed(labels: dict, key: str, path: str) -> int | None:
    """labels[key] as an integer; labels.seed falls back to labels.teacher_seed (one student per teacher,
    seeded like it)."""
    value = labels.get(key)
    if value in (None, "") and key == "seed":
        return _seed(labels, "teacher_seed", path)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BlockswapError(f"{path}: labels.{key} must be an integer, got {value!r}") from None


def load_runs(paths: list[str]) -> list[Run]:
    if not paths:
        raise BlockswapError("no metrics files given (--metrics)")
    return [load_run(p) for p in paths]


def select(runs: list[Run], methods: tuple[str, ...], what: str) -> list[Run]:
    chosen = [r for r in runs if r.method in methods]
    if not chosen:
        raise BlockswapError(f"{what}: none of the {len(runs)} metrics files has labels.method "
                             f"{' or '.join(methods)} ({LABEL_HINT})")
    return chosen


def group_runs(runs: list[Run], key) -> dict:
    groups: dict = {}
    for r in runs:
        groups.setdefault(key(r), []).append(r)
    return groups


def error_by_net(runs: list[Run]) -> dict[str, float]:
    """{genotype id: its mean error over the runs (seeds) of that net}: one value per net, however many
    times it was trained."""
    from .stats import mean_std

    return {i: mean_std(r.error for r in rs)[0] for i, rs in group_runs(runs, lambda r: r.id).items()}


def budget_near(params: int, budgets) -> int | None:
    """The budget among `budgets` within the sampler's tolerance of `params` (nearest), or None."""
    hits = [b for b in budgets if paper.near(params, b)]
    return min(hits, key=lambda b: abs(params - b)) if hits else None
