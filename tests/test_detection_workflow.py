"""The detection stage of the workflow (BlockSwap §7, Table 4): its jobs in the default and coco profiles,
the commands they run, the profile checks, the data check and the Table 4 report."""

import json
import math
import re

import pandas as pd
import pytest
import yaml

from blockswap import cli
from blockswap.core import paper
from blockswap.core.counting import analytic
from blockswap.core.errors import BlockswapError
from blockswap.core.genotype import Genotype
from blockswap.detection.detectors import detector_names
from blockswap.detection.settings import FIELDS as TRAIN_FIELDS
from blockswap.detection.settings import DetectTrainConfig
from blockswap.report import REPORTS
from blockswap.report.tables import fmt_scaled
from blockswap.workflow import plan_detection
from test_plan import profile
from test_workflow import ROOT, planned_jobs, snakemake, write_config

COCO = ROOT / "workflow/config/coco.yaml"
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
DETECTION_RULES = {"detect_make_set": 1, "detect_sample": 1, "detect_score": 1, "detect_train_blockswap": 1,
                   "detect_train_single": 1, "detect_figure": 1, "report_detection": 1}


def detection_jobs(jobs: dict) -> dict:
    return {rule: n for rule, n in jobs.items() if "detect" in rule}


def test_default_profile_runs_the_detection_stage(tmp_path):
    """The embedded set, one search, the pick and G(N) trained, the figure and Table 4."""
    assert detection_jobs(planned_jobs(workdir=tmp_path)) == DETECTION_RULES


def test_coco_profile_dag_and_commands(tmp_path):
    """Detection alone, on the COCO files (no set to build), at torchvision's sizes, batch 16."""
    jobs = planned_jobs("--configfile", COCO, workdir=tmp_path)
    assert jobs == {**{r: 1 for r in DETECTION_RULES if r != "detect_make_set"}, "results_page": 1, "all": 1}
    out = snakemake("-n", "-p", "--configfile", COCO, workdir=tmp_path).stdout
    budget = analytic(Genotype.uniform("resnet34", "DConv")).params
    assert budget == 3_132_520 and f"--budget {budget} " in out and "--samples 1000 " in out
    trains = [line for line in out.splitlines() if "blockswap detect train" in line]
    assert len(trains) == 2 and "--model resnet34 --block DConv" in trains[0] + trains[1]
    for line in trains:
        assert "--train-images data/coco/train2017 " in line and "--slim" not in line
        assert "--val-annotations data/coco/annotations/instances_val2017.json " in line
        assert "--batch-size 16 " in line and "--lr 0.02 " in line and "--detector maskrcnn" in line
    assert re.search(r"blockswap detect score .*--batch-size 16 ", out)
    assert "--paper coco" in out


def test_coco_profile_without_the_data_stops_in_one_line(tmp_path):
    out = snakemake("--cores", 1, "--configfile", COCO, workdir=tmp_path)
    assert out.returncode != 0
    line = "blockswap workflow: invalid configuration: detection.train: data/coco/train2017 not found"
    assert line in out.stderr
    assert not (tmp_path / "results").exists()


def test_detection_off_by_default_in_the_schema():
    assert SCHEMA["properties"]["detection"]["properties"]["enabled"]["default"] is False
    assert detection_jobs(planned_jobs("--configfile", ROOT / "workflow/config/imagenet.yaml")) == {}


