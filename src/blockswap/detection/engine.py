"""Detection batches, one training epoch and COCO evaluation.

The batch order of an epoch is classification's, drawn from `data.epoch_generator(seed, epoch)`. Random
augmentation is the dataset's: COCO's flip depends on (seed, epoch, index) through its `set_epoch`, called
before each epoch; another dataset drawing from torch's global generator is reproduced too, as the resume
file restores that generator's state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

from ..core.errors import BlockswapError
from ..data.datasets import epoch_generator
from ..data.distributed import SINGLE, World
from ..training.checkpoint import Tally
from ..training.engine import count_step, set_lr
from .coco import collate


# ------------------------------------------------------------------------------------------------ batches
def batch_order(dataset, batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's batches of dataset indices: the permutation classification draws for (seed, epoch)
    (`data.epoch_generator`), last batch short. (COCO data groups it by aspect ratio:
    `coco.aspect_ratio_batches`, with this signature.)"""
    order = torch.randperm(len(dataset), generator=epoch_generator(seed, epoch)).tolist()
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def load_batches(dataset, batches: Sequence[Sequence[int]], workers: int = 0, seed: int = 0, epoch: int = 0
                 ) -> Iterable:
    """(images, targets) per batch of indices, read in `workers` processes (0: here). The workers' seeds come
    from (seed, epoch), not from torch's global generator, whose draws stay the training's own."""
    if workers == 0:
        return (collate([dataset[i] for i in batch]) for batch in batches)
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                                       generator=epoch_generator(seed, epoch))


def to_device(images, targets, device) -> tuple[list, list]:
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
               for t in targets]
    return images, targets


# ----------------------------------------------------------------------------------------------- training
def train_one_epoch(model, optimizer: torch.optim.Optimizer, batches: Iterable, lr_at: Callable[[int], float],
                    device, tally: Tally, *, epoch: int, step: int = 0, stop: Callable[[], bool] | None = None,
                    clip_grad_norm: float | None = None, bar=None, world: World = SINGLE) -> int:
    """Train on `batches` (those of `epoch` from `step` on) with SGD at `lr_at(step)`, the gradients' norm
    clipped to `clip_grad_norm` if given, adding each loss and their sum ("loss"), image-weighted, to `tally`.
    Returns the step reached: the epoch's end, or earlier as soon as `stop()` is true (asked before a batch
    is read, so that no draw is made for it, and once more at the epoch's end; `AgreedStop.agreed`, a
    collective with several processes). A non-finite loss stops the run before its step, with
    the weights intact.

    Data-parallel (`world` of several processes, `model` in DistributedDataParallel): `batches` are this
    process's parts of the global batches. The losses (means over images) are summed over the processes,
    image-weighted, so every process tallies the global batch's; each process's loss is scaled by
    size · its images / the batch's images before backward, so that DDP's mean of the gradients is the
    gradient of the global batch's mean loss even where the parts differ in length."""
    model.train()
    batches = iter(batches)
    while stop is None or not stop():
        try:
            images, targets = next(batches)
        except StopIteration:
            break
        lr = lr_at(step)
        set_lr(optimizer, lr)
        images, targets = to_device(images, targets, device)
        losses = model(images, targets)
        loss = sum(losses.values())
        stacked = torch.stack([loss, *losses.values()]).detach().double()
        images_in_batch = len(images)
        if world.size > 1:
            summed = world.sum_(torch.cat([stacked * len(images), stacked.new_tensor([len(images)])]))
            images_in_batch = int(summed[-1])
            stacked = summed[:-1] / images_in_batch
            loss = loss * (world.size * len(images) / images_in_batch)
        values = dict(zip(["loss", *losses], stacked.tolist()))
        if not math.isfinite(values["loss"]):
            parts = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            raise BlockswapError(f"the training loss became non-finite in epoch {epoch + 1}, step {step + 1} "
                                 f"(lr {lr:g}; {parts}); lower --lr or raise --warmup-iters")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        count_step(tally, values, 0, images_in_batch, bar)
        step += 1
    return step


@torch.no_grad()
def predict(model, dataset, batch_size: int, device, workers: int = 0, world: World = SINGLE
            ) -> Iterator[tuple[list, list]]:
    """(outputs on the CPU, targets) per batch of `dataset` in order (of this process's contiguous part of
    it, with several), the model in eval mode."""
    was_training = model.training
    model.eval()
    try:
        indices = range(len(dataset))[world.share(len(dataset))]
        order = [list(indices[i:i + batch_size]) for i in range(0, len(indices), batch_size)]
        for images, targets in load_batches(dataset, order, workers):
            outputs = model([im.to(device) for im in images])
            yield [{k: v.cpu() for k, v in o.items()} for o in outputs], targets
    finally:
        model.train(was_training)


def predicts_masks(model) -> bool:
    roi_heads = getattr(model, "roi_heads", None)
    return roi_heads is not None and roi_heads.has_mask()


def evaluate(model, dataset, batch_size: int, device, workers: int = 0, world: World = SINGLE) -> dict:
    """COCO AP of the model's predictions on `dataset` (a `coco.CocoDetection`): {"bbox": …, "segm": …}
    (segm for a model that predicts masks, also when it finds nothing), each with AP, AP50, AP75, APs, APm,
    APl on COCOeval's 0–1 scale, plus "detections": how many were scored. With several processes each
    predicts its part of `dataset`, and every process scores all the predictions."""
    from .evaluate import coco_evaluate, predictions_from_outputs

    predictions = []
    for outputs, targets in predict(model, dataset, batch_size, device, workers, world):
        predictions += predictions_from_outputs(outputs, [int(t["image_id"]) for t in targets],
                                                dataset.category_ids)
    predictions = world.gather(predictions)
    kinds = ["bbox", "segm"] if predicts_masks(model) else ["bbox"]
    return {**coco_evaluate(dataset.coco, predictions, kinds), "detections": len(predictions)}
