"""Rehearse a paper profile on the CPU before it waits hours in a cluster queue.

`overlay(profile)` shrinks a profile's sizes only - epochs, subsets, batches, samples, random nets, seeds,
one or two budgets, a few of each list of blocks - and moves every job to the CPU (a job the profile runs
on several GPUs runs as 2 gloo processes under torchrun). Every rule of the profile's DAG still runs.
The data are the user's where they are present (a few batches of them: paths, formats and classes are
read for real) and otherwise stand-ins written in the real formats (`standins`): CIFAR-10's python batches,
ImageNet's `train|val/<wnid>/*.JPEG` with a torchvision-format ResNet state dict as the pretrained teacher, a
COCO instances file with polygon, RLE and crowd masks and category-id gaps; for the compress profile an image
folder of PNGs and a torchvision ResNet-18 state dict as the teacher. The stand-ins are noise: a
rehearsal's tables and figures say it (`rehearsal: true` marks them) and are no evidence of anything.
A size the profile leaves out is read from the schema's default (`with_defaults`), never copied here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from ..core.errors import BlockswapError
from ..core.files import write_text
from ..data.standins import write_cifar10, write_coco, write_image_folder, write_imagenet, write_torchvision_resnet
from .plan import is_compress_profile

TRAIN_IMAGES = 32  # training subset of every classification job: 4 steps at batch 8
TEST_IMAGES = 32  # test subset: the error is a formality
BATCH = 8  # minibatch of every job (the paper's or smaller)
SAMPLES = 4  # candidates per search
RANDOM_NETS = 3  # random nets per ablation budget: the fewest a rank correlation takes
MAX_MINIBATCHES = 10  # the "after k minibatches" proxies up to this k
LIST_KEEP = 2  # of each list of students (single-blocktype, scaled)
DETECTION_IMAGES = (4, 2)  # COCO train, val images (stand-ins, or the first of the user's)


def _set(node: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _shrink_recipe(recipe: dict, batch_size: int, batch: int = BATCH) -> dict:
    """`recipe` (as given) on a few images; `batch_size`: the one it trains with, given or its default."""
    return {**recipe, "epochs": 1, "batch_size": min(batch_size, batch), "subset": TRAIN_IMAGES,
            "test_subset": TEST_IMAGES, "eval_every": 1}


def _cpu_resource(resource: dict, train: bool) -> dict:
    """No GPU and one thread; a training job the profile spreads over several GPUs becomes 2 gloo processes
    (a thread each)."""
    several = resource.get("gpu", 0) > 1 or (resource.get("processes") or 1) > 1
    out = {**resource, "threads": 1, "gpu": 0}
    out.pop("processes", None)
    if train and several:
        out.update(processes=2, threads=2)
    return out


def _first_per_family(blocks: list[str]) -> list[str]:
    """One structured substitution per family (TensorTrain_0.24, TensorTrain_0.43 → TensorTrain_0.24)."""
    kept = {}
    for b in blocks:
        kept.setdefault(b.split("_")[0], b)
    return list(kept.values())


def overlay(profile: dict, results_dir: str) -> dict:
    """The rehearsal of `profile` (as its YAML file reads): the same keys, smaller, on the CPU. A size the profile
    leaves out is shrunk from the schema's default (`with_defaults`), the one the workflow would run."""
    if is_compress_profile(profile):
        return compress_overlay(profile, results_dir)
    cfg, full = copy.deepcopy(profile), with_defaults(profile)
    cfg.update(results_dir=results_dir, device="cpu", rehearsal=True)
    for part in ("teacher", "student"):
        if part in cfg:  # 224-px ImageNet images: half the batch
            batch = BATCH // 2 if _is_imagenet(cfg) else BATCH
            cfg[part]["recipe"] = _shrink_recipe(cfg[part].get("recipe", {}), full[part]["recipe"]["batch_size"], batch)
    teacher = cfg.setdefault("teacher", {})
    teacher["seeds"] = full["teacher"]["seeds"][:1]
    student = cfg.setdefault("student", {})
    if student.get("repeat_seeds"):
        student["repeat_seeds"] = student["repeat_seeds"][:2]
    search = cfg.setdefault("search", {})
    search["samples"] = min(full["search"]["samples"], SAMPLES)
    ablations, given = cfg.setdefault("ablations", {}), full["ablations"]
    budgets = full["search"]["budgets"]
    keep = [b for b in given["sample_budgets"] if b in budgets][:1]
    search["budgets"] = list(dict.fromkeys(keep + [budgets[0], budgets[-1]]))[:2]
    if given["sample_budgets"]:
        ablations["sample_budgets"] = keep
        ablations["sample_counts"] = [2]
        ablations["sample_seeds"] = [0, 1]
    ablations["random_budgets"] = given["random_budgets"][:1]
    ablations["random_count"] = min(given["random_count"], RANDOM_NETS)
    ablations["random_repeats"] = min(given["random_repeats"], 1)
    ablations["minibatches"] = [k for k in given["minibatches"] if k <= MAX_MINIBATCHES] or [1]
    baselines = cfg.setdefault("baselines", {})
    for key in ("moonshine_blocks", "scaled"):
        if key in baselines:
            baselines[key] = baselines[key][:LIST_KEEP]
    structured = cfg.get("structured", {})
    if structured.get("blocks"):
        structured["blocks"] = _first_per_family(structured["blocks"])
        structured["crs_off"] = [b for b in structured.get("crs_off", []) if b in structured["blocks"]][:1] or (
            structured["blocks"][:1] if structured.get("crs_off") else [])
    resources = cfg.setdefault("resources", {})
    for kind in ("train", "score", "light"):
        resources[kind] = _cpu_resource(resources.get(kind, {}), kind == "train")
    detection = cfg.get("detection", {})
    if detection.get("enabled"):
        detection["samples"] = min(full["detection"]["samples"], 2)
        detection["figure_images"] = 2
        if detection.get("norm") == "syncbn":  # SyncBatchNorm is CUDA-only: each process its own statistics
            detection["norm"] = "bn"
        detection["recipe"] = {**detection.get("recipe", {}), "epochs": 1, "batch_size": 2, "warmup_iters": 1,
                               "eval_batch_size": 1, "workers": 0}
        res = detection.setdefault("resources", {})
        for kind in ("train", "score"):
            res[kind] = _cpu_resource(res.get(kind, {}), kind == "train")
    return cfg


