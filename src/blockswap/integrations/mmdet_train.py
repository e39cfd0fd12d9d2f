"""`blockswap detect train --backend mmdet`: the detector of an mmdet config around a genotype backbone, trained and
evaluated by mmengine's Runner.

The config (workflow/mmdet/*.py, or any mmdet config whose backbone is `BlockSwapResNet`) says what the detector
is; `build_config` fills in what the command knows: the backbone (genotype, norm, init checkpoint), the neck's
input channels, the class names and count from the annotations, the data files, and the recipe of
`DetectTrainConfig` - epochs, batch size, SGD lr/momentum/weight decay, gradient clipping, linear warm-up, step or
cosine schedule per epoch, seed - so that both backends train by the same recipe. Evaluation (mmdet's CocoMetric,
which rounds AP to 3 decimals) runs once, after training.

The work folder (`<checkpoint>.work`) holds mmengine's epoch checkpoints and logs. A rerun resumes from the last
epoch checkpoint there if the run's identity (`identity.json`: the full config, genotype and initial weights) is
the same, and refuses otherwise. The final checkpoint and metrics appear once training and evaluation are done;
the epoch checkpoints are then deleted. Under torchrun (WORLD_SIZE > 1) the Runner trains data-parallel, with the
batch size per process being batch_size / world size, as in the torchvision backend.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import torch

from ..core.errors import BlockswapError
from ..core.files import provenance, write_json
from ..core.genotype import Genotype
from ..detection.backbone import init_weights_sha256, stage_channels
from ..training.checkpoint import save

NORM_CFG = {"bn": {"type": "BN", "requires_grad": True}, "syncbn": {"type": "SyncBN", "requires_grad": True},
            "gn": {"type": "GN", "requires_grad": True}, "frozen_bn": {"type": "BN", "requires_grad": False}}
STATS = {"AP": "mAP", "AP50": "mAP_50", "AP75": "mAP_75", "APs": "mAP_s", "APm": "mAP_m", "APl": "mAP_l"}


def categories(annotations: str | os.PathLike) -> list[dict]:
    """The categories of a COCO instances file, by id."""
    try:
        cats = json.loads(Path(annotations).read_text())["categories"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BlockswapError(f"{annotations}: cannot read the categories of a COCO instances file ({e})") from None
    return sorted(cats, key=lambda c: c["id"])


def _set_num_classes(node, n: int) -> None:
    """Every head's num_classes below a model config."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "num_classes":
                node[key] = n
            else:
                _set_num_classes(value, n)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _set_num_classes(value, n)


def _point_dataset(loader, images, annotations, classes: tuple[str, ...]) -> None:
    dataset = loader["dataset"]
    while "dataset" in dataset:  # wrappers (RepeatDataset, ...) hold the real one
        dataset = dataset["dataset"]
    dataset.update(data_root="", ann_file=str(Path(annotations).resolve()),
                   data_prefix={"img": str(Path(images).resolve()) + os.sep}, metainfo={"classes": classes})


def _schedule(config) -> list[dict]:
    warmup = [{"type": "LinearLR", "start_factor": config.warmup_factor, "by_epoch": False, "begin": 0,
               "end": config.warmup_iters}] if config.warmup_iters else []
    if config.schedule == "cosine":
        main = {"type": "CosineAnnealingLR", "by_epoch": True, "begin": 0, "end": config.epochs,
                "T_max": config.epochs, "eta_min": 0.0}
    else:
        main = {"type": "MultiStepLR", "by_epoch": True, "begin": 0, "end": config.epochs,
                "milestones": list(config.milestones), "gamma": config.gamma}
    return warmup + [main]


