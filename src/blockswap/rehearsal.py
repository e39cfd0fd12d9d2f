"""Rehearse a paper profile on the CPU before it waits hours in a cluster queue.

`overlay(profile)` shrinks a profile's sizes only - epochs, subsets, batches, samples, random nets, seeds,
one or two budgets, a few of each list of blocks - and moves every job to the CPU (a job the profile runs
on several GPUs runs as 2 gloo processes under torchrun). Every rule of the profile's DAG still runs.
The data are the user's where they are present (a few batches of them: paths, formats and classes are
read for real) and otherwise stand-ins written in the real formats: CIFAR-10's python batches, ImageNet's
`train|val/<wnid>/*.JPEG` with a torchvision-format ResNet state dict as the pretrained teacher, a COCO
instances file with polygon, RLE and crowd masks and category-id gaps; for the compress profile an image
folder of PNGs and a torchvision ResNet-18 state dict as the teacher. The stand-ins are noise: a
rehearsal's tables and figures say it (`rehearsal: true` marks them) and are no evidence of anything.
"""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import numpy as np

from .errors import BlockswapError
from .files import write_text

TRAIN_IMAGES = 32  # training subset of every classification job: 4 steps at batch 8
TEST_IMAGES = 32  # test subset: the error is a formality
BATCH = 8  # minibatch of every job (the paper's or smaller)
SAMPLES = 4  # candidates per search
RANDOM_NETS = 3  # random nets per ablation budget: the fewest a rank correlation takes
MAX_MINIBATCHES = 10  # the "after k minibatches" proxies up to this k
LIST_KEEP = 2  # of each list of students (single-blocktype, scaled)
DETECTION_IMAGES = (4, 2)  # COCO train, val images (stand-ins, or the first of the user's)
STANDIN_SEED = 0


