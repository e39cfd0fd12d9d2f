"""Weights trained elsewhere as a blockswap checkpoint: the paper's pretrained ResNet-34 teacher.

`import_weights` reads a state dict saved with `torch.save` - torchvision's
`resnet34(weights="IMAGENET1K_V1").state_dict()` is one: our ResNets name their tensors as torchvision's do -
or the final checkpoint of a blockswap run, checks it against the network it is said to be (every tensor
name and shape), tests it, and writes the usual final checkpoint and metrics, so that it can be given to
`blockswap distill --teacher` and stands where a trained teacher would in the workflow. A file that does
not fit ends in one line naming the first tensor that is missing, extra or of another shape.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from ..core.counting import analytic
from ..core.errors import BlockswapError
from ..core.files import check_distinct_files, provenance, write_json
from ..core.genotype import Genotype
from ..core.recipe import EVAL_BATCH_SIZE
from ..data.datasets import load_dataset
from ..nn.models import create_model
from .checkpoint import CHECKPOINT_KEYS, save, weights_sha256
from .engine import evaluate


def read_state_dict(path: str | os.PathLike) -> tuple[dict, Genotype | None]:
    """The tensors of `path` - a plain state dict, or a blockswap checkpoint's (then with its genotype)."""
    state_dict, genotype, _ = read_weights(path)
    return state_dict, genotype


def read_weights(path: str | os.PathLike) -> tuple[dict, Genotype | None, dict | None]:
    """`read_state_dict`, and a blockswap checkpoint's other entries (config, metrics, ...; None for a plain
    state dict)."""
    path = Path(path)
    if not path.is_file():
        raise BlockswapError(f"{path}: weights file not found")
    try:  # weights_only: a weights file from elsewhere must not be able to run code
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BlockswapError(f"{path}: not a readable weights file ({first[:200]}); save one with "
                             "torch.save(model.state_dict(), FILE)") from None
    genotype = record = None
    if isinstance(obj, dict) and all(k in obj for k in CHECKPOINT_KEYS):  # a blockswap checkpoint
        genotype = Genotype.from_dict(obj["genotype"], source=f"{path} (genotype)")
        record = {k: v for k, v in obj.items() if k != "state_dict"}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BlockswapError(f"{path}: not a state dict (a dict of tensor names to tensors); save one with "
                             "torch.save(model.state_dict(), FILE)")
    return obj, genotype, record


def check_fits(state_dict: dict, net: torch.nn.Module, path, what: str) -> None:
    """Every tensor `net` has, by name and shape, and no other; else one line naming the first that differs."""
    want = net.state_dict()
    missing = [k for k in want if k not in state_dict]
    extra = [k for k in state_dict if k not in want]
    if missing or extra:
        parts = [f"{len(missing)} of its tensors missing (first {missing[0]})"] if missing else []
        parts += [f"{len(extra)} tensors it does not have (first {extra[0]})"] if extra else []
        raise BlockswapError(f"{path} does not hold {what} weights: {', '.join(parts)}")
    for k, v in want.items():
        if state_dict[k].shape != v.shape:
            raise BlockswapError(f"{path} does not hold {what} weights: {k} is {tuple(state_dict[k].shape)} there, "
                                 f"{what} needs {tuple(v.shape)}")


def import_weights(weights: str | os.PathLike, model: str, dataset: str, *, out_checkpoint: str | os.PathLike,
                   metrics_path: str | os.PathLike | None = None, **options) -> dict:
    """Check `weights` as `model` shaped for `dataset`, test it (`evaluate_weights`, `options` its keywords), write
    the checkpoint (and metrics); return the metrics."""
    check_distinct_files({"weights": weights, "checkpoint": out_checkpoint, "metrics": metrics_path})
    checkpoint = evaluate_weights(weights, model, dataset, **options)
    write_imported(checkpoint, out_checkpoint, metrics_path)
    return checkpoint["metrics"]


def write_imported(checkpoint: dict, out_checkpoint: str | os.PathLike, metrics_path=None) -> None:
    """`evaluate_weights`'s checkpoint and (if `metrics_path`) its metrics, each written atomically."""
    save(checkpoint, out_checkpoint)
    if metrics_path:
        write_json(metrics_path, checkpoint["metrics"])


def evaluate_weights(weights: str | os.PathLike, model: str, dataset: str, *, data_dir: str | None = None,
                 test_subset: int | None = None, subset_seed: int = 0, device: torch.device | str = "cpu",
                 batch_size: int = EVAL_BATCH_SIZE, labels: dict | None = None, normalize: str | None = None) -> dict:
    """`weights` checked as `model` shaped for `dataset` and tested on its test split normalised by `normalize`
    (`data.load_dataset`): the checkpoint `import_weights` writes, nothing written yet."""
    started, device = time.perf_counter(), torch.device(device)
    state_dict, saved = read_state_dict(weights)
    test_set = load_dataset(dataset, data_dir, "test", test_subset, subset_seed, normalize)
    genotype = Genotype.uniform(model, "Conv", in_channels=test_set.in_channels, num_classes=test_set.num_classes,
                                image_size=test_set.image_size)
    if saved is not None:  # a blockswap checkpoint keeps its own blocks: a distilled student can teach
        if saved.to_dict() | {"blocks": None} != genotype.to_dict() | {"blocks": None}:
            raise BlockswapError(f"{weights} holds {saved.model} {saved.id} ({saved.in_channels}×{saved.image_size}² "
                                 f"in, {saved.num_classes} out), not {model} shaped for {dataset} "
                                 f"({genotype.in_channels}×{genotype.image_size}² in, {genotype.num_classes} out)")
        genotype = saved
    net = create_model(genotype)
    check_fits(state_dict, net, weights, f"{model} for {dataset} ({test_set.num_classes} classes)")
    net.load_state_dict(state_dict)
    test = evaluate(net.to(device), test_set, batch_size, device)
    if not math.isfinite(test["loss"]):
        raise BlockswapError(f"{weights}: the test loss is {test['loss']}; these weights are not usable")
    config = {"dataset": dataset, "data_dir": data_dir, "test_subset": test_subset, "weights": str(weights),
              "weights_sha256": weights_sha256(state_dict), **({"normalize": normalize} if normalize else {})}
    wall = time.perf_counter() - started
    metrics = {"labels": dict(labels or {}), "genotype_id": genotype.id, "genotype": genotype.to_dict(),
               **analytic(genotype).to_dict(), "dataset": dataset, "train_examples": None,
               "test_examples": test["n"], "preprocess": test_set.preprocess.to_dict(), "teacher": None,
               "imported_from": str(weights), "epochs": [],
               "test_top1_error": test["top1_error"], "test_top5_error": test["top5_error"],
               "test_loss": test["loss"], "train_top1_error": None, "wall_time_s": wall,
               "provenance": provenance(config, None, str(device), wall)}
    return {"genotype": genotype.to_dict(), "config": config,
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "metrics": metrics, "provenance": metrics["provenance"]}
