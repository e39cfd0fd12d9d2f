"""The model card of a compressed student: counts, errors with their intervals, preprocessing, latency, how to
load and deploy it."""

from __future__ import annotations

from pathlib import Path


def model_card(report: dict) -> str:
    s, t = report["student"], report["teacher"]
    row = "| {} | {:,} | {:,} | {:.2f} [{:.2f}, {:.2f}] |"
    lines = [f"# Model card: {report['method']} student, budget {report['budget']:,.0f} {report['metric']}", "",
             "| network | params | MACs | top-1 error % [95% interval] |",
             "|---|---:|---:|---|",
             row.format("teacher", t["params"], t["macs"], t["test_top1_error"], *t["error_interval_95"]),
             row.format("student", s["params"], s["macs"], s["test_top1_error"], *s["error_interval_95"]), "",
             f"Errors on {s['test_examples']} validation images (Wilson interval).",
             *_preprocess_lines(report.get("preprocess")), "",
             *latency_lines(report["latency"], report["latency_budget"]), "",
             "Load the student with "
             f"`blockswap.training.checkpoint.load_model(\"{report['student_checkpoint']}\")`, which "
             "returns (network in eval mode, checkpoint); the network's forward gives (logits, attention maps)."]
    return "\n".join(lines + deployment(report)) + "\n"


def deployment(report: dict) -> list[str]:
    """The card's lines on the student's files for deployment and how faithful its exports are."""
    record = report.get("export")
    if record is None:  # a report written before the exports
        return []
    folder = Path(report["student_checkpoint"]).parent
    checks = "; ".join(f"{record[k]['file']}: largest |logit difference| {record[k]['max_abs_diff']:.2g}, top-1 "
                       f"agreement {100 * record[k]['top1_agreement']:.1f}%" for k in ("onnx", "torchscript"))
    return ["", "## Deployment", "",
            f"`blockswap.load(\"{folder}\")` returns the student as a module in eval mode whose forward gives the "
            f"logits alone. Without blockswap: {folder}/model.onnx (ONNX Runtime, opset {record['onnx_opset']}, "
            f"dynamic batch) or {folder}/model.torchscript.pt (`torch.jit.load`); {folder}/preprocess.json says "
            "how to prepare an image (decoding, resize, mean and std) and names the classes in the order of the "
            f"logits. `blockswap predict {folder} IMAGE…` prints an image's top classes.", "",
            f"Checked against PyTorch on {record['images']} validation images (tolerance {record['tolerance']:g}): "
            f"{checks}."]


def latency_lines(latency: dict, budget: dict | None) -> list[str]:
    """The card's latency table - each network and runtime at batch 1 and at the throughput batch, median and
    interquartile range over the stated repeats, with threads and unit - and a latency job's budget check."""
    def cell(figures: dict | None) -> str:
        if figures is None:
            return "-"
        return f"{figures['median']:,.0f} [{figures['q1']:,.0f}, {figures['q3']:,.0f}] ({figures['repeats']} runs)"

    many = next(k for k in latency["student"][0] if k.startswith("batch_") and k != "batch_1")
    lines = [f"| network | runtime | threads | µs at batch 1 | µs per image at batch {many.split('_')[1]} |",
             "|---|---|---:|---:|---:|"]
    for network in ("teacher", "student"):
        lines += [f"| {network} | {p['runtime']} | {p['threads']} | {cell(p['batch_1'])} | {cell(p[many])} |"
                  for p in latency[network]]
    lines += ["", f"Latency on {latency['device']}: median [25th, 75th percentile] of the timed runs, after "
              "warm-up runs; other work on the machine widens the interval."]
    if budget:
        over = budget["measured_us"]["median"] / budget["budget_us"] - 1
        verdict = "met" if budget["met"] else f"**missed** (measured {over:.1%} over)"
        lines += ["", f"Latency budget {budget['budget_us']:,.0f} µs (batch {budget['batch_size']}, "
                  f"{budget['runtime']}, {budget['threads']} threads): predicted {budget['predicted_us']:,.0f} µs, "
                  f"measured {cell(budget['measured_us'])} µs - prediction error {budget['error']:+.1%}; budget "
                  f"{verdict}."]
    return lines


def _preprocess_lines(preprocess: dict | None) -> list[str]:
    """The card's statement of the inputs both networks were trained and tested on."""
    if not preprocess:
        return []
    from ..data.imagefolder import RESIZE, RESIZE_CROP

    size = preprocess["image_size"]
    sized = {RESIZE_CROP: f"the short side resized to {size * 8 // 7} px, the centre {size}×{size} crop",
             RESIZE: f"resized to {size}×{size}"}.get(preprocess["resize"], f"{size}×{size} as they are")
    return ["", f"Inputs ({preprocess['normalize']}): images {sized}, scaled to [0, 1], then per channel minus mean "
            f"{preprocess['mean']}, divided by std {preprocess['std']}."]
