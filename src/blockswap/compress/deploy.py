"""A student that stands alone: the files a deployment needs, beside its checkpoint, and the calls that use them.

`export(folder, train_set, data_dir, config)` writes, beside FOLDER/model.pt (a compress job's student/):
  model.onnx            the logits only, with a dynamic batch axis (opset ONNX_OPSET), for ONNX Runtime;
  model.torchscript.pt  the same network as TorchScript, for `torch.jit.load` without this package;
  preprocess.json       what the network expects of an image file, as training prepared it (`preprocessing`):
                        decoding, colour, resize policy, input size, x = (pixels/255 - mean)/std, and the class
                        names in the order of the logits;
  export.json           both files checked against PyTorch on up to PARITY_IMAGES validation images: the largest
                        absolute logit difference and how often the top-1 class agrees. An export further from
                        PyTorch than TOLERANCE (times the largest |logit| where that exceeds 1: float32 agrees to a
                        fraction of the values' size) is refused and nothing of it is written.
`load(path)` gives the logits-only module in eval mode; `predict` classifies image files through either runtime,
preparing each image as training prepared the validation images.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..core.errors import BlockswapError
from ..core.files import atomic_path, read_json, write_json

ONNX_OPSET = 18
TOLERANCE = 1e-3  # the largest logit difference an export may have from PyTorch, per unit of the largest |logit| ≥ 1
PARITY_IMAGES = 256  # validation images the exports are checked on (the first, in the test set's order)
BATCH = 64
FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
RUNTIMES = ("torch", "onnx")
PREPROCESS_FORMAT = "blockswap-preprocess-1"
DECODER = "Pillow: Image.open(path).convert(color)"  # imagefolder.decode_image; grey from colour is ITU-R 601 luma
RESIZE = "resize"  # small images: resized to the input size unless they have it (imagefolder.decode_all)
CENTRE_CROP = "resize-shorter-side-then-centre-crop"  # larger ones: as imagefolder.load_image tests them
HOW = "give the output folder of `blockswap compress` (or its student/ folder)"


class Logits(nn.Module):
    """A network whose forward returns the logits alone (a blockswap net returns them with its attention maps)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def checkpoint_path(path: str | os.PathLike) -> Path:
    """The checkpoint `path` names: itself (a file), or a folder's student/model.pt or model.pt."""
    path = Path(path)
    if path.is_file():
        return path
    for candidate in (path / "student" / "model.pt", path / "model.pt"):
        if candidate.is_file():
            return candidate
    raise BlockswapError(f"{path}: {'no such file or folder' if not path.exists() else 'holds no model.pt'}; {HOW}, "
                         "or a checkpoint")


def load(path: str | os.PathLike) -> Logits:
    """The network of a compress output folder, a folder holding model.pt, or a checkpoint: its forward returns
    the logits alone, in eval mode."""
    from ..training.checkpoint import load_model

    return Logits(load_model(checkpoint_path(path))[0]).eval()


