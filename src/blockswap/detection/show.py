"""A figure of detections: the ground truth and each trained detector's boxes and masks on the same images.

Rows are the first `count` images of a COCO set in its order, columns the ground truth then each model.
Masks are drawn translucent over the image, boxes as outlines with the category name (and the score for a
prediction), one colour per category. A prediction is drawn when its score is at least `threshold` and it
is among the image's `top` highest-scoring ones (an early detector scores everything low: a low threshold
with a few shown says more than nothing drawn).
Everything is computed in eval mode from the checkpoints, so the same inputs draw the same figure.
"""

from __future__ import annotations

import torch

from ..core.errors import BlockswapError
from .engine import predict
from .evaluate import MASK_THRESHOLD
from .train import load_detector


def _draw(ax, image, boxes, masks, names, colours, scores=None) -> None:
    import numpy as np
    from matplotlib.patches import Rectangle

    picture = image.permute(1, 2, 0).numpy().copy()
    for mask, colour in zip(masks, colours):
        on = mask.numpy() > MASK_THRESHOLD
        picture[on] = 0.55 * picture[on] + 0.45 * np.asarray(colour[:3])
    ax.imshow(picture.clip(0, 1), interpolation="nearest")
    for k, ((x1, y1, x2, y2), name, colour) in enumerate(zip(boxes.tolist(), names, colours)):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.2))
        text = name if scores is None else f"{name} {scores[k]:.2f}"
        ax.text(x1, y1, text, color="white", fontsize=5, va="bottom",
                bbox={"facecolor": colour, "alpha": 0.7, "pad": 0.5, "linewidth": 0})
    ax.set_xticks([])
    ax.set_yticks([])


def detections_figure(models: list[tuple[str, str]], dataset, count: int, threshold: float, top: int = 10,
                      device="cpu"):
    """The figure (a matplotlib Figure) of `models` [(column title, checkpoint)] on `dataset` (CocoDetection)."""
    from matplotlib import colormaps

    from ..report.figures import new_figure

    count = min(count, len(dataset))
    if count < 1:
        raise BlockswapError("the validation set has no images to show")
    subset = torch.utils.data.Subset(dataset, range(count))
    categories = list(dataset.category_ids)
    palette = colormaps["tab10"]
    colour = lambda label: palette((label - 1) % 10)  # noqa: E731 - label i is categories[i - 1]
    name = lambda label: dataset.coco.cats[categories[label - 1]].get("name", str(categories[label - 1]))  # noqa: E731
    columns = [("Ground truth", [dataset[i] for i in range(count)], None)]
    for title, path in models:
        model, ckpt = load_detector(path, device)
        if ckpt["category_ids"] != categories:
            raise BlockswapError(f"{path} was trained on categories {ckpt['category_ids']}, these images have "
                                 f"{categories}: its labels would name other categories")
        ap = (ckpt["metrics"].get("bbox") or {}).get("AP")
        outputs = [o for batch, _ in predict(model, subset, 2, device) for o in batch]
        columns.append((title if ap is None else f"{title} (box AP {100 * ap:.1f})", outputs, threshold))
    fig, _ = new_figure(1, 2.0 * len(columns), 2.0 * count)
    fig.clear()
    axes = fig.subplots(count, len(columns), squeeze=False)
    for c, (title, items, cut) in enumerate(columns):
        axes[0][c].set_title(title, fontsize=7)
        for r in range(count):
            image = dataset[r][0]
            if cut is None:  # the ground truth: (image, target)
                target = items[r][1]
                boxes, masks, labels, scores = target["boxes"], target["masks"].float(), target["labels"], None
            else:
                out = items[r]
                order = out["scores"].argsort(descending=True)[:top]
                keep = order[out["scores"][order] >= cut]
                boxes, labels, scores = out["boxes"][keep], out["labels"][keep], out["scores"][keep].tolist()
                masks = out["masks"][keep][:, 0] if "masks" in out else torch.zeros((0, *image.shape[1:]))
            labels = labels.tolist()
            _draw(axes[r][c], image, boxes, masks, [name(k) for k in labels], [colour(k) for k in labels], scores)
    return fig
