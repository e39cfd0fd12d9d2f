"""Latency budgets: what each block type costs in time at each block of a network, measured on the target
device, as the samplers' cost table (BlockSwap §6 names latency budgets as future work); and latency as a
report states it, a median with its spread.

A table is measured once per (model, input shape, device, batch size, threads), and records all of them: a
job under a latency budget must run at the table's thread count, since a CPU net's latency scales with it.
Every valid (block, type) module is timed alone in eval mode under `torch.inference_mode`, the median of
`repeats` runs after a warm-up; blocks of the same (cin, cout, stride, size) share one measurement.
A whole network is predicted as `fixed + scale · Σ blocks` (`predict`), both fitted by non-negative least
squares to `calibration` random networks measured whole, spread over the feasible range:
  * `fixed` is what a network costs beyond its blocks - the stem, the head, the module calls between - a
    time, so never negative. (Fitted alone, as the median of whole − Σ blocks, it came out −39,023 µs for a
    ResNet-18: its blocks timed one by one summed to more than the whole net, so the term meant nothing.)
  * `scale` absorbs such a systematic difference between a block timed alone and the same block inside a
    net (its own call, its input and weights cold in the cache), so `fixed` keeps its meaning; 1 when the
    blocks add up as timed.
`check` measures nets whole and reports the prediction's error.

A report's figures (`profile`) are the median and interquartile range of `repeats` timed runs, at batch 1 (a
deployed net answering one request) and at a throughput batch (µs per image), with the runtime, the threads and
the unit: one number from a loaded machine varied by 3× between runs.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..core.arch import get_architecture
from ..core.blocktypes import get_block
from ..core.errors import BlockswapError
from ..core.files import read_json, write_json
from ..core.genotype import Genotype
from ..core.sampling import CostTable
from .models import build_block, create_model

WARMUP = 5  # untimed runs first: oneDNN/cuDNN pick and cache their kernels on the first calls
REPEATS = 30  # timed runs per module; the median is robust to the odd preempted run
CALIBRATION = 8  # random networks, measured whole, that fit the fixed term and the scale
BATCH_SIZE = 1  # latency as a deployed net answers one request
THROUGHPUT_BATCH = 32  # a report's second figure: µs per image when images come in batches
THROUGHPUT_REPEATS = 10  # timed runs of a throughput batch (each 32 images)
PYTORCH, ONNXRUNTIME = "PyTorch eager", "ONNX Runtime"


def device_name(device: torch.device) -> str:
    """What the times were measured on: the GPU's name, or the CPU's model (the threads are a table's own key)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return model


def timings_us(fn: Callable[[], object], device: torch.device, repeats: int = REPEATS,
               warmup: int = WARMUP) -> list[float]:
    """Wall times of `repeats` runs of `fn()` in microseconds, after `warmup` untimed ones (CUDA: synchronised
    around each run)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e6)
    return times


def median_us(fn: Callable[[], object], device: torch.device, repeats: int = REPEATS) -> float:
    """Median wall time of `fn()` in microseconds."""
    return statistics.median(timings_us(fn, device, repeats))


def spread(times_us: list[float], per: int = 1) -> dict:
    """Median and interquartile range of `times_us` divided by `per` (images in a batch), and their count."""
    q1, median, q3 = statistics.quantiles(times_us, n=4, method="inclusive") if len(times_us) > 1 else times_us * 3
    return {"median": round(median / per, 2), "q1": round(q1 / per, 2), "q3": round(q3 / per, 2),
            "repeats": len(times_us)}


def _timed_module(module: torch.nn.Module, shape: tuple[int, ...], device: torch.device, repeats: int) -> float:
    return statistics.median(net_timings_us(module, shape[1:], device, shape[0], repeats))


def measure_table(model: str, candidates=None, device: str | torch.device = "cpu",
                  batch_size: int = BATCH_SIZE, repeats: int = REPEATS, calibration: int = CALIBRATION,
                  seed: int = 0, in_channels: int | None = None, num_classes: int | None = None,
                  image_size: int | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Measure the latency table of `model` over the candidate types on `device` at torch's thread count (a
    JSON-ready dict)."""
    device = torch.device(device)
    arch = get_architecture(model)
    shape = {"in_channels": in_channels or arch.default_in_channels,
             "num_classes": num_classes or arch.default_num_classes,
             "image_size": image_size or arch.default_image_size}
    types = arch.candidate_types(candidates)
    torch.manual_seed(seed)
    shared: dict[tuple, float] = {}
    blocks = []
    slots = arch.slots(shape["image_size"])
    for slot in slots:
        row = {}
        for name in types:
            btype = get_block(name)
            if arch.invalid_reason(slot, btype):
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
             "repeats": repeats, "torch": torch.__version__, "blockswap": __version__, "fixed_us": 0.0, "scale": 1.0,
             "blocks": blocks, "calibration": []}
    for g in calibration_nets(model, types, calibration, seed, shape):
        whole = measure_network(g, device, batch_size, repeats)
        table["calibration"].append({"blocks": list(g.blocks), "measured_us": round(whole, 2),
                                     "blocks_us": round(sum_blocks(table, g), 2)})
    table["fixed_us"], table["scale"] = fit(table["calibration"])
    return table


