"""The workflow's domain decisions, made in the package: which baselines a budget gets, the proxies' batch,
the seeds of the sample-count searches."""

import pytest
import yaml
from snakemake.utils import validate

from blockswap.core.counting import analytic
from blockswap.core.errors import BlockswapError
from blockswap.core.genotype import Genotype
from blockswap.workflow import plan

from conftest import ROOT


def profile(name: str, **overrides) -> dict:
    config = yaml.safe_load((ROOT / f"workflow/config/{name}.yaml").read_text())
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))  # fills the schema's defaults
    return config


def test_density_nets_bracket_the_budget():
    config = profile("cifar10")
    # Single-type WRN-40-2s: G8B2 189,914 is the closest under 200K; A4B2 214,106 (the paper's own example) over it.
    assert plan.density_blocks(config, 200_000) == ["G8B2", "A4B2"]
    costs = plan.single_type_costs(config)
    for budget in (200_000, 400_000, 800_000):
        blocks = plan.density_blocks(config, budget, costs)
        under = max(c for c in costs.values() if c <= budget)
        over = min(c for c in costs.values() if c > budget)
        assert {costs[b] for b in blocks} >= {under, over}
        assert costs[blocks[0]] == under == analytic(Genotype.uniform("wrn-40-2", blocks[0])).params


def test_proxies_score_on_the_students_batch_unless_told():
    assert plan.scoring_batch(profile("default")) == 16  # the students' batch
    assert plan.scoring_batch(profile("default", search={"batch_size": 100})) == 100
    assert plan.scoring_batch(profile("cifar10")) == 128 and plan.scoring_batch(profile("imagenet")) == 256


def test_sample_count_searches_share_no_seed():
    seeds = {plan.sample_search_seed(n, s) for n in (10, 30, 100, 1000) for s in range(5)}
    assert len(seeds) == 20 and 0 not in seeds  # nor the main search's default seed


def test_a_missing_pretrained_teacher_is_named_before_any_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the profile's relative data/pretrained/resnet34.pth
    config = profile("imagenet")
    assert config["teacher"]["pretrained"] == "data/pretrained/resnet34.pth"
    with pytest.raises(BlockswapError, match="teacher.pretrained: data/pretrained/resnet34.pth not found; on a "
                                             "machine with internet run python -c .*resnet34\\(weights="):
        plan.check_data(config)
    (tmp_path / "data/pretrained").mkdir(parents=True)
    (tmp_path / "data/pretrained/resnet34.pth").write_bytes(b"")
    plan.check_data(config)  # the file itself is checked by the import job


def test_structured_students_are_checked_against_the_teacher():
    plan.check_profile(profile("default", structured={"blocks": ["Sep", "TensorTrain_0.5", "ACDC_4"],
                                                      "crs_off": ["ACDC_4"]}))
    cases = [({"blocks": ["Generic_0.03"]}, "structured.blocks: .*'Generic_0.03' cannot be used at block 0"),
             ({"blocks": ["DConv"]}, "structured.blocks: 'DConv' is not a structured substitution"),
             ({"blocks": ["Sep"], "crs_off": ["ACDC_4"]}, "structured.crs_off: 'ACDC_4' is not in structured.blocks"),
             ({"blocks": ["Sep"], "crs_off": ["Sep"], "crs_wd": False}, "structured.crs_wd is false already")]
    for section, message in cases:
        with pytest.raises(BlockswapError, match=message):
            plan.check_profile(profile("default", structured=section))
