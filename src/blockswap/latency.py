"""Latency budgets: what each block type costs in time at each block of a network, measured on the target
device, as the samplers' cost table (BlockSwap §6 names latency budgets as future work).

A table is measured once per (model, input shape, device, batch size, threads): every valid (block, type)
module is timed alone in eval mode under `torch.inference_mode`, the median of `repeats` runs after a
warm-up; blocks of the same (cin, cout, stride, size) share one measurement. The stem, the head and what a
whole network costs beyond its blocks (module calls, the residual additions, caches) form one fixed term,
fitted as the median over `calibration` random networks of (measured whole − sum of its blocks). A net's
predicted latency is the fixed term plus its blocks'; `check` measures nets whole and reports the error.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .arch import get_architecture
from .blocktypes import candidate_set, get_block
from .errors import BlockswapError
from .files import read_json, write_json
from .genotype import Genotype
from .models import build_block, create_model
from .sampling import CostTable

WARMUP = 5  # untimed runs first: oneDNN/cuDNN pick and cache their kernels on the first calls
REPEATS = 30  # timed runs per module; the median is robust to the odd preempted run
CALIBRATION = 8  # random networks whose whole-vs-blocks difference gives the fixed term
BATCH_SIZE = 1  # latency as a deployed net answers one request


def device_name(device: torch.device) -> str:
    """What the times were measured on: the GPU's name, or the CPU's model and the thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def median_us(fn: Callable[[], object], device: torch.device, repeats: int = REPEATS) -> float:
    """Median wall time of `fn()` in microseconds (CUDA: synchronised around each run)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _timed_module(module: torch.nn.Module, shape: tuple[int, ...], device: torch.device, repeats: int) -> float:
    module = module.to(device).eval()
    x = torch.randn(shape, device=device)
    with torch.inference_mode():
        return median_us(lambda: module(x), device, repeats)


def measure_table(model: str, candidates="blockswap", device: str | torch.device = "cpu",
                  batch_size: int = BATCH_SIZE, repeats: int = REPEATS, calibration: int = CALIBRATION,
                  seed: int = 0, in_channels: int | None = None, num_classes: int | None = None,
                  image_size: int | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Measure the latency table of `model` over the candidate types on `device` (a JSON-ready dict)."""
    from .sampling import sample

    device = torch.device(device)
    arch = get_architecture(model)
    shape = {"in_channels": in_channels or arch.default_in_channels,
             "num_classes": num_classes or arch.default_num_classes,
             "image_size": image_size or arch.default_image_size}
    types = candidate_set(candidates)
    torch.manual_seed(seed)
    shared: dict[tuple, float] = {}
    blocks = []
    slots = arch.slots(shape["image_size"])
    for slot in slots:
        row = {}
        for name in types:
            btype = get_block(name)
            if not btype.is_valid(slot.cin, slot.cout):
                continue
            key = (name, slot.cin, slot.cout, slot.stride, slot.size)
            if key not in shared:
                shared[key] = _timed_module(build_block(arch, slot, btype),
                                            (batch_size, slot.cin, slot.size, slot.size), device, repeats)
            row[name] = round(shared[key], 2)
        blocks.append(row)
        if progress:
            progress(f"block {slot.index + 1}/{len(slots)}")
    table = {"model": model, **shape, "candidates": types, "device": device.type,
             "device_name": device_name(device), "batch_size": batch_size, "threads": torch.get_num_threads(),
             "repeats": repeats, "torch": torch.__version__, "blockswap": __version__, "fixed_us": 0.0,
             "blocks": blocks, "calibration": []}
    # The fixed term: mid-budget random nets, measured whole.
    params = CostTable.build(model, types, "params", **shape).feasible_range
    for g in sample(model, sum(params) / 2, calibration, seed=seed, tolerance=0.5, candidates=types, **shape):
        whole = measure_network(g, device, batch_size, repeats)
        table["calibration"].append({"blocks": list(g.blocks), "measured_us": round(whole, 2),
                                     "blocks_us": round(sum_blocks(table, g), 2)})
    table["fixed_us"] = round(statistics.median(c["measured_us"] - c["blocks_us"] for c in table["calibration"]), 2)
    return table


def measure_network(g: Genotype, device: str | torch.device = "cpu", batch_size: int = BATCH_SIZE,
                    repeats: int = REPEATS, net: torch.nn.Module | None = None) -> float:
    """Median latency (µs) of the whole network of `g` (or `net`, e.g. a pruned one), as the blocks are timed."""
    device = torch.device(device)
    return _timed_module(net or create_model(g), (batch_size, g.in_channels, g.image_size, g.image_size), device,
                         repeats)


def sum_blocks(table: dict, g: Genotype) -> float:
    """Σ over the blocks of `g` of their latency in `table` (µs)."""
    try:
        return sum(row[name] for row, name in zip(table["blocks"], g.blocks, strict=True))
    except (KeyError, ValueError):
        raise BlockswapError(f"the latency table of {table['model']} has no entry for {g.id} "
                             f"({', '.join(g.blocks)}); measure a table over its block types") from None


def predict(table: dict, g: Genotype) -> float:
    """Predicted latency of `g` (µs): the table's fixed term plus its blocks'."""
    return table["fixed_us"] + sum_blocks(table, g)


def load_table(path: str | os.PathLike, device: str | torch.device, model: str | None = None) -> dict:
    """A latency table measured on this device (and for `model`), or one line saying why it cannot be used."""
    table = read_json(path, "latency table")
    if not isinstance(table, dict) or not {"model", "device", "blocks", "fixed_us"} <= set(table):
        raise BlockswapError(f"{path}: not a latency table; write one with `blockswap latency-table`")
    device = torch.device(device)
    if table["device"] != device.type:
        raise BlockswapError(f"{path}: measured on {table['device']} ({table['device_name']}), not {device.type}; "
                             f"measure a table on this device with `blockswap latency-table --device {device.type}`")
    if model is not None and table["model"] != model:
        raise BlockswapError(f"{path}: a latency table of {table['model']}, not {model}")
    here = device_name(device)
    if table["device_name"] != here:
        raise BlockswapError(f"{path}: measured on {table['device_name']}, this is {here}; "
                             "latency does not carry over: measure a table here")
    return table


def cost_table(table: dict) -> CostTable:
    """The samplers' cost table of a latency table, in whole microseconds (rounding each block's median by
    at most 0.5 µs)."""
    rows = table["blocks"]
    return CostTable(table["model"], table["in_channels"], table["num_classes"], table["image_size"], "latency",
                     int(round(table["fixed_us"])), [list(r) for r in rows],
                     [np.array([round(v) for v in r.values()], dtype=np.int64) for r in rows])


def check(table: dict, genotypes: list[Genotype], device: str | torch.device,
          repeats: int = REPEATS) -> list[dict]:
    """Predicted against measured latency of `genotypes`, one record each."""
    out = []
    for g in genotypes:
        predicted, measured = predict(table, g), measure_network(g, device, table["batch_size"], repeats)
        out.append({"id": g.id, "predicted_us": round(predicted, 2), "measured_us": round(measured, 2),
                    "error": round(predicted / measured - 1, 4)})
    return out


def save_table(table: dict, path: str | os.PathLike) -> Path:
    write_json(path, table)
    return Path(path)