# ------------------------------------------------------------------------------------------ preprocessing
def normalisation(dataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel, in [0, 1] units, that the student's inputs were normalised with in training:
    the training set's, as --normalize chose them (`imagefolder.Preprocess`; by default the teacher's own)."""
    return tuple(dataset.preprocess.mean), tuple(dataset.preprocess.std)


def preprocessing(dataset) -> dict:
    """What preprocess.json holds for a student trained on `dataset` (the training split of an image folder):
    enough for any runtime to prepare an image file as training prepared the validation images."""
    from ..data.imagefolder import FolderDataset

    mean, std = normalisation(dataset)
    channels, size = dataset.in_channels, dataset.image_size
    if isinstance(dataset, FolderDataset):
        height, width = size, size
        resize = {"policy": CENTRE_CROP, "shorter_side": size * 8 // 7, "crop": [size, size], "antialias": True}
    else:
        height, width = dataset.images.shape[-2:]
        resize = {"policy": RESIZE, "size": [height, width], "antialias": True}
    return {"format": PREPROCESS_FORMAT, "decoder": DECODER,
            "color": "grayscale" if channels == 1 else "rgb", "channels": channels, "input_size": [height, width],
            "layout": "NCHW, float32", "resize": resize, "normalize": "x = (pixels / 255 - mean) / std",
            "mean": list(mean), "std": list(std), "normalize_from": dataset.preprocess.normalize,
            "classes": list(dataset.classes)}


def read_preprocessing(folder: Path) -> dict:
    spec = read_json(folder / "preprocess.json", "preprocess.json (written by `blockswap compress`)")
    if not isinstance(spec, dict) or spec.get("format") != PREPROCESS_FORMAT:
        raise BlockswapError(f"{folder / 'preprocess.json'}: not a {PREPROCESS_FORMAT} file; rerun "
                             "`blockswap compress` on its folder to write it again")
    return spec


def read_image(path: str | os.PathLike, spec: dict) -> torch.Tensor:
    """One image file as uint8 C×H×W, decoded and resized as `spec` (preprocess.json) says."""
    from torchvision.transforms.v2 import functional as TF

    from ..data.imagefolder import decode_image

    if not Path(path).is_file():
        raise BlockswapError(f"{path}: no such image file")
    try:
        img = decode_image(str(path), "L" if spec["channels"] == 1 else "RGB")
    except BlockswapError as e:
        raise BlockswapError(f"{str(e).removesuffix('; replace or delete the file')}; give a PNG or JPEG "
                             "file") from None
    resize = spec["resize"]
    if resize["policy"] == CENTRE_CROP:
        return TF.center_crop(TF.resize(img, [resize["shorter_side"]], antialias=True), resize["crop"])
    return img if list(img.shape[-2:]) == resize["size"] else TF.resize(img, resize["size"], antialias=True)


def prepare(paths: list, spec: dict) -> torch.Tensor:
    """Image files as the network's float32 N×C×H×W input: `read_image`, then training's normalisation."""
    from ..data.datasets import Augment

    images = torch.stack([read_image(p, spec) for p in paths])
    return Augment(tuple(spec["mean"]), tuple(spec["std"]))(images, torch.Generator())  # normalisation only


# ------------------------------------------------------------------------------------------------- export
def export(folder: Path, train_set, data_dir, config, log=print) -> dict:
    """Write the files of the module's docstring beside FOLDER/model.pt, the exports checked against PyTorch
    on the validation images; returns export.json's record (read back when done before)."""
    from ..data.datasets import load_dataset

    record_path = folder / "export.json"
    if record_path.exists():
        return read_json(record_path, "export record")
    net = load(folder / "model.pt")
    spec = preprocessing(train_set)
    test_set = load_dataset("folder", data_dir, "test", config.test_subset, config.subset_seed)
    n = min(len(test_set), PARITY_IMAGES)
    log(f"exporting the student: {', '.join(FILES.values())}, checked on {n} validation images")
    with contextlib.ExitStack() as stack:  # the files appear only if both pass
        onnx_tmp, script_tmp = (stack.enter_context(atomic_path(folder / f)) for f in FILES.values())
        example = torch.zeros(2, spec["channels"], *spec["input_size"])
        write_onnx(net, example, onnx_tmp)
        write_torchscript(net, script_tmp)
        record = {"images": n, "tolerance": TOLERANCE, "onnx_opset": ONNX_OPSET,
                  **check_exports(net, onnx_tmp, script_tmp, validation_batches(test_set, spec, n))}
        # A barely trained student can give logits of 1e5 and more (batch-norm statistics of a few steps), which
        # float32 reproduces to ~1e-7 of their size, not to 1e-3 absolute: the tolerance scales with them.
        limit = TOLERANCE * max(1.0, record["max_abs_logit"])
        for runtime in FILES:
            if record[runtime]["max_abs_diff"] > limit:
                raise BlockswapError(
                    f"{folder / FILES[runtime]}: its logits differ from PyTorch's by up to "
                    f"{record[runtime]['max_abs_diff']:.3g} on {n} validation images (tolerance {limit:.3g}); "
                    f"the export is not faithful and was not written - use {folder / 'model.pt'} with "
                    "`blockswap.load`")
    write_json(folder / "preprocess.json", spec)
    write_json(record_path, record)
    return record


