"""train, distill, evaluate. The training options are built from `recipe.TrainConfig`'s fields: their names,
defaults and help are stated there once."""

from __future__ import annotations

import argparse
import json
import math
import sys

from ..core.errors import BlockswapError
from ..core.recipe import DISTILL_DEFAULTS, DISTILL_FIELDS, EVAL_BATCH_SIZE, FIELDS, TrainConfig
from .args import add_field_option, emit, int_at_least, parse_labels


def add_setting(p: argparse.ArgumentParser, name: str, default=None) -> None:
    """One TrainConfig field as an option; `default` replaces the field's own where a command differs."""
    add_field_option(p, FIELDS[name], default=default)


def config_from_args(args, fields) -> TrainConfig:
    return TrainConfig(**{name: getattr(args, name) for name in fields}, progress=not args.quiet)


def _student(args):
    """--genotype G.json, --genotype C.jsonl --index I (0-based), or --model M [--block B] (a model name)."""
    from ..core.genotype import load

    if args.model:
        if args.index is not None:
            raise BlockswapError("--index goes with --genotype C.jsonl")
        return args.model
    if args.block:
        raise BlockswapError("--block goes with --model (every block of that model one type)")
    return load(args.genotype, args.index)


def _run_training(args, config, teacher=None, teacher_genotype=None) -> None:
    from ..data.distributed import is_main
    from ..training.runner import Preempted
    from ..training.train import train

    try:
        metrics = train(config, _student(args), out_checkpoint=args.checkpoint, metrics_path=args.output,
                        resume_path=args.resume, teacher=teacher, teacher_genotype=teacher_genotype,
                        block=args.block or "Conv", labels=parse_labels(args.label))
    except Preempted as e:  # SLURM preemption/time limit: not an error, the job is to be requeued
        if is_main():
            print(f"blockswap {args.command}: {e}", file=sys.stderr)
        raise SystemExit(e.exit_status) from None
    if not args.output and is_main():  # data-parallel: one process prints
        print(json.dumps(metrics, indent=2))


def cmd_train(args) -> None:
    _run_training(args, config_from_args(args, args.settings))


def cmd_distill(args) -> None:
    from ..core.genotype import load

    config = config_from_args(args, args.settings)
    if not config.uses_teacher:
        raise BlockswapError("distill needs --at-beta > 0 or --kd-alpha > 0; use `blockswap train` without a teacher")
    expect = load(args.teacher_genotype) if args.teacher_genotype else None
    _run_training(args, config, teacher=args.teacher, teacher_genotype=expect)


def cmd_evaluate(args) -> None:
    from ..core.counting import analytic
    from ..core.files import provenance
    from ..core.genotype import Genotype
    from ..data.datasets import check_fits, load_dataset
    from ..training.checkpoint import load_model
    from ..training.engine import evaluate, resolve_device
    from ..training.runner import resolve_threads

    resolve_threads(args.threads)
    device = resolve_device(args.device)
    model, ckpt = load_model(args.checkpoint, device=device)
    genotype = Genotype.from_dict(ckpt["genotype"])
    name = args.dataset or ckpt["config"].get("dataset")
    data_dir = args.data_dir if args.data_dir is not None else ckpt["config"].get("data_dir")
    dataset = load_dataset(name, data_dir, "test", args.test_subset, 0, ckpt["config"].get("normalize"))
    check_fits(genotype, dataset, what=f"{args.checkpoint}: genotype")
    result = evaluate(model, dataset, args.batch_size, device)
    if not math.isfinite(result["loss"]):
        raise BlockswapError(f"{args.checkpoint}: the test loss is {result['loss']}; its weights are not usable "
                             "(a diverged run?)")
    emit({"checkpoint": args.checkpoint, "genotype_id": genotype.id, "model": genotype.model, "dataset": name,
          "split": "test", "examples": result["n"], "test_top1_error": result["top1_error"],
          "test_top5_error": result["top5_error"], "test_loss": result["loss"], **analytic(genotype).to_dict(),
          "provenance": provenance({"checkpoint": args.checkpoint, "dataset": name,
                                    "test_subset": args.test_subset}, None, str(device))}, args.output)