def calibration_nets(model: str, types: list[str], n: int, seed: int, shape: dict) -> list[Genotype]:
    """`n` random nets at params budgets spread evenly over the feasible range, so that the fit can tell the
    fixed term from the blocks' scale (nets of one size cannot)."""
    from ..core.sampling import sample_table

    params = CostTable.build(model, types, "params", **shape)
    lo, hi = params.feasible_range
    return [sample_table(params, lo + (i + 0.5) / n * (hi - lo), 1, seed + i, tolerance=0.25)[0] for i in range(n)]


def fit(calibration: list[dict]) -> tuple[float, float]:
    """(fixed µs, scale) of measured ≈ fixed + scale · Σ blocks over the calibration nets, both non-negative
    (non-negative least squares); with one net, scale 1 and its excess, at least 0."""
    from scipy.optimize import nnls

    measured = np.array([c["measured_us"] for c in calibration])
    blocks = np.array([c["blocks_us"] for c in calibration])
    if len(calibration) < 2:
        return round(max(0.0, float(measured[0] - blocks[0])), 2), 1.0
    (fixed, scale), _ = nnls(np.stack([np.ones_like(blocks), blocks], axis=1), measured)
    return round(float(fixed), 2), round(float(scale), 4)


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
    """Predicted latency of `g` (µs): the table's fixed term plus its blocks', scaled (a table of before the
    scale was fitted: 1)."""
    return table["fixed_us"] + table.get("scale", 1.0) * sum_blocks(table, g)


SHAPE_KEYS = ("in_channels", "num_classes", "image_size")


def load_table(path: str | os.PathLike, device: str | torch.device | None, model: str | None = None,
               threads: int | None = None, shape: dict | None = None) -> dict:
    """A latency table measured on this device (and for `model`, at `threads` intra-op threads on a CPU, for
    inputs of `shape`: in_channels, num_classes, image_size), or one line saying why it cannot be used. Device
    None: the machine is not known yet (a workflow's dry run), the table's own device is taken."""
    table = read_json(path, "latency table")
    if not isinstance(table, dict) or not {"model", "device", "blocks", "fixed_us"} <= set(table):
        raise BlockswapError(f"{path}: not a latency table; write one with `blockswap latency-table`")
    if device is not None:
        _check_device(path, table, torch.device(device))
    if model is not None and table["model"] != model:
        raise BlockswapError(f"{path}: a latency table of {table['model']}, not {model}")
    device = torch.device(table["device"] if device is None else device)
    if threads is not None and device.type == "cpu" and table.get("threads") != threads:
        raise BlockswapError(f"{path}: measured at {table.get('threads')} threads, the job runs at {threads}; "
                             f"give --threads {table.get('threads')}, or measure a table with `blockswap "
                             f"latency-table --threads {threads}`")
    for key, value in (shape or {}).items():
        if value is not None and table[key] != value:
            raise BlockswapError(f"{path}: measured at {key.replace('_', '-')} {table[key]}, not {value}; "
                                 "measure a table at this shape")
    return table