def write_onnx(net: Logits, example: torch.Tensor, path: Path) -> None:
    """The logits-only network as one ONNX file, its batch axis dynamic (torch.export's exporter: the older
    TorchScript-based one gives wrong logits for these nets)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on torch internals, nothing a user can act on
        torch.onnx.export(net, (example,), str(path), input_names=["image"], output_names=["logits"],
                          opset_version=ONNX_OPSET, dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes=({0: torch.export.Dim("batch")},))


def write_torchscript(net: Logits, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, yet what deployments still load
        torch.jit.script(net).save(str(path))


def validation_batches(test_set, spec: dict, n: int):
    """The first `n` validation images, normalised as preprocess.json says, in batches."""
    from ..data.datasets import Augment, iterate_batches

    augment = Augment(tuple(spec["mean"]), tuple(spec["std"]))
    subset = test_set.select(torch.arange(n))
    return [x for x, _ in iterate_batches(subset, BATCH, train=False, augment=augment, workers=0)]


def check_exports(net: Logits, onnx_path: Path, script_path: Path, batches: list[torch.Tensor]) -> dict:
    """{"onnx"/"torchscript": {"max_abs_diff", "top1_agreement"}}: each export's logits against PyTorch's, and
    "max_abs_logit": the largest |logit| of PyTorch's."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # as in write_torchscript
        scripted = torch.jit.load(str(script_path))
    runs = {"onnx": lambda x: torch.from_numpy(session.run(None, {"image": x.numpy()})[0]), "torchscript": scripted}
    diffs, agree, largest = {k: 0.0 for k in runs}, {k: 0 for k in runs}, 0.0
    with torch.no_grad():
        for x in batches:
            reference = net(x)
            largest = max(largest, reference.abs().max().item())
            for runtime, run in runs.items():
                logits = run(x)
                diffs[runtime] = max(diffs[runtime], (logits - reference).abs().max().item())
                agree[runtime] += (logits.argmax(1) == reference.argmax(1)).sum().item()
    n = sum(len(x) for x in batches)
    return {**{k: {"file": FILES[k], "max_abs_diff": diffs[k], "top1_agreement": agree[k] / n} for k in runs},
            "max_abs_logit": largest}


# ------------------------------------------------------------------------------------------------ predict
def student_folder(path: str | os.PathLike) -> Path:
    """The folder holding the student's files: DIR/student of a compress job, or DIR itself."""
    path = Path(path)
    if not path.is_dir():
        raise BlockswapError(f"{path}: {'not a folder' if path.exists() else 'no such folder'}; {HOW}")
    return path / "student" if (path / "student" / "preprocess.json").is_file() else path


def predict(path: str | os.PathLike, images: list, k: int = 3, runtime: str = "torch"
            ) -> list[list[tuple[str, float]]]:
    """For each image file, its `k` most probable classes (name, probability), best first, by the student in
    `path` run on `runtime` (torch: the checkpoint; onnx: model.onnx in ONNX Runtime)."""
    if runtime not in RUNTIMES:
        raise BlockswapError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    folder = student_folder(path)
    spec = read_preprocessing(folder)
    run = _runner(folder, runtime)
    classes, out = spec["classes"], []
    for start in range(0, len(images), BATCH):
        with torch.no_grad():
            probs = torch.softmax(run(prepare(images[start: start + BATCH], spec)), 1)
        top = probs.topk(min(k, len(classes)), 1)
        out += [[(classes[i], p) for i, p in zip(idx.tolist(), ps.tolist())] for idx, ps in zip(top.indices,
                                                                                                 top.values)]
    return out


def _runner(folder: Path, runtime: str):
    """logits(x) by `runtime`."""
    if runtime == "torch":
        return load(folder / "model.pt")
    import onnxruntime

    path = folder / FILES["onnx"]
    if not path.is_file():
        raise BlockswapError(f"{path} not found; rerun `blockswap compress` on its folder to write it")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
