"""One source for every training setting: `recipe.TrainConfig` gives the CLI its options and defaults, the
workflow's recipe flags, and the schema's recipe defaults."""

import dataclasses
import math

import pytest
import yaml

from blockswap.cli import build_parser
from blockswap.cli.training import config_from_args
from blockswap.core.errors import BlockswapError
from blockswap.core.recipe import DISTILL_DEFAULTS, FIELDS, TrainConfig
from blockswap.core.sampling import TOLERANCE

from conftest import ROOT


def _config(argv: list[str]) -> TrainConfig:
    args = build_parser().parse_args(argv)
    return config_from_args(args, args.settings)


def test_cli_defaults_are_the_config_defaults():
    assert _config(["train", "--model", "wrn-16-1", "--checkpoint", "m.pt"]) == TrainConfig()
    distill = _config(["distill", "--model", "wrn-16-1", "--teacher", "t.pt", "--checkpoint", "m.pt"])
    assert distill == TrainConfig(**DISTILL_DEFAULTS)
    assert distill.at_beta == (1000.0,) and distill.kd_alpha == 0.0
    quiet = _config(["train", "--model", "wrn-16-1", "--checkpoint", "m.pt", "--quiet"])
    assert quiet == TrainConfig(progress=False)


def test_every_cli_setting_has_an_option_with_help():
    for command in ("train", "distill"):
        sub = build_parser()._subparsers._group_actions[0].choices[command]
        options = {a.dest: a for a in sub._actions}
        teacher = ["--teacher", "t"] if command == "distill" else []
        settings = sub.parse_args(["--model", "m", "--checkpoint", "c", *teacher]).settings
        cli = {n for n, f in FIELDS.items() if f.metadata["cli"]}
        assert set(settings) == (cli | set(DISTILL_DEFAULTS) if command == "distill" else cli)
        for name in settings:
            assert options[name].help.startswith(FIELDS[name].metadata["help"]), name
    assert all(f.metadata["help"] for f in FIELDS.values())


def test_recipe_flags_round_trip_through_the_cli():
    recipe = {"epochs": 7, "batch_size": 32, "lr": 0.05, "schedule": "step", "milestones": [2, 5], "gamma": 0.1,
              "cutout": None, "subset": 4000, "test_subset": None, "lr_unit": "iteration", "weight_decay": 1e-4,
              "crs_wd": True, "sync_bn": True}
    flags = TrainConfig.flags(recipe)
    assert "--cutout" not in flags and "--test-subset" not in flags  # null: the command's default
    assert TrainConfig.flags({"sync_bn": False}) == ""  # off: left out, as before the setting existed
    assert TrainConfig.flags({"warmup_iters": 0, "warmup_factor": 0.001}) == ""  # likewise the warm-up, at its defaults
    assert "--milestones 2,5" in flags
    got = _config(["train", "--model", "wrn-16-1", "--checkpoint", "m.pt", *flags.split()])
    want = {k: tuple(v) if isinstance(v, list) else v for k, v in recipe.items() if v is not None}
    assert got == dataclasses.replace(TrainConfig(), **want)
    distill = {"at_beta": [750.0, 750.0, 750.0, 750.0], "kd_alpha": 0.5, "kd_temperature": 2.0}
    got = _config(["distill", "--model", "wrn-16-1", "--teacher", "t.pt", "--checkpoint", "m.pt",
                   *TrainConfig.flags(distill).split()])
    assert (got.at_beta, got.kd_alpha, got.kd_temperature) == ((750.0,) * 4, 0.5, 2.0)
    with pytest.raises(BlockswapError, match="unknown training setting 'train_subset'"):
        TrainConfig.flags({"train_subset": 10})


def test_gpu_settings_are_recorded_only_when_set():
    """amp, channels_last and the warm-up, off by default, leave the records (checkpoints, metrics, resume files)
    of the runs that do not use them exactly as they were before the settings existed."""
    new = {"amp", "channels_last", "warmup_iters", "warmup_factor", "normalize"}
    everything = {f.name: list(v) if isinstance(v := getattr(TrainConfig(), f.name), tuple) else v
                  for f in dataclasses.fields(TrainConfig)}
    assert TrainConfig().to_dict() == {k: v for k, v in everything.items() if k not in new}
    assert TrainConfig.unrecorded_defaults() == {"amp": "off", "channels_last": False, "warmup_iters": 0,
                                                 "warmup_factor": 0.001, "normalize": None}
    for config in (TrainConfig(), TrainConfig(amp="bf16"), TrainConfig(amp="fp16", channels_last=True)):
        assert TrainConfig.from_dict(config.to_dict()) == config
    fp16 = TrainConfig(amp="fp16").to_dict()
    assert fp16["amp"] == "fp16" and "channels_last" not in fp16
    got = _config(["train", "--model", "wrn-16-1", "--checkpoint", "m.pt", "--amp", "bf16", "--channels-last", "true"])
    assert got == TrainConfig(amp="bf16", channels_last=True)
    assert "--amp fp16" in TrainConfig.flags({"amp": "fp16"})
    with pytest.raises(BlockswapError, match="amp must be one of off, bf16, fp16, got 'fp32'"):
        TrainConfig(amp="fp32")
    with pytest.raises(BlockswapError, match="channels_last must be true or false"):
        TrainConfig(channels_last="yes")