@pytest.mark.parametrize("overrides,message", [
    ({"detection.bogus": 1}, r"detection: Additional properties are not allowed \('bogus' was unexpected\)"),
    ({"detection.detector": "yolo"}, "detection.detector: 'yolo' is not one of"),
    ({"detection.enabled": True, "detection.model": "wrn-16-1"}, "detection.model: a detection backbone is a ResNet"),
    ({"detection.enabled": True, "detection.train": {"images": "x"}}, "detection.train: give both images and"),
    ({"detection.enabled": True, "detection.budget": 100}, "detection.budget: 100 params is outside the feasible"),
    ({"detection.enabled": True, "detection.resources": {"score": {"processes": 2}}},
     r"detection.resources.score.processes: only training jobs \(resources.train, detection.resources.train\)"),
    ({"detection.enabled": True, "detection.resources": {"train": {"threads": 4, "processes": 3}}},
     "detection.recipe.batch_size: 16 does not divide among the 3 processes of detection.resources.train"),
    ({"detection.enabled": True, "detection.resources": {"train": {"threads": 1, "processes": 2}}},
     "detection.resources.train.threads: 1 for 2 processes"),
    ({"detection.enabled": True, "detection.norm": "syncbn",
      "detection.resources": {"train": {"threads": 2, "processes": 2}}},
     "detection.norm: syncbn needs CUDA with several processes"),
])
def test_detection_mistakes_are_one_line(tmp_path, overrides, message):
    out = snakemake("-n", "--configfile", write_config(tmp_path / "bad.yaml", **overrides), workdir=tmp_path)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if "invalid configuration" in line]
    assert len(lines) == 1 and re.search(message, lines[0]), out.stderr[-2000:]


def test_schema_mirrors_the_detection_settings():
    d = SCHEMA["properties"]["detection"]["properties"]
    assert d["detector"]["enum"] == detector_names()
    for key, spec in SCHEMA["definitions"]["detection_recipe"]["properties"].items():
        default = TRAIN_FIELDS[key].default
        assert spec["default"] == (list(default) if isinstance(default, tuple) else default), key


def test_detection_plan():
    config = profile("default")
    assert plan_detection.embedded(config) and plan_detection.budget(config) == 3_132_520
    assert DetectTrainConfig.flags({"epochs": 2, "clip_grad_norm": None, "milestones": [1, 2], "lr_unit": "epoch"}) \
        == "--epochs 2 --milestones 1,2"  # null: the command's default; lr_unit at its default: left out
    assert DetectTrainConfig.flags({"lr_unit": "iteration"}) == "--lr-unit iteration"
    with pytest.raises(BlockswapError, match="unknown detection training setting 'sync_bn'"):
        DetectTrainConfig.flags({"sync_bn": True})
    coco = yaml.safe_load(COCO.read_text())
    assert not plan_detection.embedded(profile("coco")) and coco["detection"]["only"]
    with pytest.raises(BlockswapError, match="detection.val: .*val2017 not found"):
        plan_detection.check_data(profile("coco", detection={**coco["detection"],
                                                             "train": {"images": str(ROOT), "annotations": str(COCO)}}))


# --- the Table 4 report --------------------------------------------------------------------------------
BOX = {"AP": 0.234, "AP50": 0.4, "AP75": 0.247, "APs": 0.136, "APm": 0.242, "APl": -1.0}
MASK = {"AP": 0.2, "AP50": 0.35, "AP75": 0.21, "APs": 0.1, "APm": 0.22, "APl": 0.3}


def write_metrics(path, method, genotype, box, mask=None, **labels):
    d = {"labels": {"method": method, **labels}, "genotype": genotype.to_dict(), "genotype_id": genotype.id,
         "backbone_params": 2_000_000, "bbox": box, **({"segm": mask} if mask else {})}
    path.write_text(json.dumps(d))
    return str(path)


@pytest.fixture
def detection_runs(tmp_path):
    single = Genotype.uniform("resnet34", "DConv")
    pick = Genotype("resnet34", ("DConv",) * 15 + ("A2B2",))
    return [write_metrics(tmp_path / "b.json", "blockswap", pick, BOX, MASK, budget="3132520"),
            write_metrics(tmp_path / "g.json", "moonshine", single, {k: v / 2 for k, v in BOX.items()},
                          {k: v / 2 for k, v in MASK.items()}, block="DConv")]