def compress_overlay(profile: dict, results_dir: str) -> dict:
    """The compress profile's rehearsal: its first budget, two seeds (a paired interval needs two), a few
    candidates, the students' and the embedded teacher's recipes shrunk, on the CPU. Sizes left out are read as
    `overlay`'s are: from the schema's defaults, and a recipe's from the command's own (`recipe.TrainConfig`)."""
    from ..core.recipe import FIELDS

    cfg, full = copy.deepcopy(profile), with_defaults({**profile, "compress": profile.get("compress", {})})
    cfg.update(results_dir=results_dir, rehearsal=True)
    c, given = cfg.setdefault("compress", {}), full["compress"]
    c["budgets"] = given["budgets"][:1]
    c["seeds"] = given["seeds"][:2]
    c["samples"] = min(given["samples"], SAMPLES)
    for key in ("recipe", "teacher_recipe"):
        batch_size = given[key].get("batch_size", FIELDS["batch_size"].default)
        c[key] = {**_shrink_recipe(c.get(key, {}), batch_size), "device": "cpu"}
    c["threads"] = 1
    return cfg


def _is_imagenet(cfg: dict) -> bool:
    return cfg.get("dataset", {}).get("name") == "imagenet"


def first_images(annotations: Path, n: int, out: Path) -> Path:
    """The user's COCO instances file cut to its first `n` images (and their annotations), written to `out`."""
    data = json.loads(annotations.read_text())
    images = data["images"][:n]
    ids = {im["id"] for im in images}
    write_text(out, json.dumps({**data, "images": images,
                                "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}))
    return out


# ------------------------------------------------------------------------------------------------- setup
def _compress_inputs(c: dict, standin: Path) -> list[str]:
    """The compress profile's data and teacher: the user's where present, else stand-ins (said per line). With
    a stand-in teacher the budget is a quarter of its params, so that the user's budget (for their network)
    cannot make the rehearsal fail."""
    from ..core.counting import analytic
    from ..core.genotype import Genotype
    from ..data.datasets import load_dataset

    said, data, teacher = [], c.get("data", "embedded"), c.get("teacher", "embedded")
    if data == "embedded":
        said.append("compress.data: embedded Fashion-MNIST, written as an image folder (the real data)")
    elif _imagenet_present(Path(data)):
        said.append(f"compress.data: {data} (the user's, a few batches)")
    else:
        c["data"] = str(write_image_folder(standin / "folder"))
        said.append(f"compress.data: stand-in image folder {c['data']} ({data} has no train/ val/)")
    if teacher == "embedded" or Path(teacher).is_file():
        said.append(f"compress.teacher: {teacher}" + (" (the user's)" if teacher != "embedded" else
                                                      f" ({c.get('teacher_model', 'wrn-16-1')} trained here)"))
        return said
    if c["data"] == "embedded":
        channels, classes, side = 1, 10, 28  # Fashion-MNIST's
    else:
        folder = load_dataset("folder", c["data"], "train")
        channels, classes, side = folder.in_channels, folder.num_classes, folder.image_size
    if channels == 3 and side >= 32:  # torchvision's ResNet-18 takes it as it is
        model = "resnet18"
        c["teacher"] = str(write_torchvision_resnet(standin / "teacher" / "resnet18.pth", model, classes))
        said.append(f"compress.teacher: stand-in torchvision resnet18 state dict {c['teacher']} ({teacher} not found)")
    else:
        model = c.get("teacher_model", "wrn-16-1")
        c["teacher"] = "embedded"
        said.append(f"compress.teacher: embedded {model} trained here ({teacher} not found; the folder's "
                    f"{channels}-channel {side} px images do not fit a torchvision ResNet)")
    params = analytic(Genotype.uniform(model, "Conv", in_channels=channels, num_classes=classes,
                                       image_size=side)).params
    c["budgets"] = [params // 4]
    said.append(f"compress.budgets: [{params // 4}], a quarter of the stand-in teacher's {params:,} params")
    return said


def _cifar10_present(data_dir: Path) -> bool:
    return any((d / "test_batch").is_file() for d in (data_dir / "cifar-10-batches-py", data_dir))


def _imagenet_present(data_dir: Path) -> bool:
    return (data_dir / "train").is_dir() and (data_dir / "val").is_dir()


SCHEMAS = Path(__file__).resolve().parents[3] / "workflow" / "schemas"  # in a checkout, beside the Snakefile


def _schema_path(profile: dict) -> Path:
    """The schema the workflow validates `profile` with: the compress profile's, or the paper profiles'."""
    return SCHEMAS / ("compress.schema.yaml" if is_compress_profile(profile) else "config.schema.yaml")


def _schema(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def with_defaults(profile: dict) -> dict:
    """A copy of `profile` with every default of its schema filled in, nested ones too, as the workflow's
    validation fills them: what a run of the profile takes, so that the overlay shrinks the schema's numbers and
    never a stale copy of them. Keys of the wrong type stay as they are (`check_schema` refuses them)."""
    import jsonschema

    path = _schema_path(profile)
    if not path.is_file():
        raise BlockswapError(f"{path}: not found; a rehearsal runs in a checkout of the workflow, whose schema "
                             "states the sizes it shrinks")
    base = jsonschema.Draft202012Validator
    properties = base.VALIDATORS["properties"]

    def fill(validator, props, instance, schema):
        if validator.is_type(instance, "object"):
            for name, sub in props.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from properties(validator, props, instance, schema)

    full = copy.deepcopy(profile)
    for _ in jsonschema.validators.extend(base, {"properties": fill})(_schema(path)).iter_errors(full):
        pass  # filling is the point; the errors are check_schema's
    return full


def check_schema(profile: dict, profile_path: Path) -> None:
    """The profile against the schema the workflow validates it with, so that a key of the wrong type is refused
    in one line naming it before anything is written rather than deep in the overlay. Without a checkout (no
    schemas) the workflow's own validation remains."""
    import jsonschema

    schema = _schema_path(profile)
    if not schema.is_file():
        return
    validator = jsonschema.Draft202012Validator(_schema(schema))
    why = jsonschema.exceptions.best_match(validator.iter_errors(profile))
    if why is not None:
        raise BlockswapError(f"{profile_path}: {why.json_path.lstrip('$.') or 'top level'}: {why.message} (see "
                             f"{schema.relative_to(SCHEMAS.parents[1])})")


def prepare(profile_path: Path, out_dir: Path) -> tuple[Path, list[str]]:
    """Write the rehearsal's overlay config (and the stand-in data it needs) under `out_dir`; return the
    overlay's path and one line per data source saying whether it is the user's or a stand-in."""
    import yaml

    if not profile_path.is_file():
        raise BlockswapError(f"{profile_path}: no such profile; the profiles are workflow/config/*.yaml")
    path = out_dir / "overlay.yaml"
    header = f"# Written by `blockswap rehearse {profile_path.resolve()}`: the profile's sizes shrunk, on the CPU.\n"
    if path.is_file() and path.read_text().splitlines()[0] != header.rstrip():
        raise BlockswapError(f"{out_dir} holds another rehearsal ({path.read_text().splitlines()[0][2:]}); "
                             "pass an empty folder or that profile")
    try:
        profile = yaml.safe_load(profile_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise BlockswapError(f"{profile_path}: not YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(profile, dict):
        raise BlockswapError(f"{profile_path}: a profile is a mapping of config keys, as workflow/config/*.yaml")
    check_schema(profile, profile_path)
    cfg = overlay(profile, str(out_dir / "results"))
    said = []
    if is_compress_profile(cfg):
        said = _compress_inputs(cfg["compress"], out_dir / "standin")
        write_text(path, header + yaml.safe_dump(cfg, sort_keys=False))
        return path, said
    dataset = cfg.get("dataset", {})
    standin = out_dir / "standin"
    if not cfg.get("detection", {}).get("only"):
        name, data_dir = dataset.get("name", "fashion-mnist"), Path(dataset.get("data_dir") or "")
        if name == "cifar10" and not _cifar10_present(data_dir):
            _set(cfg, "dataset.data_dir", str(write_cifar10(standin / "cifar10")))
            said.append(f"dataset: stand-in CIFAR-10 batches in {standin / 'cifar10'} ({data_dir} has none)")
        elif name == "imagenet" and not _imagenet_present(data_dir):
            _set(cfg, "dataset.data_dir", str(write_imagenet(standin / "imagenet", dataset.get("num_classes", 1000))))
            said.append(f"dataset: stand-in ImageNet folders in {standin / 'imagenet'} ({data_dir} has no train/ val/)")
        else:
            said.append(f"dataset: {name} from {data_dir or 'its standard place'} (the user's, a few batches)")
        pretrained = cfg.get("teacher", {}).get("pretrained")
        if pretrained and not Path(pretrained).is_file():
            weights = write_torchvision_resnet(standin / "pretrained" / Path(pretrained).name,
                                               cfg["teacher"]["model"], dataset.get("num_classes", 1000))
            cfg["teacher"]["pretrained"] = str(weights)
            said.append(f"teacher.pretrained: stand-in torchvision state dict {weights} ({pretrained} not found)")
    detection = cfg.get("detection", {})
    if detection.get("enabled") and detection.get("train", {}).get("annotations"):
        for split, n, seed in (("train", DETECTION_IMAGES[0], 0), ("val", DETECTION_IMAGES[1], 1)):
            given = detection[split]
            if Path(given["annotations"]).is_file() and Path(given["images"]).is_dir():
                cut = first_images(Path(given["annotations"]), n, out_dir / "coco" / f"instances_{split}_first{n}.json")
                detection[split] = {"images": given["images"], "annotations": str(cut)}
                said.append(f"detection.{split}: the first {n} images of {given['annotations']}")
            else:
                images, ann = write_coco(standin / "coco", split, n, seed)
                detection[split] = {"images": str(images), "annotations": str(ann)}
                said.append(f"detection.{split}: stand-in COCO file {ann} ({given['annotations']} not found)")
    write_text(path, header + yaml.safe_dump(cfg, sort_keys=False))
    return path, said
