"""`blockswap compress`: a user's teacher and image folder in, a distilled student under a budget out."""

import json
import math

import numpy as np
import pytest
import torch
import torchvision
from torchvision.io import write_png

from blockswap.checkpoint import load_model, save
from blockswap.cli import main
from blockswap.compress import teacher_genotype, wilson_interval
from blockswap.counting import analytic
from blockswap.data import load_dataset
from blockswap.errors import BlockswapError
from blockswap.genotype import Genotype
from blockswap.measure import measured
from blockswap.models import create_model


def image_folder(root, classes=3, per_class=8, channels=3, side=32, seed=0):
    """A folder of random PNG images, DIR/{train,val}/<class>/*.png, the class shifting the mean colour."""
    g = torch.Generator().manual_seed(seed)
    for split in ("train", "val"):
        for c in range(classes):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(per_class):
                img = (torch.rand(channels, side, side, generator=g) * 128 + 40 * c).clamp(0, 255).to(torch.uint8)
                write_png(img, str(root / split / f"class{c}" / f"{i}.png"))
    return root


def test_wilson_interval_against_the_formula():
    low, high = wilson_interval(10, 100)  # the textbook case: 10 errors in 100
    assert (round(low, 2), round(high, 2)) == (5.52, 17.44)
    low, high = wilson_interval(0, 50)
    assert low == pytest.approx(0, abs=1e-12) and high == pytest.approx(100 * 3.8415 / 53.8415, rel=1e-4)


def test_folder_dataset_small_images_in_memory(tmp_path):
    root = image_folder(tmp_path / "d", channels=1, side=28)
    train, test = load_dataset("folder", root, "train"), load_dataset("folder", root, "test")
    assert train.images.shape == (24, 1, 28, 28) and train.classes == ("class0", "class1", "class2")
    assert train.labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    pixels = train.images.double() / 255
    assert train.mean == (round(float(pixels.mean()), 4),) == test.mean  # the train split's statistics
    assert train.train_recipe == {"pad": 4, "flip": False, "cutout": 0}  # ⌈28/8⌉, grayscale: no flips


@pytest.mark.parametrize("damage,message", [
    (lambda r: [p.unlink() for p in (r / "train" / "class1").iterdir()], "class1 holds no"),
    (lambda r: (r / "val" / "class2").rename(r / "val" / "other"), "different class folders"),
])
def test_folder_mistakes_are_one_line(tmp_path, damage, message):
    root = image_folder(tmp_path / "d")
    damage(root)
    with pytest.raises(BlockswapError, match=message):
        load_dataset("folder", root, "train")


def test_one_class_is_refused(tmp_path):
    root = image_folder(tmp_path / "d", classes=1)
    with pytest.raises(BlockswapError, match="1 class folder .* needs 2 or more"):
        load_dataset("folder", root, "train")