@pytest.mark.parametrize("paper_profile", ["coco", "none"])
def test_detection_table_values(tmp_path, detection_runs, paper_profile):
    table = [tmp_path / "t" / f"detection.{ext}" for ext in ("csv", "md", "tex")]
    assert cli.main(["report", "detection", "--metrics", *detection_runs, "--paper", paper_profile,
                     "--table", *map(str, table)]) == 0
    df = pd.read_csv(table[0])
    assert list(df["backbone"]) == ["resnet34-G(N)", "BlockSwap"]  # Table 4's order
    blockswap, single = df.iloc[1], df.iloc[0]
    for s, v in BOX.items():
        expect = math.nan if v < 0 else 100 * v
        assert blockswap[f"bbox_{s}"] == pytest.approx(expect, nan_ok=True)
        assert single[f"bbox_{s}"] == pytest.approx(expect / 2, nan_ok=True)
        assert blockswap[f"segm_{s}"] == pytest.approx(100 * MASK[s])
    assert single["params"] == 3_132_520 and blockswap["backbone_params"] == 2_000_000
    md = table[1].read_text()
    params = fmt_scaled(blockswap["params"], 1e6, 2)
    assert f"| BlockSwap | {params} | 2.00 | 23.4 | 40.0 | 24.7 | 13.6 | 24.2 | — | 20.0 |" in md
    if paper_profile == "coco":
        assert list(df["paper_row"]) == ["ResNet34-G(N)", "BlockSwap"]
        assert tuple(blockswap[f"paper_bbox_{s}"] for s in BOX) == paper.TABLE4["BlockSwap"]
        assert "Paper box AP" in md and "| BlockSwap | 23.4 | 40.0 | 24.7 | 13.6 | 24.2 | 31.1 |" in md
    else:
        assert "paper_row" not in df and "Paper" not in md