def _set(node: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _shrink_recipe(recipe: dict, batch: int = BATCH) -> dict:
    return {**recipe, "epochs": 1, "batch_size": min(recipe.get("batch_size", 128), batch), "subset": TRAIN_IMAGES,
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
    """The rehearsal of `profile` (as its YAML file reads): the same keys, smaller, on the CPU."""
    if profile.get("name") == "compress":
        return compress_overlay(profile, results_dir)
    cfg = copy.deepcopy(profile)
    cfg.update(results_dir=results_dir, device="cpu", rehearsal=True)
    for part in ("teacher", "student"):
        if part in cfg:  # 224-px ImageNet images: half the batch
            batch = BATCH // 2 if _is_imagenet(cfg) else BATCH
            cfg[part]["recipe"] = _shrink_recipe(cfg[part].get("recipe", {}), batch)
    teacher = cfg.setdefault("teacher", {})
    teacher["seeds"] = teacher.get("seeds", [0, 1])[:1]
    student = cfg.setdefault("student", {})
    if student.get("repeat_seeds"):
        student["repeat_seeds"] = student["repeat_seeds"][:2]
    search = cfg.setdefault("search", {})
    search["samples"] = min(search.get("samples", 100), SAMPLES)
    ablations = cfg.setdefault("ablations", {})
    budgets = search.get("budgets", [20000, 40000])
    keep = [b for b in ablations.get("sample_budgets", [20000]) if b in budgets][:1]
    search["budgets"] = list(dict.fromkeys(keep + [budgets[0], budgets[-1]]))[:2]
    if ablations.get("sample_budgets", [20000]):
        ablations["sample_budgets"] = keep
        ablations["sample_counts"] = [2]
        ablations["sample_seeds"] = [0, 1]
    ablations["random_budgets"] = ablations.get("random_budgets", [20000, 40000])[:1]
    ablations["random_count"] = min(ablations.get("random_count", 20), RANDOM_NETS)
    ablations["random_repeats"] = min(ablations.get("random_repeats", 0), 1)
    ablations["minibatches"] = [k for k in ablations.get("minibatches", [1, 10]) if k <= MAX_MINIBATCHES] or [1]
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
        detection["samples"] = min(detection.get("samples", 1000), 2)
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
    candidates, the students' and the embedded teacher's recipes shrunk, on the CPU."""
    cfg = copy.deepcopy(profile)
    cfg.update(results_dir=results_dir, rehearsal=True)
    c = cfg.setdefault("compress", {})
    c["budgets"] = c.get("budgets", [20000, 40000])[:1]
    c["seeds"] = c.get("seeds", [0, 1, 2])[:2]
    c["samples"] = min(c.get("samples", 100), SAMPLES)
    for key in ("recipe", "teacher_recipe"):
        c[key] = {**_shrink_recipe(c.get(key, {})), "device": "cpu"}
    c["threads"] = 1
    return cfg


def _is_imagenet(cfg: dict) -> bool:
    return cfg.get("dataset", {}).get("name") == "imagenet"


# ------------------------------------------------------------------------------------------ stand-in data
def _noise_images(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """n uint8 RGB images (n, h, w, 3): a smooth colour gradient per image plus noise, so JPEGs stay small."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(0, 255, (n, 1, 1, 3)) * (0.5 + 0.5 * (yy + xx)[None, :, :, None] / 2)
    return np.clip(base + rng.normal(0, 20, (n, h, w, 3)), 0, 255).astype(np.uint8)


def write_cifar10(folder: Path, per_batch: int = 20, n_test: int = 40) -> Path:
    """cifar-10-batches-py/ as torchvision's archive holds it: 5 pickled training batches, test_batch, meta."""
    rng = np.random.default_rng(STANDIN_SEED)
    root = folder / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        images = _noise_images(n, 32, 32, rng).transpose(0, 3, 1, 2).reshape(n, 3072)  # rows of R, G, B planes
        batch = {"batch_label": name, "labels": (np.arange(n) % 10).tolist(), "data": images,
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        (root / name).write_bytes(_python2_pickle(batch))
    meta = {"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": per_batch}
    (root / "batches.meta").write_bytes(_python2_pickle(meta))
    return folder


def _python2_pickle(mapping: dict) -> bytes:
    """A pickled dict as CIFAR-10's batches were written by Python 2: its keys and strings (str here, or lists
    of them) are Python 2 strings, which load as bytes with encoding="bytes" (as ours reads them) and as str
    with encoding="latin1" (as torchvision does). Assembled from opcodes; every other value is pickled on its
    own (its memo entries are written before they are read, so values never see each other's)."""
    def py2(text: str) -> bytes:
        raw = text.encode("latin1")
        return (pickle.SHORT_BINSTRING + bytes([len(raw)]) if len(raw) < 256
                else pickle.BINSTRING + len(raw).to_bytes(4, "little")) + raw

    def value(v) -> bytes:
        if isinstance(v, str):
            return py2(v)
        if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            return pickle.EMPTY_LIST + pickle.MARK + b"".join(map(py2, v)) + pickle.APPENDS
        return pickle.dumps(v, protocol=3)[2:-1]  # without its PROTO header and STOP

    items = b"".join(py2(k) + value(v) for k, v in mapping.items())
    return pickle.PROTO + bytes([3]) + pickle.EMPTY_DICT + pickle.MARK + items + pickle.SETITEMS + pickle.STOP


def write_imagenet(folder: Path, classes: int = 1000, per_class: int = 1) -> Path:
    """train/ and val/ with one `n0xxxxxxx` folder per class of `per_class` JPEGs of assorted sizes each."""
    from PIL import Image

    rng = np.random.default_rng(STANDIN_SEED)
    for split in ("train", "val"):
        for c in range(classes):
            d = folder / split / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = rng.integers(40, 120, 2)
                Image.fromarray(_noise_images(1, h, w, rng)[0]).save(d / f"{split}_{c}_{i}.JPEG", quality=75)
    return folder


def write_image_folder(folder: Path, classes: int = 3, per_class: int = 16, side: int = 32) -> Path:
    """DIR/train|val/class<c>/*.png: `per_class` RGB images of `side` px per class, as a user's folder is."""
    from PIL import Image

    rng = np.random.default_rng(STANDIN_SEED)
    for split in ("train", "val"):
        for c in range(classes):
            d = folder / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(_noise_images(per_class, side, side, rng)):
                Image.fromarray(image).save(d / f"{i}.png")
    return folder


def write_torchvision_resnet(path: Path, model: str, num_classes: int = 1000) -> Path:
    """A torchvision-format state dict of `model` (its own random initialisation), as `pretrained` takes."""
    import torch
    import torchvision

    torch.manual_seed(STANDIN_SEED)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(getattr(torchvision.models, model)(num_classes=num_classes).state_dict(), path)
    return path


COCO_CATEGORIES = ((1, "person"), (3, "car"), (18, "dog"), (44, "bottle"), (90, "toothbrush"))  # COCO's id gaps
COCO_SIZES = ((640, 480), (480, 640), (500, 375), (640, 427))  # (width, height) as COCO's images are


def write_coco(folder: Path, split: str, n: int, seed: int) -> tuple[Path, Path]:
    """`n` JPEGs at COCO's sizes and instances_<split>.json: per image a polygon, a compressed-RLE and, on
    every other image, a crowd with uncompressed RLE; category ids with COCO's gaps."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    images_dir = folder / split
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []

    def add(image_id, category, segmentation, box, area, crowd=0):
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                            "segmentation": segmentation, "bbox": [float(v) for v in box], "area": float(area),
                            "iscrowd": crowd})

    for i in range(n):
        w, h = COCO_SIZES[i % len(COCO_SIZES)]
        image_id = 1000 * (i + 1) + seed  # ids neither 0-based nor contiguous
        name = f"{image_id:012d}.jpg"
        Image.fromarray(_noise_images(1, h, w, rng)[0]).save(images_dir / name, quality=75)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        cats = [c for c, _ in COCO_CATEGORIES]
        x0, y0 = rng.integers(10, w // 3), rng.integers(10, h // 3)
        bw, bh = rng.integers(w // 6, w // 3), rng.integers(h // 6, h // 3)
        triangle = [x0, y0, x0 + bw, y0, x0 + bw // 2, y0 + bh]
        add(image_id, cats[i % len(cats)], [[float(v) for v in triangle]], (x0, y0, bw, bh), bw * bh / 2)
        m = np.zeros((h, w), np.uint8)
        cx, cy, r = w // 2 + w // 8, h // 2 + h // 8, min(w, h) // 6
        yy, xx = np.ogrid[:h, :w]
        m[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        add(image_id, cats[(i + 1) % len(cats)], {"size": [h, w], "counts": rle["counts"].decode()},
            mask_utils.toBbox(rle).tolist(), float(mask_utils.area(rle)))
        if i % 2 == 0:
            crowd = np.zeros((h, w), np.uint8)
            crowd[h - h // 4: h - 10, 10: w // 2] = 1
            flat = crowd.flatten(order="F")  # COCO's uncompressed RLE: column-major run lengths from a 0 run
            changes = np.flatnonzero(np.diff(flat)) + 1
            counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
            add(image_id, cats[(i + 2) % len(cats)], {"size": [h, w], "counts": counts},
                (10, h - h // 4, w // 2 - 10, h // 4 - 10), int(crowd.sum()), crowd=1)
    categories = [{"id": c, "name": name, "supercategory": "thing"} for c, name in COCO_CATEGORIES]
    ann = folder / "annotations" / f"instances_{split}.json"
    write_text(ann, json.dumps({"info": {"description": "blockswap rehearsal stand-in"}, "images": images,
                                "annotations": annotations, "categories": categories}))
    return images_dir, ann


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
    from .counting import analytic
    from .data import load_dataset
    from .genotype import Genotype

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


SCHEMAS = Path(__file__).resolve().parents[2] / "workflow" / "schemas"  # in a checkout, beside the Snakefile


def check_schema(profile: dict, profile_path: Path) -> None:
    """The profile against the schema the workflow validates it with (the compress profile's, or the paper
    profiles'), so that a key of the wrong type is refused in one line naming it before anything is written
    rather than deep in the overlay. Without a checkout (no schemas) the workflow's own validation remains."""
    import jsonschema
    import yaml

    schema = SCHEMAS / ("compress.schema.yaml" if profile.get("name") == "compress" else "config.schema.yaml")
    if not schema.is_file():
        return
    validator = jsonschema.Draft202012Validator(yaml.safe_load(schema.read_text()))
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
    if cfg.get("name") == "compress":
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