def build_config(config_path, genotype: Genotype, config, *, train: tuple, val: tuple, work_dir,
                 norm: str | None = None, gn_groups: int = 32, init=None):
    """The mmengine Config of one run (see the module's docstring); `train`/`val` are (images, annotations)."""
    from mmengine.config import Config

    try:
        cfg = Config.fromfile(str(config_path))
    except FileNotFoundError:
        raise BlockswapError(f"{config_path}: mmdet config not found (see workflow/mmdet/)") from None
    backbone = cfg.model.get("backbone", {})
    if backbone.get("type") != "BlockSwapResNet":
        raise BlockswapError(f"{config_path}: its model.backbone is {backbone.get('type')!r}; the mmdet backend "
                             "needs type='BlockSwapResNet' (see workflow/mmdet/)")
    for key in ("model", "blocks", "block"):
        backbone.pop(key, None)
    backbone["genotype"] = genotype.to_dict()
    if norm is not None:
        backbone["norm_cfg"] = {**NORM_CFG[norm], **({"num_groups": gn_groups} if norm == "gn" else {})}
        if norm == "frozen_bn":
            backbone["norm_eval"] = True
    backbone["init_cfg"] = {"type": "Pretrained", "checkpoint": str(Path(init).resolve())} if init else None
    channels = stage_channels(genotype)
    cfg.model.neck["in_channels"] = [channels[i] for i in backbone.get("out_indices", (0, 1, 2, 3))]
    cats = categories(train[1])
    if [c["id"] for c in categories(val[1])] != [c["id"] for c in cats]:
        raise BlockswapError(f"{val[1]} has other categories than {train[1]}: labels would not match")
    classes = tuple(c["name"] for c in cats)
    _set_num_classes(cfg.model, len(classes))

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if config.batch_size % world:
        raise BlockswapError(f"batch size {config.batch_size} does not divide by the {world} processes")
    _point_dataset(cfg.train_dataloader, *train, classes)
    cfg.train_dataloader.update(batch_size=config.batch_size // world, num_workers=config.workers,
                                persistent_workers=config.workers > 0)
    _point_dataset(cfg.test_dataloader, *val, classes)
    cfg.test_dataloader.update(batch_size=config.eval_batch_size, num_workers=config.workers,
                               persistent_workers=config.workers > 0)
    cfg.test_evaluator.update(ann_file=str(Path(val[1]).resolve()), format_only=False)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None  # evaluated once, by test(), after training

    cfg.train_cfg = {"type": "EpochBasedTrainLoop", "max_epochs": config.epochs, "val_interval": config.epochs}
    clip = {"max_norm": config.clip_grad_norm, "norm_type": 2} if config.clip_grad_norm else None
    cfg.optim_wrapper = {"type": "OptimWrapper", "clip_grad": clip,
                         "optimizer": {"type": "SGD", "lr": config.lr, "momentum": config.momentum,
                                       "weight_decay": config.weight_decay}}
    cfg.param_scheduler = _schedule(config)
    cfg.auto_scale_lr = {"enable": False, "base_batch_size": config.batch_size}
    cfg.randomness = {"seed": config.seed, "deterministic": False}
    cfg.default_hooks.checkpoint = {"type": "CheckpointHook", "interval": 1, "by_epoch": True, "max_keep_ckpts": 1}
    cfg.default_hooks.logger = {"type": "LoggerHook", "interval": 10}
    cfg.launcher = "pytorch" if world > 1 else "none"
    cfg.env_cfg.dist_cfg = {"backend": "nccl" if torch.cuda.is_available() else "gloo"}
    cfg.work_dir = str(Path(work_dir).resolve())
    cfg.load_from, cfg.resume = None, True  # resume: the last epoch checkpoint in work_dir, if there is one
    return cfg


def _identity(cfg, genotype: Genotype, init) -> dict:
    text = {k: v for k, v in cfg.to_dict().items() if k not in ("work_dir", "launcher", "resume")}
    return {"genotype": genotype.to_dict(), "config": json.loads(json.dumps(text, default=str)),
            "init_sha256": init_weights_sha256(genotype, init) if init else None}


def _check_identity(work_dir: Path, identity: dict, write: bool) -> None:
    """A work folder with checkpoints is resumed only by the same run (every process checks; rank 0 writes)."""
    path = work_dir / "identity.json"
    if path.exists() and (work_dir / "last_checkpoint").exists():
        saved = json.loads(path.read_text())
        if saved != identity:
            odd = next(k for k in identity if saved.get(k) != identity[k])
            raise BlockswapError(f"{work_dir} holds checkpoints of another run (its {odd} differs); delete the "
                                 "folder to start again, or run with the settings it was started with")
    if write:
        work_dir.mkdir(parents=True, exist_ok=True)
        write_json(path, identity)