def cmd_import_weights(args) -> None:
    from ..training.engine import resolve_device
    from ..training.pretrained import import_weights
    from ..training.runner import resolve_threads

    resolve_threads(args.threads)
    metrics = import_weights(args.weights, args.model, args.dataset, out_checkpoint=args.checkpoint,
                             metrics_path=args.output, data_dir=args.data_dir, test_subset=args.test_subset,
                             device=resolve_device(args.device), batch_size=args.batch_size,
                             labels=parse_labels(args.label), normalize=args.normalize)
    if not args.output:
        print(json.dumps(metrics, indent=2))


def _add_training_args(p: argparse.ArgumentParser, teacher: bool) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--genotype", help="genotype JSON of the network to train (or a .jsonl with --index)")
    which.add_argument("--model", help="e.g. wrn-16-2: that network with every block --block, shaped for the dataset")
    p.add_argument("--block", help="with --model: the block type of every block (default Conv)")
    p.add_argument("--index", type=int_at_least(0),
                   help="with --genotype C.jsonl: train its genotype number I (from 0)")
    if teacher:
        p.add_argument("--teacher", required=True, help="teacher checkpoint (.pt from `blockswap train`)")
        p.add_argument("--teacher-genotype", help="refuse a teacher checkpoint of any other genotype")
        for name in DISTILL_FIELDS:
            add_setting(p, name, DISTILL_DEFAULTS[name])
    settings = [name for name, f in FIELDS.items() if f.metadata["cli"]]
    for name in settings:
        add_setting(p, name)
    settings += DISTILL_FIELDS if teacher else ()
    p.add_argument("--quiet", action="store_true", help="no progress bar (one line per epoch still)")
    p.add_argument("-o", "--output", help="metrics JSON (default: print)")
    p.add_argument("--checkpoint", required=True, help="final checkpoint .pt, written when training is done")
    p.add_argument("--resume", help="resume checkpoint (default: <checkpoint>.resume)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="copied into the metrics' labels (repeatable), e.g. method=blockswap budget=200k")
    p.set_defaults(settings=tuple(settings), outputs=("output", "checkpoint", "resume"))


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train a network from scratch (a teacher, or a student alone)")
    _add_training_args(p, teacher=False)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("distill", help="train a student with attention transfer / KD from a teacher")
    _add_training_args(p, teacher=True)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("import-weights", help="a state dict trained elsewhere (torchvision's ResNet-34/18) as a "
                       "tested checkpoint, e.g. a pretrained teacher for distill")
    p.add_argument("--weights", required=True, help="torch.save'd state dict (or a blockswap checkpoint)")
    p.add_argument("--model", required=True, help="the network it holds, e.g. resnet34, every block Conv")
    add_setting(p, "dataset")
    add_setting(p, "data_dir")
    add_setting(p, "test_subset")
    add_setting(p, "normalize")
    p.add_argument("--batch-size", type=int_at_least(1), default=EVAL_BATCH_SIZE, help="test batch size")
    add_setting(p, "device")
    add_setting(p, "threads")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="copied into the metrics' labels (repeatable), e.g. method=teacher")
    p.add_argument("--checkpoint", required=True, help="the checkpoint .pt to write")
    p.add_argument("-o", "--output", help="metrics JSON (default: print)")
    p.set_defaults(func=cmd_import_weights, outputs=("output", "checkpoint"))

    p = sub.add_parser("evaluate", help="top-1/top-5 test error of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", help="default: the checkpoint's")
    p.add_argument("--data-dir", help="default: the checkpoint's")
    p.add_argument("--test-subset", type=int_at_least(1),
                   help="a class-stratified subset of N test examples (default: all)")
    p.add_argument("--batch-size", type=int_at_least(1), default=EVAL_BATCH_SIZE, help="test batch size")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int_at_least(1))
    p.add_argument("-o", "--output", help="metrics JSON (default: print)")
    p.set_defaults(func=cmd_evaluate, outputs=("output",))