def test_schema_recipe_defaults_are_the_config_defaults():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())["definitions"]
    for section, defaults in (("recipe", {}), ("distillation", DISTILL_DEFAULTS)):
        for key, spec in schema[section]["properties"].items():
            assert key in FIELDS, f"schema {section}.{key} is not a TrainConfig field"
            want = defaults.get(key, FIELDS[key].default)
            want = list(want) if isinstance(want, tuple) else want
            got = spec["default"]
            if isinstance(want, list) and len(want) == 1 and not isinstance(got, list):
                got = [got]  # one β for every attention point
            assert got == want, f"schema {section}.{key} default {got!r}, TrainConfig {want!r}"


def test_compress_schema_bounds_the_recipe_as_the_paper_profiles_do():
    """The compress profile's recipes: TrainConfig fields without defaults (the command's own apply), bounded as
    config.schema.yaml's recipe and distillation; seed and threads are the profile's own keys, not a recipe's."""
    paper = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())["definitions"]
    paper = {**paper["recipe"]["properties"], **paper["distillation"]["properties"]}
    schema = yaml.safe_load((ROOT / "workflow/schemas/compress.schema.yaml").read_text())
    training = schema["definitions"]["training"]["properties"]
    recipe = schema["properties"]["compress"]["properties"]["recipe"]
    assert recipe["$ref"] == "#/definitions/training" and recipe["unevaluatedProperties"] is False
    for key, spec in {**training, **recipe["properties"]}.items():
        assert key in FIELDS and "default" not in spec, key
        if key in paper:
            for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum"):
                assert spec.get(bound) == paper[key].get(bound), f"{key}.{bound}"
            wanted = paper[key]["type"]
            assert set(wanted if isinstance(wanted, list) else [wanted]) <= set(
                spec["type"] if isinstance(spec["type"], list) else [spec["type"]]), key
    assert not {"seed", "threads", "dataset", "data_dir"} & set(training)


def test_shared_constants_are_stated_once():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())["properties"]
    assert schema["search"]["properties"]["tolerance"]["default"] == TOLERANCE
    args = build_parser().parse_args(["sample", "--model", "wrn-16-1", "--budget", "20000"])
    assert args.tolerance == TOLERANCE


def test_one_learning_rate_for_both_trainings_and_one_meaning_of_the_recorded_lr():
    """Classification with a warm-up and per-step cosine; detection per step; the records state the schedule's
    value at each epoch's start, and the new settings stay out of the records while at their defaults."""
    from blockswap.core.recipe import learning_rate, scheduled_lr
    from blockswap.detection.settings import DetectTrainConfig

    c = TrainConfig(epochs=2, lr=0.1, lr_unit="iteration", warmup_iters=4, warmup_factor=0.1)
    cosine = [0.1 * 0.5 * (1 + math.cos(math.pi * (s / 10) / 2)) for s in range(10)]
    assert [learning_rate(c, 0, s, 10) for s in range(10)] == pytest.approx(
        [v * (0.1 * (1 - s / 4) + s / 4 if s < 4 else 1) for s, v in enumerate(cosine)])
    assert learning_rate(c, 1, 5, 10) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 1.5 / 2)))
    assert scheduled_lr(c, 1) == learning_rate(c, 1, 0, 10) == pytest.approx(0.05)
    d = DetectTrainConfig(epochs=2, lr=0.1, schedule="cosine", lr_unit="iteration", warmup_iters=0)
    assert learning_rate(d, 0, 5, 10) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert "warmup_iters" not in TrainConfig().to_dict() and "lr_unit" not in DetectTrainConfig().to_dict()
    assert c.to_dict()["warmup_iters"] == 4 and d.to_dict()["lr_unit"] == "iteration"
    with pytest.raises(BlockswapError, match=r"warmup_factor must be in \(0, 1\], got 2"):
        TrainConfig(warmup_factor=2)
