"""Table 4: COCO AP of a detector around each backbone (`blockswap detect train` metrics), boxes and masks.

One row per metrics file: the backbone (BlockSwap's pick, or the single-type network labelled
method=moonshine, block=B), its params counted on the classification network as Table 3 does (the budget's
count) and those of the detector's body (without the classifier), then AP, AP50, AP75, APs, APm, APl of
boxes and, where the detector predicts them, of masks, in percent (COCOeval's 0–1 × 100; "—" where COCOeval
gives -1: no ground truth in that area range). On the coco profile the paper's Table 4 box AP stands beside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core import paper
from ..core.errors import BlockswapError
from ..core.files import read_json
from .base import Report, register
from .runs import LABEL_HINT
from .tables import Table, fmt, fmt_scaled, frame_of, profile_note

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
KINDS = ("bbox", "segm")
METHODS = ("moonshine", "blockswap")  # Table 4's order: G(N), then BlockSwap


@dataclass(frozen=True)
class DetectionRun:
    path: str
    method: str
    block: str | None
    model: str
    genotype_id: str
    params: int  # the classification network's (Table 3's count)
    backbone_params: int  # the detector's body
    ap: dict  # kind → {stat: percent or NaN}
    backend: str  # who trained and evaluated the detector: torchvision or mmdet


def _percent(value, path: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BlockswapError(f"{path}: {where} must be a number, got {value!r}")
    return math.nan if value < 0 else 100.0 * value  # COCOeval's -1: no ground truth in that range


def load_detection_run(path: str) -> DetectionRun:
    from ..core.counting import analytic
    from ..core.genotype import Genotype

    d = read_json(path, "detection metrics file")
    if not isinstance(d, dict) or not isinstance(d.get("bbox"), dict) or "backbone_params" not in d:
        raise BlockswapError(f"{path}: expected the metrics of `blockswap detect train` (with 'bbox' AP)")
    labels = d.get("labels") if isinstance(d.get("labels"), dict) else {}
    method = labels.get("method") or "unlabelled"
    if method not in (*METHODS, "unlabelled"):
        raise BlockswapError(f"{path}: labels.method is {method!r}; expected one of {', '.join(METHODS)}")
    genotype = Genotype.from_dict(d["genotype"], source=f"{path} (genotype)")
    ap = {kind: {s: _percent(d[kind].get(s), path, f"{kind}.{s}") for s in STATS}
          for kind in KINDS if isinstance(d.get(kind), dict)}
    return DetectionRun(str(path), method, labels.get("block") or None, genotype.model, genotype.id,
                        analytic(genotype).params, int(d["backbone_params"]), ap, d.get("backend", "torchvision"))


def load_detection_runs(paths: list[str]) -> list[DetectionRun]:
    if not paths:
        raise BlockswapError("no metrics files given (--metrics)")
    return [load_detection_run(p) for p in paths]


def _name(r: DetectionRun) -> str:
    if r.method == "blockswap":
        return "BlockSwap"
    if r.method == "moonshine":
        return f"{r.model}-G(N)" if r.block == "DConv" else f"{r.model}, every block {r.block}"
    return f"{r.model} ({r.genotype_id}, unlabelled)"


def _record(r: DetectionRun, profile: str) -> dict:
    rec = {"backbone": _name(r), "method": r.method, "block": r.block, "model": r.model,
           "genotype_id": r.genotype_id, "params": r.params, "backbone_params": r.backbone_params,
           "backend": r.backend}
    for kind in KINDS:
        for s in STATS:
            rec[f"{kind}_{s}"] = r.ap.get(kind, {}).get(s, math.nan)
    row = paper.DETECTION_ROWS.get(profile, {}).get(r.method)
    if profile in paper.DETECTION_ROWS:
        rec["paper_row"] = row and row[0]
        for s, value in zip(STATS, row[1] if row else (None,) * len(STATS)):
            rec[f"paper_bbox_{s}"] = value
    return rec


@register("detection", help="Table 4: COCO box (and mask) AP of the detector around each backbone",
          table="detection", figures=(), load=load_detection_runs)
def build(runs: list[DetectionRun], profile: str | None) -> Report:
    profile = paper.normalise_profile(profile)
    order = {m: i for i, m in enumerate((*METHODS, "unlabelled"))}
    runs = sorted(runs, key=lambda r: (order[r.method], r.block or "", r.genotype_id))
    if not any(r.method in METHODS for r in runs):
        raise BlockswapError(f"detection: no metrics file has labels.method blockswap or moonshine ({LABEL_HINT})")
    records = [_record(r, profile) for r in runs]
    kinds = [k for k in KINDS if any(k in r.ap for r in runs)]
    with_paper = profile in paper.DETECTION_ROWS
    header = ["Backbone", "Params (M)", "Body params (M)"]
    header += [f"{'Box' if k == 'bbox' else 'Mask'} {s}" for k in kinds for s in STATS]
    header += ["Paper row"] + [f"Paper box {s}" for s in STATS] if with_paper else []
    rows = []
    for rec in records:
        cells = [rec["backbone"], fmt_scaled(rec["params"], 1e6, 2), fmt_scaled(rec["backbone_params"], 1e6, 2)]
        cells += [fmt(rec[f"{k}_{s}"], 1) for k in kinds for s in STATS]
        if with_paper:
            cells += [rec["paper_row"] or "—"] + [fmt(rec[f"paper_bbox_{s}"], 1) for s in STATS]
        rows.append(cells)
    align = "l" + "r" * (len(header) - 1)
    if with_paper:
        i = header.index("Paper row")
        align = align[:i] + "l" + align[i + 1:]
    backends = " and ".join(sorted({r.backend for r in runs}))
    caption = (f"COCO AP (%) on the validation images, {backends} detectors, COCOeval{profile_note(profile)}; "
               "params counted on the "
               "classification network (Table 3's count) and on the detector's body"
               + (f"; paper: Table 4 of {paper.SOURCE} (box AP)" if with_paper else ""))
    notes = ["—: no ground-truth instance in that area range."] if any(
        math.isnan(rec[f"{k}_{s}"]) for rec in records for k in kinds for s in STATS) else []
    return Report(frame_of(records, ints=("params", "backbone_params")), Table(header, rows, align, caption, notes),
                  {}, notes)