def test_torchvision_teachers_are_recognised_and_checked(tmp_path):
    ds = load_dataset("folder", image_folder(tmp_path / "d"), "train")
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)
    g, state = teacher_genotype(path, ds)
    assert state.keys() == torchvision.models.resnet18(num_classes=3).state_dict().keys()
    assert (g.model, g.num_classes, g.image_size, g.blocks) == ("resnet18", 3, 32, ("Conv",) * 8)
    torch.save(torchvision.models.resnet34(num_classes=3).state_dict(), path)
    assert teacher_genotype(path, ds)[0].model == "resnet34"
    torch.save(torchvision.models.resnet50(num_classes=3).state_dict(), path)
    with pytest.raises(BlockswapError, match=r"torchvision resnet50/101/152 \(bottleneck blocks"):
        teacher_genotype(path, ds)
    torch.save(torchvision.models.wide_resnet50_2(num_classes=3).state_dict(), path)
    with pytest.raises(BlockswapError, match=r"torchvision wide_resnet50_2 \(bottleneck blocks"):
        teacher_genotype(path, ds)
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), path)
    with pytest.raises(BlockswapError, match="1000 outputs, the folder 3 classes"):
        teacher_genotype(path, ds)
    state = torchvision.models.resnet18(num_classes=3).state_dict()
    state["layer2.0.conv1.weight"] = state["layer2.0.conv1.weight"][:64]
    torch.save(state, path)
    with pytest.raises(BlockswapError, match=r"layer2.0.conv1.weight is \(64, 64, 3, 3\) there"):
        teacher_genotype(path, ds)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A WRN-16-1 teacher (random weights, a checkpoint) and a 3-class grayscale folder."""
    tmp = tmp_path_factory.mktemp("compress")
    root = image_folder(tmp / "data", per_class=16, channels=1, side=28)
    g = Genotype.uniform("wrn-16-1", "Conv", in_channels=1, num_classes=3, image_size=28)
    torch.manual_seed(0)
    save({"genotype": g.to_dict(), "config": {"dataset": "folder"}, "state_dict": create_model(g).state_dict(),
          "metrics": {}, "provenance": {}}, tmp / "teacher.pt")
    return tmp, root


def compress(tmp, root, out, *extra):
    return main(["compress", "--teacher", str(tmp / "teacher.pt"), "--data", str(root), "--epochs", "1",
                 "--batch-size", "8", "--threads", "1", "--quiet", "-o", str(out), *extra])


def test_blockswap_student_in_budget_with_a_model_card_and_resume(job, capsys):
    tmp, root = job
    out = tmp / "blockswap"
    assert compress(tmp, root, out, "--budget", "40K", "--samples", "4") == 0
    report = json.loads((out / "report.json").read_text())
    pick = Genotype.from_dict(json.loads((out / "search" / "genotype.json").read_text()))
    fisher = json.loads((out / "search" / "fisher.json").read_text())
    assert len(fisher) == 4 and pick.id == max(fisher, key=lambda r: r["fisher"])["id"]
    assert report["student"]["params"] == analytic(pick).params and 39_000 < analytic(pick).params < 41_000
    net, ckpt = load_model(out / "student" / "model.pt")
    assert sum(p.numel() for p in net.parameters()) == report["student"]["params"]
    n, error = report["student"]["test_examples"], report["student"]["test_top1_error"]
    assert n == 48 and report["student"]["error_interval_95"] == list(wilson_interval(round(error * n / 100), n))
    card = (out / "model_card.md").read_text()
    assert f"| student | {analytic(pick).params:,} |" in card and "load_model(" in card
    before = (out / "student" / "model.pt").stat().st_mtime_ns
    # done: nothing retrained, and another thread count is the same job
    assert compress(tmp, root, out, "--budget", "40K", "--samples", "4", "--threads", "2") == 0
    assert (out / "student" / "model.pt").stat().st_mtime_ns == before
    assert compress(tmp, root, out, "--budget", "30K", "--samples", "4", "--lr", "0.2") == 2  # another job's folder
    err = capsys.readouterr().err
    assert "holds another job's results (budget: 40000.0 there, 30000.0 now; recipe.lr: 0.1 there, 0.2 now)" in err


@pytest.mark.parametrize("method", ["prune-magnitude", "prune-taylor"])
def test_pruned_student_under_budget_trained_from_the_pruned_weights(job, method):
    tmp, root = job
    out = tmp / method
    assert compress(tmp, root, out, "--budget", "40K", "--method", method) == 0
    pruned, ckpt = load_model(out / "search" / "pruned.pt")
    g = Genotype.from_dict(ckpt["genotype"])
    record = ckpt["pruned"]
    assert record["params"] == measured(pruned, g).params <= 40_000 < analytic(g).params
    assert record["params"] >= 0.975 * 40_000  # global pruning lands in the band BlockSwap's students keep
    assert record["ratio"] > 0 and math.isclose(record["budget"], 40_000)
    student, final = load_model(out / "student" / "model.pt")  # one call rebuilds the pruned widths
    assert final["metrics"]["params"] == measured(student, g).params == record["params"]
    report = json.loads((out / "report.json").read_text())
    assert report["student"]["params"] == record["params"] and report["teacher"]["params"] == analytic(g).params


def test_a_distilled_student_can_teach(job):
    """A blockswap checkpoint of mixed blocks is a teacher too: searched below, and pruned."""
    tmp, root = job
    g = Genotype("wrn-16-1", ("Conv", "G4B2", "Conv", "DConvB2", "Conv", "DConv"), in_channels=1, num_classes=3,
                 image_size=28)
    torch.manual_seed(1)
    save({"genotype": g.to_dict(), "config": {"dataset": "folder"}, "state_dict": create_model(g).state_dict(),
          "metrics": {}, "provenance": {}}, tmp / "mixed.pt")
    budget = analytic(g).params // 2
    for method in ("blockswap", "prune-magnitude"):
        out = tmp / f"mixed-{method}"
        assert main(["compress", "--teacher", str(tmp / "mixed.pt"), "--data", str(root), "--budget", str(budget),
                     "--method", method, "--samples", "3", "--epochs", "1", "--batch-size", "8", "--threads", "1",
                     "--quiet", "-o", str(out)]) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["teacher"]["params"] == analytic(g).params and report["teacher"]["genotype_id"] == g.id
        assert report["distillation"] == "AT" and report["student"]["params"] <= budget * 1.025
        student, _ = load_model(out / "student" / "model.pt")
        assert sum(p.numel() for p in student.parameters()) == report["student"]["params"]


def test_a_student_without_the_teachers_attention_points_is_distilled_by_kd(tmp_path):
    from blockswap.compress import KD_ALPHA, distillation_for
    from blockswap.recipe import TrainConfig

    student = Genotype.uniform("wrn-16-1", "Conv", in_channels=1, num_classes=3, image_size=32)
    for name, model in (("wrn.pt", "wrn-40-1"), ("resnet.pt", "resnet18")):  # 3 points at 32/16/8; 4 points
        g = Genotype.uniform(model, "Conv", in_channels=1, num_classes=3, image_size=32)
        save({"genotype": g.to_dict(), "config": {"dataset": "folder"}, "state_dict": create_model(g).state_dict(),
              "metrics": {}, "provenance": {}}, tmp_path / name)
    config = TrainConfig(dataset="folder", at_beta=(1000.0,))
    assert distillation_for(config, student, None, tmp_path / "wrn.pt") == (config, "AT")
    kd, how = distillation_for(config, student, None, tmp_path / "resnet.pt")
    assert how == "KD (α = 0.9, T = 4)" and not kd.uses_at and kd.kd_alpha == KD_ALPHA == 0.9
    assert kd.to_dict() | {"at_beta": None, "kd_alpha": None} == config.to_dict() | {"at_beta": None, "kd_alpha": None}


def test_mistakes_end_before_any_work(job, capsys):
    tmp, root = job
    out = tmp / "refused"
    assert compress(tmp, root, out, "--budget", "200K") == 2
    assert "not below the teacher's 174,323" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "2K") == 2
    assert "infeasible" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "20K", "--metric", "latency") == 2
    assert "blockswap latency-table --model wrn-16-1" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "20K", "--method", "prune-magnitude", "--metric", "latency",
                    "--latency-table", str(tmp / "none.json")) == 2
    assert "Torch-Pruning has no latency model" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "20K", "--at-beta", "0") == 2
    assert "give --at-beta > 0" in capsys.readouterr().err
    assert compress(tmp, root, out, "--budget", "20K", "--subset", "49") == 2  # 48 training images
    assert "subset=49 must be between 1 and the 48 examples" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_compress_profile_runs_every_method_and_tabulates_the_paired_differences(job, tmp_path):

    from blockswap.compress import comparison
    from test_workflow import snakemake

    tmp, root = job
    profile = tmp_path / "compress.yaml"
    recipe = "{epochs: 1, batch_size: 8, lr: 0.05, subset: 24}"
    profile.write_text(f"name: compress\ncompress:\n  teacher: {tmp / 'teacher.pt'}\n  data: {root}\n"
                       f"  budgets: [40000]\n  seeds: [0, 1]\n  samples: 3\n  recipe: {recipe}\n")
    run = snakemake("--cores", 2, "--configfile", profile, workdir=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    reports = [json.loads(p.read_text()) for p in sorted((tmp_path / "results/compress").glob("*/*/*/report.json"))]
    assert sorted((r["method"], r["seed"]) for r in reports) == [
        (m, s) for m in ("blockswap", "prune-magnitude", "prune-taylor") for s in (0, 1)]
    rows = comparison(reports)
    by = {(r["method"], r["seed"]): r["student"]["test_top1_error"] for r in reports}
    taylor = rows[2]["vs_blockswap"]
    assert rows[2]["method"] == "prune-taylor"
    assert taylor["mean"] == pytest.approx(sum(by[("prune-taylor", s)] - by[("blockswap", s)] for s in (0, 1)) / 2)
    # Two seeds are too few for a verdict: the difference alone, outside Holm's family.
    assert taylor["why"] == "too few runs (2 pairs)" and math.isnan(taylor["p"]) and math.isnan(taylor["p_holm"])
    table = (tmp_path / "results/compress/table.md").read_text()
    assert table.count("| 40,000 |") == 3 and f"| {taylor['mean']:+.2f} |  | no verdict: too few runs (2 pairs) |" \
        in table and "p (Holm over 0)" in table
    assert (tmp_path / "results/compress/pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: compress\ncompress:\n  teacher: /nonexistent.pt\n")
    run = snakemake("-n", "--configfile", bad, workdir=tmp_path)
    assert run.returncode == 2 and "compress.teacher: /nonexistent.pt does not exist" in run.stderr


def _report(method: str, seed: int, error: float) -> dict:
    return {"budget": 40000.0, "method": method, "seed": seed, "student": {"test_top1_error": error, "params": 1}}


def test_comparison_tests_paired_differences_with_a_t_and_holm():
    from scipy import stats

    from blockswap.compress import comparison, comparison_markdown

    base, taylor, magnitude = [10.0, 11.0, 12.5], [11.0, 12.5, 13.0], [12.0, 13.0, 14.5]
    reports = [_report(m, s, e) for m, errors in (("blockswap", base), ("prune-taylor", taylor),
                                                  ("prune-magnitude", magnitude)) for s, e in enumerate(errors)]
    rows = {r["method"]: r for r in comparison(reports)}
    diffs = np.subtract(taylor, base)  # 1.0, 1.5, 0.5
    t = rows["prune-taylor"]["vs_blockswap"]
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert (t["mean"], t["low"], t["high"]) == pytest.approx((1.0, 1.0 - half, 1.0 + half))
    assert t["p"] == pytest.approx(stats.ttest_1samp(diffs, 0).pvalue) and t["why"] == ""
    # Magnitude's differences are all 2.0: no spread is no evidence of a zero-width interval or of p = 0.
    m = rows["prune-magnitude"]["vs_blockswap"]
    assert m["mean"] == pytest.approx(2.0) and m["why"] == "no spread: every run gives the same difference"
    assert math.isnan(m["p"]) and math.isnan(m["low"]) and t["p_holm"] == pytest.approx(t["p"])  # a family of 1
    md = comparison_markdown(list(rows.values()), {"params": 2, "test_top1_error": 9.0})
    assert "p (Holm over 1)" in md and "| +2.00 |  | no verdict: no spread" in md


def test_nested_config_overrides_are_read_as_their_schema_types(tmp_path):
    """Snakemake reads a nested --config value as strings; the profile reads numbers where the schema wants them."""
    from test_workflow import ROOT, planned_jobs, snakemake

    profile = ROOT / "workflow/config/compress.yaml"
    jobs = planned_jobs("--configfile", profile, "--config", "compress={seeds: [0, 1], budgets: [30000]}",
                        workdir=tmp_path)
    assert jobs["compress_student"] == 2 * 3  # 2 seeds × 3 methods at one budget
    run = snakemake("-n", "--configfile", profile, "--config", "compress={seeds: [zero]}", workdir=tmp_path)
    assert run.returncode == 2 and "compress.seeds[0]: 'zero' is not of type 'integer'" in run.stderr
