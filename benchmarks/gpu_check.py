"""The GPU check: every figure the CPU machines cannot give, in one run and one JSON.

    .venv/bin/python benchmarks/gpu_check.py [-o gpu_check.json]      # on a CUDA machine, ≤ 8 minutes
    .venv/bin/python benchmarks/gpu_check.py --cpu-smoke -o smoke.json # the same parts, tiny, on the CPU

Parts, each recorded as {"ok": bool, ...} and never stopping the others: the CUDA tests (pytest, the tests
that skip without a device), WRN-40-2 training images/s at batch 128 in float32, bf16 and fp16 autocast,
each also channels_last (`benchmarks/train.py`'s timing of `engine.train_step`), a 1-GPU torchrun with the
nccl backend (an all_reduce), and Fisher potential of 1,000 WRN-40-2 candidates at 800K (goal < 60 s).
`--cpu-smoke` runs each part tiny on the CPU (gloo, 8 candidates, float32 only) to check the logic.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
from train import PROFILES, images_per_second  # benchmarks/train.py, beside this file

from blockswap.core.files import git_sha, write_json
from blockswap.core.sampling import sample
from blockswap.search.proxies import score_candidates
from blockswap.training.engine import Precision

ROOT = Path(__file__).resolve().parents[1]
CUDA_TESTS = ["tests/test_data.py::test_augment_on_cuda_matches_cpu",
              "tests/test_train.py::test_mixed_precision_channels_last_training_on_cuda"]
FISHER_GOAL_S = 60.0
ALL_REDUCE = """
import os, torch, torch.distributed as dist
backend = os.environ["BACKEND"]
device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if backend == "nccl" else torch.device("cpu")
dist.init_process_group(backend)
x = torch.ones(4, device=device) * (dist.get_rank() + 1)
dist.all_reduce(x)
assert x.tolist() == [float(dist.get_world_size())] * 4, x
dist.destroy_process_group()
print("all_reduce ok")
"""


def cuda_tests(smoke: bool) -> dict:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", *CUDA_TESTS], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-300:]
    return {"ok": out.returncode == 0 and (smoke or "skipped" not in summary), "summary": summary}


def training(smoke: bool) -> dict:
    model, channels, side, batch, augment = PROFILES["wrn-40-2 cifar10"]
    amps = [("fp32", "off")] if smoke else [("fp32", "off"), ("bf16", "bf16"), ("fp16", "fp16")]
    layouts = (False,) if smoke else (False, True)
    settings = [(f"{name}{' channels_last' if cl else ''}", amp, cl) for name, amp in amps for cl in layouts]
    device = torch.device("cpu" if smoke else "cuda")
    rates = {}
    for name, amp, channels_last in settings:
        rates[name] = round(images_per_second(model, channels, side, 8 if smoke else batch, augment, False,
                                              2 if smoke else 20, device, Precision(amp, channels_last)), 1)
    return {"ok": True, "batch": 8 if smoke else batch, "images_per_s": rates}


def torchrun(smoke: bool) -> dict:
    backend = "gloo" if smoke else "nccl"
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                          "--no-python", sys.executable, "-c", ALL_REDUCE],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "BACKEND": backend})
    return {"ok": out.returncode == 0 and "all_reduce ok" in out.stdout, "backend": backend,
            "tail": (out.stdout + out.stderr)[-300:]}


def fisher(smoke: bool) -> dict:
    n = 8 if smoke else 1000
    device = "cpu" if smoke else "cuda"
    genotypes = sample("wrn-40-2", 800_000, n, seed=0, in_channels=3, num_classes=10, image_size=32)
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(128, 3, 32, 32, generator=gen), torch.randint(10, (128,), generator=gen))
    score_candidates(genotypes[:2], ["fisher"], batch, 0, device=device)  # warm-up: kernels, allocator
    if not smoke:
        torch.cuda.synchronize()
    start = time.perf_counter()
    score_candidates(genotypes, ["fisher"], batch, 0, device=device)
    seconds = time.perf_counter() - start
    return {"ok": smoke or seconds < FISHER_GOAL_S, "candidates": n, "seconds": round(seconds, 2),
            "goal_s": FISHER_GOAL_S}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", default="gpu_check.json")
    ap.add_argument("--cpu-smoke", action="store_true", help="every part tiny on the CPU: checks the logic only")
    args = ap.parse_args()
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine, or "
              "--cpu-smoke", file=sys.stderr)
        sys.exit(2)
    started = time.perf_counter()
    result = {"git_sha": git_sha(), "torch": torch.__version__, "python": platform.python_version(),
              "device": "cpu (smoke)" if args.cpu_smoke else torch.cuda.get_device_name(0),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for name, part in (("cuda_tests", cuda_tests), ("training", training), ("torchrun", torchrun),
                       ("fisher_1000", fisher)):
        t = time.perf_counter()
        try:
            result[name] = part(args.cpu_smoke)
        except Exception:  # a failing part is a figure too: record it, go on with the others
            result[name] = {"ok": False, "error": traceback.format_exc(limit=3)[-800:]}
        result[name]["wall_s"] = round(time.perf_counter() - t, 1)
        print(f"{name}: {json.dumps(result[name])}", flush=True)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    write_json(args.output, result)
    print(f"wrote {args.output} ({result['wall_s']} s)")


if __name__ == "__main__":
    main()
