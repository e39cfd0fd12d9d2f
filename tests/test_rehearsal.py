"""`make rehearse`: the overlay only shrinks a profile, the stand-ins read as the real formats, and every
paper profile's DAG executes end to end on the CPU with its tables and figures marked."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from PIL import Image

from blockswap.core.counting import analytic
from blockswap.core.genotype import Genotype
from blockswap.data import standins
from blockswap.data.datasets import load_dataset
from blockswap.report.figures import REHEARSAL_MARK
from blockswap.workflow import rehearsal
from blockswap.workflow.plan import is_compress_profile
from test_workflow import ROOT, job_stats, planned_jobs, snakemake

PROFILES = sorted(p.stem for p in (ROOT / "workflow/config").glob("*.yaml"))
PAPER_PROFILES = ["cifar10", "moonshine", "wrn28", "imagenet", "coco"]
MOVED = {"results_dir", "device", "rehearsal", "norm"}  # keys the overlay may change other than by shrinking


def _profile(name: str) -> dict:
    return yaml.safe_load((ROOT / f"workflow/config/{name}.yaml").read_text())


def _assert_only_shrinks(new, old, where=""):
    """Every number ≤ the profile's, every list no longer (a sub-list, or numbers no larger), the rest unchanged."""
    if isinstance(old, dict):
        for key, value in old.items():
            if key not in MOVED and key in new:
                _assert_only_shrinks(new[key], value, f"{where}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and bool(new) == bool(old) and len(new) <= len(old), (where, new, old)
        numbers = all(isinstance(v, (int, float)) for v in old + new)
        assert max(new, default=0) <= max(old, default=0) if numbers else all(v in old for v in new), (where, new, old)
    elif isinstance(old, (int, float)) and not isinstance(old, bool):
        assert new <= old or (where.endswith(".eval_every") and old == 0), (where, new, old)
    else:
        assert new == old, (where, new, old)


@pytest.mark.parametrize("name", [p for p in PROFILES if not is_compress_profile(_profile(p))])
def test_overlay_only_shrinks_and_moves_to_the_cpu(name):
    profile = _profile(name)
    cfg = rehearsal.overlay(profile, "out/results")
    _assert_only_shrinks(cfg, profile)
    assert cfg["device"] == "cpu" and cfg["rehearsal"] is True and cfg["results_dir"] == "out/results"
    assert len(cfg["search"]["budgets"]) <= 2 and cfg["search"]["samples"] <= rehearsal.SAMPLES
    for resources in (cfg["resources"], cfg.get("detection", {}).get("resources", {})):
        for kind, res in resources.items():
            assert res["gpu"] == 0, (kind, res)
    several = profile.get("resources", {}).get("train", {}).get("gpu", 0) > 1
    assert cfg["resources"]["train"].get("processes") == (2 if several else None)
    assert profile == _profile(name)  # the profile itself untouched


@pytest.mark.parametrize("name,budget", [("compress", 20000), ("latency", "0.8x")])
def test_compress_overlay_shrinks_and_moves_to_the_cpu(tmp_path, name, budget):
    profile = _profile(name)
    cfg = rehearsal.overlay(profile, "out/results")
    _assert_only_shrinks(cfg, profile)
    c = cfg["compress"]
    assert cfg["rehearsal"] is True
    assert (c["budgets"], c["seeds"], c["samples"]) == ([budget], [0, 1], rehearsal.SAMPLES)
    for recipe in (c["recipe"], c["teacher_recipe"]):
        assert (recipe["device"], recipe["subset"], recipe["test_subset"]) == ("cpu", 32, 32)
    overlay, said = rehearsal.prepare(ROOT / f"workflow/config/{name}.yaml", tmp_path / "out")
    assert said == ["compress.data: embedded Fashion-MNIST, written as an image folder (the real data)",
                    "compress.teacher: embedded (wrn-16-1 trained here)"] and not (tmp_path / "out/standin").exists()
    jobs = planned_jobs("--configfile", ROOT / f"workflow/config/{name}.yaml", overlay, workdir=tmp_path)
    assert jobs["compress_student"] == 1 * 3 * 2  # a budget, the 3 methods, 2 seeds
    assert jobs.get("compress_latency_table") == (1 if name == "latency" else None)


def test_compress_rehearsal_of_a_missing_teacher_beside_the_users_grayscale_folder(tmp_path):
    from test_compress import image_folder

    folder = image_folder(tmp_path / "mine", classes=4, channels=1, side=28)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "compress", "compress": {"teacher": "gone.pth", "data": str(folder),
                                                                     "budgets": [2000000]}}))
    overlay, said = rehearsal.prepare(path, tmp_path / "out")
    c = yaml.safe_load(overlay.read_text())["compress"]
    params = analytic(Genotype.uniform("wrn-16-1", "Conv", in_channels=1, num_classes=4, image_size=28)).params
    assert (c["data"], c["teacher"], c["budgets"]) == (str(folder), "embedded", [params // 4])
    assert said[0] == f"compress.data: {folder} (the user's, a few batches)" and "do not fit a torchvision" in said[1]


def test_imagenet_trains_as_two_gloo_processes():
    cfg = rehearsal.overlay(_profile("imagenet"), "r")
    assert cfg["resources"]["train"] == {**_profile("imagenet")["resources"]["train"], "gpu": 0, "processes": 2,
                                         "threads": 2}
    assert cfg["teacher"]["recipe"]["batch_size"] == rehearsal.BATCH // 2


def test_sizes_left_out_are_shrunk_from_the_schemas_defaults(tmp_path, monkeypatch):
    """Change a default in the schema and the rehearsal of a profile without that key follows it."""
    for name in ("config", "compress"):
        schema = yaml.safe_load((rehearsal.SCHEMAS / f"{name}.schema.yaml").read_text())
        props = schema["properties"]
        if name == "config":
            props["ablations"]["properties"]["random_count"]["default"] = 2
            props["ablations"]["properties"]["minibatches"]["default"] = [3, 30]
            props["search"]["properties"]["budgets"]["default"] = [500, 600, 700]
        else:
            props["compress"]["properties"]["seeds"]["default"] = [7, 8, 9]
        (tmp_path / f"{name}.schema.yaml").write_text(yaml.safe_dump(schema))
    monkeypatch.setattr(rehearsal, "SCHEMAS", tmp_path)
    cfg = rehearsal.overlay({}, "r")
    assert (cfg["ablations"]["random_count"], cfg["ablations"]["minibatches"]) == (2, [3])
    assert cfg["search"]["budgets"] == [500, 700] and cfg["ablations"]["sample_budgets"] == []
    assert rehearsal.overlay({"name": "compress"}, "r")["compress"]["seeds"] == [7, 8]


def test_structured_keeps_one_substitution_per_family():
    blocks = ["TensorTrain_0.24", "Shuffle_2", "TensorTrain_0.43", "Shuffle_4", "ACDC_16"]
    assert rehearsal._first_per_family(blocks) == ["TensorTrain_0.24", "Shuffle_2", "ACDC_16"]


def test_cifar10_standin_reads_as_torchvision_batches(tmp_path, monkeypatch):
    folder = standins.write_cifar10(tmp_path, per_batch=20, n_test=40)
    train, test = load_dataset("cifar10", folder, "train"), load_dataset("cifar10", folder, "test")
    assert len(train) == 5 * 20 and len(test) == 40
    batch = pickle.loads((folder / "cifar-10-batches-py/data_batch_3").read_bytes(), encoding="bytes")
    assert batch[b"data"].shape == (20, 3072) and batch[b"data"].dtype == np.uint8
    assert sorted(set(batch[b"labels"])) == list(range(10))
    meta = pickle.loads((folder / "cifar-10-batches-py/batches.meta").read_bytes(), encoding="bytes")
    assert meta[b"label_names"] == [f"class{c}".encode() for c in range(10)]  # Python 2 strings: bytes here
    # torchvision reads them as the real archive (latin1: str keys), once past its MD5 check of the real files.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    theirs = torchvision.datasets.CIFAR10(str(folder), train=True)
    assert theirs.classes == [f"class{c}" for c in range(10)] and theirs.targets == train.labels.tolist()
    assert torch.equal(torch.from_numpy(theirs.data).permute(0, 3, 1, 2), train.images)


def test_imagenet_standin_folders_of_assorted_sizes(tmp_path):
    folder = standins.write_imagenet(tmp_path, classes=12, per_class=2)
    for split in ("train", "val"):
        wnids = sorted(p.name for p in (folder / split).iterdir())
        assert wnids == [f"n{c:08d}" for c in range(12)]
        assert all(len(list((folder / split / w).glob("*.JPEG"))) == 2 for w in wnids)
    ds = load_dataset("imagenet", folder, "train")
    assert len(ds) == 24 and sorted(set(ds.labels.tolist())) == list(range(12))
    sizes = {Image.open(p).size for p in (folder / "train").rglob("*.JPEG")}
    assert len(sizes) > 10


def test_torchvision_state_dict_standin_is_what_pretrained_imports(tmp_path):
    import torch
    import torchvision

    path = standins.write_torchvision_resnet(tmp_path / "resnet18.pth", "resnet18", num_classes=10)
    state = torch.load(path, weights_only=True)
    assert state.keys() == torchvision.models.resnet18(num_classes=10).state_dict().keys()
    assert state["fc.weight"].shape == (10, 512)


def test_coco_standin_has_polygons_rle_crowds_and_id_gaps(tmp_path):
    from pycocotools.coco import COCO

    from blockswap.detection.coco import CocoDetection

    images, ann = standins.write_coco(tmp_path, "train", 4, seed=0)
    coco = COCO(str(ann))
    assert sorted(coco.cats) == [1, 3, 18, 44, 90]
    assert sorted(coco.imgs) == [1000, 2000, 3000, 4000]
    anns = list(coco.anns.values())
    kinds = {("polygon" if isinstance(a["segmentation"], list) else
              "rle" if isinstance(a["segmentation"]["counts"], str) else "uncompressed") for a in anns}
    assert kinds == {"polygon", "rle", "uncompressed"}
    assert sum(a["iscrowd"] for a in anns) == 2 and all(a["iscrowd"] for a in anns
                                                         if not isinstance(a["segmentation"], list)
                                                         and not isinstance(a["segmentation"]["counts"], str))
    for a in anns:  # every mask decodes to the image's size with the area the file states
        img = coco.imgs[a["image_id"]]
        mask = coco.annToMask(a)
        assert mask.shape == (img["height"], img["width"])
        if not isinstance(a["segmentation"], list):
            assert mask.sum() == a["area"]
    assert {(im["width"], im["height"]) for im in coco.imgs.values()} == set(standins.COCO_SIZES)
    ds = CocoDetection(images, ann)
    image, target = ds[0]
    assert image.shape[1:] == (480, 640) and target["masks"].shape[1:] == (480, 640)
    assert set(target["labels"].tolist()) <= set(range(1, 6))


def test_first_images_cuts_the_users_file(tmp_path):
    _, ann = standins.write_coco(tmp_path, "val", 4, seed=1)
    cut = json.loads(rehearsal.first_images(ann, 2, tmp_path / "cut.json").read_text())
    full = json.loads(ann.read_text())
    assert [im["id"] for im in cut["images"]] == [im["id"] for im in full["images"][:2]]
    assert cut["annotations"] == [a for a in full["annotations"] if a["image_id"] in {1001, 2001}]
    assert cut["categories"] == full["categories"]


def test_prepare_uses_the_users_data_where_present(tmp_path):
    users = standins.write_cifar10(tmp_path / "mine")
    profile = {**_profile("cifar10"), "dataset": {**_profile("cifar10")["dataset"], "data_dir": str(users)}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(profile))
    overlay, said = rehearsal.prepare(path, tmp_path / "out")
    cfg = yaml.safe_load(overlay.read_text())
    assert cfg["dataset"]["data_dir"] == str(users) and "the user's" in said[0]
    assert not (tmp_path / "out/standin").exists()


def test_prepare_writes_standins_where_the_data_is_absent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overlay, said = rehearsal.prepare(ROOT / "workflow/config/imagenet.yaml", Path("out"))
    cfg = yaml.safe_load(overlay.read_text())
    assert overlay == Path("out/overlay.yaml") and cfg["dataset"]["data_dir"] == "out/standin/imagenet"
    weights = torch.load(tmp_path / cfg["teacher"]["pretrained"], weights_only=True)
    assert weights["fc.weight"].shape == (1000, 512)  # resnet34's, as torchvision saves it
    assert [s.split(":")[0] for s in said] == ["dataset", "teacher.pretrained"]


def _blockswap(*args, cwd):
    return subprocess.run([sys.executable, "-m", "blockswap", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


@pytest.mark.parametrize("case,message", [
    ("missing", "p.yaml: no such profile"),
    ("not_yaml", "not YAML"),
    ("other_out", "holds another rehearsal"),
    ("not_a_mapping", "p.yaml: a profile is a mapping of config keys"),
    ("name_not_a_string", "p.yaml: name: 5 is not of type 'string' (see workflow/schemas/config.schema.yaml)"),
    ("key_of_another_type", "p.yaml: teacher: [0, 1] is not of type 'object'"),
    ("compress_recipe", "p.yaml: compress.recipe.lr: -0.1 is less than or equal to the minimum of 0 (see "
                        "workflow/schemas/compress.schema.yaml)"),
    ("out_under_a_file", "--out a-file/out: a-file is a file, not a folder"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, case, message):
    profile, out_dir = tmp_path / "p.yaml", "out"
    texts = {"not_yaml": "dataset: [unclosed\n", "not_a_mapping": "- name\n- cifar10\n",
             "name_not_a_string": "name: 5\n", "key_of_another_type": "name: cifar10\nteacher: [0, 1]\n",
             "compress_recipe": "name: compress\ncompress: {recipe: {lr: -0.1}}\n"}
    if case in texts:
        profile.write_text(texts[case])
    elif case == "other_out":
        profile.write_text(yaml.safe_dump(_profile("moonshine")))
        other = tmp_path / "o.yaml"
        other.write_text(yaml.safe_dump(_profile("wrn28")))
        assert _blockswap("rehearse", other, "--out", "out", cwd=tmp_path).returncode == 0
    elif case == "out_under_a_file":
        profile.write_text(yaml.safe_dump(_profile("moonshine")))
        (tmp_path / "a-file").write_text("")
        out_dir = "a-file/out"
    before = sorted(tmp_path.rglob("*"))
    out = _blockswap("rehearse", profile, "--out", out_dir, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_a_read_only_out_is_refused_naming_it(tmp_path, monkeypatch, capsys):
    """As a user who may not write there (root may, so the refusal is simulated where the check tries)."""
    import errno
    import tempfile

    from blockswap.cli import main

    locked = tmp_path / "locked"
    locked.mkdir()

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert main(["rehearse", str(ROOT / "workflow/config/moonshine.yaml"), "--out", str(locked / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"blockswap rehearse: error: --out {locked / 'out'}: cannot write into {locked} (Permission "
                   "denied); choose another output path")
    assert list(locked.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_PROFILES)
def test_rehearsal_executes_every_rule_of_the_profile(tmp_path, name):
    profile = ROOT / f"workflow/config/{name}.yaml"
    out = tmp_path / f"results/rehearse/{name}"
    prepared = _blockswap("rehearse", profile, "--out", out.relative_to(tmp_path), cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr
    overlay = json.loads(prepared.stdout)["overlay"]
    # From the work folder, as `make rehearse` runs it: the overlay's paths are relative to it.
    run = snakemake("--cores", 2, "--configfile", profile, overlay, workdir=tmp_path, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert set(job_stats(run.stderr + run.stdout)) == set(planned_jobs("--configfile", profile))
    assert planned_jobs("--configfile", profile, overlay, workdir=tmp_path, cwd=tmp_path) == {}
    tables = sorted((out / "results/tables").glob("*.md"))
    assert tables and all(t.read_text().count(REHEARSAL_MARK.strip()) == 1 for t in tables)
    for csv in (out / "results/tables").glob("*.csv"):
        assert csv.read_text().splitlines()[0].split(",")[-1] == "rehearsal", csv
    pngs = sorted((out / "results/figures").glob("*.png"))
    assert pngs and all(Image.open(p).info.get("Description") == REHEARSAL_MARK for p in pngs)


@pytest.mark.slow
def test_compress_rehearsal_with_standins_executes_every_rule(tmp_path):
    """A user's compress profile whose files are not there yet: a stand-in folder and torchvision ResNet-18."""
    profile = tmp_path / "mine.yaml"
    profile.write_text("name: compress\ncompress:\n  teacher: my/resnet18.pth\n  data: my/images\n")
    prepared = _blockswap("rehearse", profile, "--out", "out", cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr
    told = json.loads(prepared.stdout)
    params = sum(p.numel() for p in torchvision.models.resnet18(num_classes=3).parameters())  # 3 stand-in classes
    assert [line.split(" (")[0] for line in told["data"]] == [
        "compress.data: stand-in image folder out/standin/folder",
        "compress.teacher: stand-in torchvision resnet18 state dict out/standin/teacher/resnet18.pth",
        f"compress.budgets: [{params // 4}], a quarter of the stand-in teacher's {params:,} params"]
    run = snakemake("--cores", 2, "--configfile", profile, told["overlay"], workdir=tmp_path, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert job_stats(run.stderr + run.stdout) == {"compress_student": 6, "compress_table": 1,
                                                  "compress_results_page": 1, "all": 1}
    reports = [json.loads(p.read_text()) for p in (tmp_path / "out/results").glob("*/*/*/report.json")]
    assert {(r["teacher"]["params"], r["teacher"]["test_examples"]) for r in reports} == {(params, 32)}
    assert all(r["student"]["params"] <= params // 4 * 1.025 and r["student"]["test_examples"] == 32 for r in reports)
    assert (tmp_path / "out/results/table.md").read_text().startswith(REHEARSAL_MARK)
    assert Image.open(tmp_path / "out/results/pareto.png").info.get("Description") == REHEARSAL_MARK