def _check_device(path, table: dict, device: torch.device) -> None:
    """The table was measured on this kind of device, and on this very one."""
    if table["device"] != device.type:
        raise BlockswapError(f"{path}: measured on {table['device']} ({table['device_name']}), not {device.type}; "
                             f"measure a table on this device with `blockswap latency-table --device {device.type}`")
    there, here = re.sub(r", \d+ threads$", "", table["device_name"]), device_name(device)  # older tables: threads
    if there != here:
        raise BlockswapError(f"{path}: measured on {there}, this is {here}; "
                             "latency does not carry over: measure a table here")


def cost_table(table: dict) -> CostTable:
    """The samplers' cost table of a latency table, in whole microseconds (rounding each block's scaled median
    by at most 0.5 µs)."""
    rows, scale = table["blocks"], table.get("scale", 1.0)
    return CostTable(table["model"], table["in_channels"], table["num_classes"], table["image_size"], "latency",
                     int(round(table["fixed_us"])), [list(r) for r in rows],
                     [np.array([round(scale * v) for v in r.values()], dtype=np.int64) for r in rows])


def check(table: dict, genotypes: list[Genotype], device: str | torch.device,
          repeats: int = REPEATS) -> list[dict]:
    """Predicted against measured latency of `genotypes`, one record each."""
    out = []
    for g in genotypes:
        predicted, measured = predict(table, g), measure_network(g, device, table["batch_size"], repeats)
        out.append({"id": g.id, "predicted_us": round(predicted, 2), "measured_us": round(measured, 2),
                    "error": round(predicted / measured - 1, 4)})
    return out


def profile(net: torch.nn.Module, shape: tuple[int, int, int], device: str | torch.device = "cpu") -> dict:
    """`net`'s latency in PyTorch eager mode (eval, inference mode) on inputs of `shape` (C, H, W): `spread` at
    batch 1 (µs) and at `THROUGHPUT_BATCH` (µs per image), with the runtime and the thread count."""
    return _profile(PYTORCH, torch.get_num_threads(),
                    lambda batch, repeats, warmup: net_timings_us(net, shape, device, batch, repeats, warmup))


def net_timings_us(net: torch.nn.Module, shape: tuple[int, int, int], device: str | torch.device, batch: int,
                   repeats: int, warmup: int = WARMUP) -> list[float]:
    """`timings_us` of `net` in eval and inference mode on a random batch of `batch` inputs of `shape`."""
    device = torch.device(device)
    net = net.to(device).eval()
    x = torch.randn((batch, *shape), device=device)
    with torch.inference_mode():
        return timings_us(lambda: net(x), device, repeats, warmup)


def onnx_profile(path: str | os.PathLike, shape: tuple[int, int, int], threads: int) -> dict | None:
    """The same figures as `profile` for an ONNX file run by onnxruntime on the CPU at `threads` intra-op
    threads; None where onnxruntime is not installed. A batch the file's fixed batch size does not allow is
    left out (None)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name, fixed = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]

    def times(batch: int, repeats: int, warmup: int) -> list[float] | None:
        if isinstance(fixed, int) and fixed != batch:
            return None
        feed = {name: np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)}
        return timings_us(lambda: session.run(None, feed), torch.device("cpu"), repeats, warmup)

    return _profile(ONNXRUNTIME, threads, times)


def _profile(runtime: str, threads: int, times: Callable[[int, int, int], list[float] | None]) -> dict:
    one, many = times(1, REPEATS, WARMUP), times(THROUGHPUT_BATCH, THROUGHPUT_REPEATS, 2)
    return {"runtime": runtime, "threads": threads, "unit": "µs", "statistic": "median [25th, 75th percentile]",
            "batch_1": spread(one) if one else None,
            f"batch_{THROUGHPUT_BATCH}_per_image": spread(many, THROUGHPUT_BATCH) if many else None}


def save_table(table: dict, path: str | os.PathLike) -> Path:
    write_json(path, table)
    return Path(path)