def _epoch_losses(runner, epochs: int) -> list[dict]:
    """Mean training loss per epoch, from the Runner's per-iteration history."""
    values = runner.message_hub.get_scalar("train/loss").data[0].tolist()
    per_epoch = max(1, len(values) // epochs)
    return [{"epoch": e, "train_loss": sum(chunk) / len(chunk)}
            for e in range(epochs) if (chunk := values[e * per_epoch:(e + 1) * per_epoch])]


def _ap(results: dict, cfg, annotations) -> dict:
    """{kind: {AP, AP50, ...}} on COCOeval's 0-1 scale from mmdet's metric. With no detections at all mmdet's
    CocoMetric reports nothing; COCOeval on empty results then gives what it gives (0, or -1 where no truth)."""
    from ..detection.evaluate import coco_evaluate

    metric = cfg.test_evaluator.get("metric", "bbox")
    kinds = [k for k in ("bbox", "segm") if k in ([metric] if isinstance(metric, str) else metric)]
    if all(f"coco/{kind}_mAP" in results for kind in kinds):
        return {kind: {stat: float(results[f"coco/{kind}_{name}"]) for stat, name in STATS.items()}
                for kind in kinds}
    return coco_evaluate(annotations, [], kinds)


def train(config_path, genotype: Genotype, config, *, train: tuple, val: tuple, out_checkpoint, metrics_path=None,
          norm: str | None = None, gn_groups: int = 32, init=None, labels: dict | None = None) -> dict:
    """Train and evaluate one detector (see the module's docstring); returns the metrics."""
    # mmdet warns on import about an optional evaluator we do not use; our errors stay one line.
    warnings.filterwarnings("ignore", message="faster_coco_eval is not installed")
    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    import blockswap.integrations.mmdet  # noqa: F401 - registers BlockSwapResNet

    register_all_modules()
    work_dir = Path(f"{out_checkpoint}.work")
    cfg = build_config(config_path, genotype, config, train=train, val=val, work_dir=work_dir, norm=norm,
                       gn_groups=gn_groups, init=init)
    if config.threads:
        torch.set_num_threads(config.threads)
    identity = _identity(cfg, genotype, init)
    rank = int(os.environ.get("RANK", "0"))
    _check_identity(work_dir, identity, write=rank == 0)
    started = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    model = runner.train()
    results = runner.test()
    wall = time.perf_counter() - started
    if rank:
        return {}
    device = str(next(model.parameters()).device)
    model = getattr(model, "module", model)
    prov = provenance({"mmdet_config": str(config_path), **config.to_dict()}, config.seed, device, wall)
    prov.update(backend="mmdet", world_size=int(os.environ.get("WORLD_SIZE", "1")),
                init=None if init is None else str(init))
    cats = categories(train[1])
    metrics = {"labels": dict(labels or {}), "backend": "mmdet", "genotype_id": genotype.id,
               "genotype": genotype.to_dict(), "mmdet_config": str(config_path), "settings": config.to_dict(),
               "backbone_params": sum(p.numel() for p in model.backbone.parameters()),
               "detector_params": sum(p.numel() for p in model.parameters()),
               "category_ids": [c["id"] for c in cats], "train_images": len(runner.train_dataloader.dataset),
               "val_images": len(runner.test_dataloader.dataset), "epochs": _epoch_losses(runner, config.epochs),
               **_ap(results, cfg, val[1]),
               "mmdet_results": {k: float(v) for k, v in results.items()}, "wall_time_s": wall, "provenance": prov}
    save({"backend": "mmdet", "genotype": genotype.to_dict(), "mmdet_config": cfg.pretty_text,
          "category_ids": metrics["category_ids"], "state_dict": {k: v.detach().cpu()
                                                                   for k, v in model.state_dict().items()},
          "metrics": metrics, "provenance": prov}, out_checkpoint)
    if metrics_path:
        write_json(metrics_path, metrics)
    for stale in [*work_dir.glob("epoch_*.pth"), work_dir / "last_checkpoint"]:
        stale.unlink(missing_ok=True)
    return metrics