def test_detection_report_refuses_classification_metrics(tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"labels": {"method": "blockswap"}, "genotype_id": "x", "test_top1_error": 5}))
    assert REPORTS.get("detection").table == "detection"
    assert cli.main(["report", "detection", "--metrics", str(path), "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "expected the metrics of `blockswap detect train`" in err and err.count("\n") == 1


# --- the detections figure -----------------------------------------------------------------------------
def test_detect_show_draws_the_same_figure_twice(tmp_path, capsys):
    from test_detection_models import CANVAS, _write_coco

    train_json, val_json = _write_coco(tmp_path, 4, seed=0), _write_coco(tmp_path, 2, seed=1)
    assert cli.main(["detect", "train", "--model", "resnet18", "--slim", str(CANVAS), "--epochs", "1",
                     "--batch-size", "2", "--lr", "0.005", "--warmup-iters", "1", "--threads", "1", "--device", "cpu",
                     "--quiet", "--train-images", str(tmp_path), "--train-annotations", str(train_json),
                     "--val-images", str(tmp_path), "--val-annotations", str(val_json),
                     "--checkpoint", str(tmp_path / "m.pt"), "-o", str(tmp_path / "m.json")]) == 0
    show = ["detect", "show", "--model", f"A={tmp_path / 'm.pt'}", "--model", f"B (same)={tmp_path / 'm.pt'}",
            "--images", str(tmp_path), "--annotations", str(val_json), "--count", "5", "--score-threshold", "0",
            "--top", "3", "--threads", "1"]
    for name in ("a", "b"):
        assert cli.main(show + ["-o", str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}.pdf")]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.pdf").read_bytes()[:4] == b"%PDF"
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(tmp_path / "a.png").shape
    assert width > height  # 2 images (of the 5 asked) in rows, 3 columns: ground truth, A, B
    capsys.readouterr()
    assert cli.main(show[:-2] + ["-o", str(tmp_path / "c.jpg")]) == 2
    assert "use one of .png, .pdf, .svg" in capsys.readouterr().err


# --- the mmdet backend (dry runs: no mmdet needed) ---------------------------------------------------------
def _train_commands(*args, workdir):
    out = snakemake("-n", "-p", *args, workdir=workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    return [line for line in out.stdout.splitlines() if "blockswap detect train" in line]


def test_mmdet_backend_trains_with_workflow_configs(tmp_path):
    """backend mmdet: the same trainings and recipe, the detector from workflow/mmdet/ (its config an input, so
    editing it reruns them), and no figure (`detect show` draws torchvision's detectors)."""
    mmdet = tmp_path / "mmdet.yaml"
    mmdet.write_text("detection: {backend: mmdet}\n")
    jobs = detection_jobs(planned_jobs("--configfile", ROOT / "workflow/config/default.yaml", mmdet, workdir=tmp_path))
    assert jobs == {r: n for r, n in DETECTION_RULES.items() if r != "detect_figure"}
    trains = _train_commands("--configfile", ROOT / "workflow/config/default.yaml", mmdet, workdir=tmp_path)
    assert len(trains) == 2
    for line in trains:
        assert re.search(r"--backend mmdet --mmdet-config \S*workflow/mmdet/mask-rcnn_blockswap_slim_embedded\.py "
                         r"--norm bn ", line) and "--slim" not in line and "--detector" not in line
        assert "--epochs 2 --batch-size 4 --lr 0.01 " in line
    coco = tmp_path / "coco-mmdet.yaml"
    coco.write_text("detection: {backend: mmdet, detector: retinanet}\n")
    for line in _train_commands("--configfile", COCO, coco, workdir=tmp_path):
        assert re.search(r"--mmdet-config \S*workflow/mmdet/retinanet_blockswap-r34_fpn_1x_coco\.py --norm syncbn ",
                         line)
        assert "Shell command: torchrun --standalone --nproc-per-node 8 -m blockswap detect train " in line
    assert all("Shell command: blockswap detect train " in line for line in trains)  # one process: no GPUs asked for


def test_detector_trainings_run_data_parallel_where_their_jobs_ask(tmp_path):
    """A detection training job of N GPUs (coco: 8) or N CPU processes runs its command under torchrun, on either
    backend; the scoring jobs stay one process."""
    for line in _train_commands("--configfile", COCO, workdir=tmp_path):
        assert "Shell command: torchrun --standalone --nproc-per-node 8 -m blockswap detect train " in line
    cpu = tmp_path / "two.yaml"
    cpu.write_text("detection: {resources: {train: {threads: 2, processes: 2}}}\n")
    out = snakemake("-n", "-p", "--configfile", ROOT / "workflow/config/default.yaml", cpu, workdir=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    trains = [line for line in out.stdout.splitlines() if "detect train" in line]
    scores = [line for line in out.stdout.splitlines() if "detect score" in line]
    assert len(trains) == 2 and all(
        line.startswith("Shell command: torchrun --standalone --nproc-per-node 2 -m blockswap detect train ")
        for line in trains)
    assert scores and all(line.startswith("Shell command: blockswap detect score ") for line in scores)


@pytest.mark.parametrize("overrides,message", [
    ({"detection.enabled": True, "detection.backend": "mmdet", "detection.detector": "fcos"},
     "detection.backend mmdet: workflow/mmdet/ has no config for detector fcos"),
    ({"detection.enabled": True, "detection.backend": "mmdet", "detection.slim": 128},
     "detection.backend mmdet: the slim configs in workflow/mmdet/ are for 160-px canvases, not slim 128"),
    ({"detection.enabled": True, "detection.backend": "mmdet", "detection.mmdet_config": "nowhere.py"},
     "detection.mmdet_config: nowhere.py not found"),
    ({"detection.backend": "detectron"}, "detection.backend: 'detectron' is not one of"),
])
def test_mmdet_backend_mistakes_are_one_line(tmp_path, overrides, message):
    test_detection_mistakes_are_one_line(tmp_path, overrides, message)


def test_mmdet_backend_without_mmdet_stops_before_any_work(monkeypatch):
    import importlib.util

    config = profile("default", detection={**profile("default")["detection"], "backend": "mmdet"})
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BlockswapError, match=r"mmdetection is not installed here; run `make mmdet`"):
        plan_detection.check_data(config)
