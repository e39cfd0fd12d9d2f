"""Datasets, batched on-device augmentation, and reproducible batch order.

Datasets are registered by name (`load_dataset("cifar10", data_dir, split="train")`). Fashion-MNIST and
CIFAR-10 are held in memory as a uint8 tensor N×C×H×W plus int64 labels (`TensorDataset`); ImageNet is
too big for that, so `FolderDataset` (`imagefolder`) keeps file paths and decodes JPEGs lazily in DataLoader
workers. Both offer what the rest of the package uses: name, labels, classes, mean, std, train_recipe,
num_classes, in_channels, image_size, len(), select(index), to(device) and batches(...), one epoch's batches.

Reproducibility. Every random choice of one epoch (shuffle order, augmentation, ImageNet crops) comes from
one `torch.Generator` seeded from (seed, epoch) only, see `epoch_generator`. Hence:
  * resuming at an epoch boundary: call `iterate_batches(..., seed=s, epoch=e)` for e = first missing epoch
    and the batches are identical to an uninterrupted run; no generator state needs checkpointing;
  * resuming mid-epoch: `start=j` yields the epoch's batches from j on without reading or decoding the
    first j (their random draws are still made), identical to those of the uninterrupted epoch;
  * the fixed Fisher minibatch: `first_batches(ds, B, seed)[0]` is the first training batch of epoch 0 for that
    seed, augmented as in training (as the reference BlockSwap code, which takes it from the train loader).
Random numbers are drawn on the CPU and moved to the device, so CPU and GPU runs see the same batches.
"""

from __future__ import annotations

import gzip
import itertools
import math
import pickle
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.datadirs import DEBIAN_DIR, locate_fashion_mnist
from ..core.errors import BlockswapError
from ..core.recipe import parse_normalize
from ..core.registry import Registry
from .distributed import World
from .imagefolder import (
    FOLDER_HOW,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NO_RESIZE,
    RESIZE,
    SMALL_SIDE,
    FolderDataset,
    Preprocess,
    check_image_files,
    decode_all,
    decoded_split,
    first_image_side,
    folder_split,
    pixel_statistics,
)

# Per-channel mean/std in [0, 1] units.
# CIFAR-10: the values of the reference BlockSwap/Moonshine code (and most CIFAR code); the exact
# whole-training-set std is (0.2470, 0.2435, 0.2616) - with BatchNorm the difference does not matter.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
# Fashion-MNIST: computed once over all 60000×28×28 training pixels (0.28604, 0.35302).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
DATASET_STATISTICS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "fashion-mnist": (FASHION_MNIST_MEAN, FASHION_MNIST_STD),
                      "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}  # the built-in datasets' (mean, std)

FASHION_MNIST_DIR = str(DEBIAN_DIR)  # the Debian package's folder; see datadirs for the search order
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# ---------------------------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class TensorDataset:
    """An in-memory dataset: `images` uint8 N×C×H×W, `labels` int64 N."""
    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_recipe: dict  # default training augmentation, keyword arguments of `Augment`
    resize: str = NO_RESIZE  # how its images were sized (`imagefolder.Preprocess`)
    normalize: str = "dataset"  # where mean and std came from (`imagefolder.Preprocess`)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(self.mean, self.std, self.image_size, self.in_channels, self.resize, self.normalize)

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, index: torch.Tensor) -> TensorDataset:
        return replace(self, images=self.images[index], labels=self.labels[index])

    def to(self, device) -> TensorDataset:
        """Hold the images on `device` (CIFAR-10 is 150 MB) so that batches need no host-to-device copy."""
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def batches(self, chunks: list[torch.Tensor], *, train: bool, generator: torch.Generator, augment: Augment,
                device: torch.device, part: slice, sharded: bool, start: int, workers: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches of `chunks` (index tensors) from `start` on, as `iterate_batches` yields them: the
        whole batch augmented, then (when `sharded`) this process's `part` of it."""
        h, w = self.images.shape[-2:]
        for idx in chunks[:start]:
            augment.draw(len(idx), h, w, generator)
        for idx in chunks[start:]:
            idx = idx.to(self.images.device)
            images, labels = augment(self.images[idx].to(device), generator), self.labels[idx].to(device)
            yield (images[part], labels[part]) if sharded else (images, labels)


Dataset = TensorDataset | FolderDataset
DATASETS: Registry[Callable[[Path | None, str], Dataset]] = Registry(
    "dataset", valid_label="All valid names", sort_valid=True)


def register_dataset(name: str):
    """Decorator: register `fn(data_dir: Path | None, split: "train" | "test") -> Dataset` under `name`."""
    return DATASETS.register(name)


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def load_dataset(name: str, data_dir=None, split: str = "train", subset: int | None = None,
                 seed: int = 0, normalize: str | None = None) -> Dataset:
    """Load one split; `subset=K` keeps a class-stratified random K examples chosen by `seed`; `normalize`
    (`normalized`) replaces the dataset's own mean and std."""
    factory = DATASETS.get(name)
    if split not in ("train", "test"):
        raise BlockswapError(f"unknown split {split!r} for dataset {name!r}; use 'train' or 'test'")
    ds = factory(None if data_dir is None else Path(data_dir), split)
    if normalize is not None:
        ds = normalized(ds, normalize, lambda: ds if split == "train" else factory(Path(data_dir), "train"))
    return ds if subset is None else ds.select(stratified_subset(ds.labels, subset, seed))


def normalized(ds: Dataset, normalize: str, train: Callable[[], Dataset]) -> Dataset:
    """`ds` normalised by `normalize` (`recipe.parse_normalize`): ImageNet's mean and std, the training
    split's (`train()`; a folder of large images: a sample of them), or the given ones - as many as it has
    channels (one value: every channel)."""
    stats = parse_normalize(normalize)
    if stats == "folder":
        if ds.normalize == "folder":  # a small-image folder's own
            return ds
        t = train()
        stats = t.statistics() if isinstance(t, FolderDataset) else pixel_statistics(t.images)
    elif stats == "imagenet":
        stats = IMAGENET_MEAN, IMAGENET_STD
    mean, std = (v * ds.in_channels if len(v) == 1 else v for v in stats)
    if len(mean) != ds.in_channels:
        raise BlockswapError(f"--normalize {normalize}: {len(mean)} channels' mean and std, the images have "
                             f"{ds.in_channels} ({'grayscale' if ds.in_channels == 1 else 'colour'}); give "
                             f"{ds.in_channels} values each as MEAN:STD")
    return replace(ds, mean=tuple(mean), std=tuple(std), normalize=normalize)


def check_fits(genotype, dataset: Dataset, what: str = "genotype") -> None:
    """A genotype's input shape and classes must be the dataset's."""
    want = {"in_channels": dataset.in_channels, "image_size": dataset.image_size,
            "num_classes": dataset.num_classes}
    bad = [f"{k} {getattr(genotype, k)} (dataset: {v})" for k, v in want.items() if getattr(genotype, k) != v]
    if bad:
        raise BlockswapError(f"{what} {genotype.id} ({genotype.model}) is shaped for another dataset than "
                             f"{dataset.name}: {', '.join(bad)}; make it with "
                             f"--in-channels {want['in_channels']} --image-size {want['image_size']} "
                             f"--num-classes {want['num_classes']}")


def stratified_subset(labels: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Sorted indices of K examples, each class getting its proportional share (largest remainders)."""
    n = len(labels)
    if not 0 < k <= n:
        raise BlockswapError(f"subset={k} must be between 1 and the {n} examples of the split")
    counts = torch.bincount(labels)
    exact = counts.double() * k / n
    quota = exact.floor().long()
    quota[torch.argsort(exact - quota, descending=True, stable=True)[: k - int(quota.sum())]] += 1
    g = torch.Generator().manual_seed(seed)
    groups = torch.split(torch.argsort(labels, stable=True), counts.tolist())
    picks = [grp[torch.randperm(len(grp), generator=g)[:q]] for grp, q in zip(groups, quota.tolist())]
    return torch.cat(picks).sort().values


# ------------------------------------------------------------------------------------------ Fashion-MNIST
def _read_idx(path: Path) -> torch.Tensor:
    """An IDX file of unsigned bytes (gzipped or not) as a uint8 tensor shaped as its header says."""
    fix = "the file is truncated or corrupt; replace it (apt-get install --reinstall dataset-fashion-mnist)"
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise BlockswapError(f"{path}: cannot read ({e}); {fix}") from None
    # Header: two zero bytes, a type code (0x08 = unsigned byte), the number of dims, then each dim as
    # a big-endian uint32.
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise BlockswapError(f"{path}: not an IDX file of unsigned bytes (bad magic number); {fix}")
    start = 4 + 4 * raw[3]
    if len(raw) < start:
        raise BlockswapError(f"{path}: IDX header cut short; {fix}")
    dims = struct.unpack(f">{raw[3]}I", raw[4:start])
    if len(raw) - start != math.prod(dims):
        raise BlockswapError(f"{path}: header says shape {dims} ({math.prod(dims)} bytes) "
                             f"but {len(raw) - start} bytes follow; {fix}")
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=start).reshape(dims).copy())


@register_dataset("fashion-mnist")
def _fashion_mnist(data_dir: Path | None, split: str) -> TensorDataset:
    root = locate_fashion_mnist(data_dir)
    prefix = "train" if split == "train" else "t10k"
    paths = [root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"]
    images, labels = (_read_idx(p) for p in paths)
    if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
        raise BlockswapError(f"{paths[0]} holds shape {tuple(images.shape)} but {paths[1]} holds "
                             f"{tuple(labels.shape)}; expected N×28×28 images and N labels")
    if len(labels) and labels.max() >= 10:
        raise BlockswapError(f"{paths[1]}: label {int(labels.max())} out of range 0..9; the file is corrupt")
    # No flip by default: all shoes in Fashion-MNIST face left, so mirrored images are off-distribution.
    return TensorDataset("fashion-mnist", images.unsqueeze(1), labels.long(), FASHION_MNIST_CLASSES,
                         FASHION_MNIST_MEAN, FASHION_MNIST_STD, dict(pad=4, flip=False, cutout=0))


# ----------------------------------------------------------------------------------------------- CIFAR-10
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; allow only numpy arrays, so that a bad --data-dir cannot run code."""
    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module, name):
        module = module.replace("numpy.core.", "numpy._core.")  # pickles written by numpy < 2
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    fix = "the file is truncated or corrupt; download CIFAR-10 again"
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as e:  # anything that goes wrong decoding an untrusted file means a bad file
        raise BlockswapError(f"{path}: cannot read CIFAR-10 batch ({type(e).__name__}: {e}); {fix}") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise BlockswapError(f"{path}: expected uint8 data N×3072 and N labels, found {data.dtype} "
                             f"{data.shape} and {labels.shape} labels; {fix}")
    if len(labels) and not 0 <= labels.min() <= labels.max() < 10:
        raise BlockswapError(f"{path}: labels outside 0..9; {fix}")
    return data, labels


@register_dataset("cifar10")
def _cifar10(data_dir: Path | None, split: str) -> TensorDataset:
    how = ("get it on a machine with internet with `python -c \"import torchvision; "
           "torchvision.datasets.CIFAR10('DIR', download=True)\"`, copy DIR here and pass --data-dir DIR")
    if data_dir is None:
        raise BlockswapError(f"CIFAR-10 needs a data directory; {how}")
    # Accept torchvision's root (holding cifar-10-batches-py/) or the batches folder itself.
    root = next((d for d in (data_dir / "cifar-10-batches-py", data_dir) if (d / "test_batch").is_file()), None)
    if root is None:
        raise BlockswapError(f"CIFAR-10 not found: neither {data_dir}/cifar-10-batches-py/ nor {data_dir} "
                             f"holds test_batch and data_batch_1..5; {how}")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    for n in names:
        if not (root / n).is_file():
            raise BlockswapError(f"CIFAR-10 file {root / n} is missing; {how}")
    parts = [_read_cifar_batch(root / n) for n in names]
    # Each row is 1024 red, 1024 green, 1024 blue bytes, each plane row-major 32×32.
    images = torch.from_numpy(np.concatenate([d for d, _ in parts]).reshape(-1, 3, 32, 32))
    labels = torch.from_numpy(np.concatenate([y for _, y in parts]))
    return TensorDataset("cifar10", images, labels, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD,
                         dict(pad=4, flip=True, cutout=16))


# ----------------------------------------------------------------------------------------------- ImageNet
@register_dataset("imagenet")
def _imagenet(data_dir: Path | None, split: str) -> FolderDataset:
    how = ("download ILSVRC2012 from image-net.org, extract train/ and val/ with one folder per class "
           "(wnid) - val/ must be sorted into class folders too - and pass --data-dir pointing at the "
           "folder holding train/ and val/")
    classes, paths, labels = folder_split(data_dir, split, how)
    return FolderDataset("imagenet", tuple(paths), torch.tensor(labels), tuple(classes),
                         IMAGENET_MEAN, IMAGENET_STD, dict(pad=0, flip=False, cutout=0))


# ------------------------------------------------------------------------------------- a user's image folder
@register_dataset("folder")
def _folder(data_dir: Path | None, split: str) -> Dataset:
    """Small images (≤ SMALL_SIDE px) in memory at their size and channels, normalised by the training split's
    statistics, pad-and-crop by ⌈side/8⌉ (flips for colour only: mirrored digits or garments are off-distribution);
    larger ones decoded lazily at 224 px as ImageNet."""
    classes, paths, labels = folder_split(data_dir, split, FOLDER_HOW, min_classes=2)
    if first_image_side(paths[0]) > SMALL_SIDE:
        check_image_files(paths)  # decoded only during training: every file checked now
        return FolderDataset("folder", tuple(paths), torch.tensor(labels), tuple(classes),
                             IMAGENET_MEAN, IMAGENET_STD, dict(pad=0, flip=False, cutout=0))
    images = decoded_split(str(data_dir), split)
    mean, std = pixel_statistics(images if split == "train" else decoded_split(str(data_dir), "train"))
    return TensorDataset("folder", images, torch.tensor(labels), tuple(classes), mean, std,
                         dict(pad=-(-images.shape[-1] // 8), flip=images.shape[1] == 3, cutout=0), RESIZE, "folder")


def folder_shape(data_dir) -> dict:
    """The in_channels, image_size and num_classes `load_dataset("folder", data_dir)` gives, from the class folders
    and the first image alone (a workflow's dry run, which must not decode the folder)."""
    classes, paths, _ = folder_split(Path(data_dir), "train", FOLDER_HOW, min_classes=2)
    if first_image_side(paths[0]) > SMALL_SIDE:
        return {"in_channels": 3, "image_size": 224, "num_classes": len(classes)}  # as FolderDataset decodes them
    first = decode_all(paths[:1])
    return {"in_channels": first.shape[1], "image_size": first.shape[-1], "num_classes": len(classes)}


# ------------------------------------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class Augment:
    """Batched augmentation of a uint8 N×C×H×W batch on its device, returning normalised float32.

    In order: random crop back to H×W from the batch zero-padded by `pad` (0 = off); horizontal flip
    with probability 1/2 (`flip`); (x/255 - mean)/std; Cutout: a `cutout`×`cutout` square (clipped at
    the border, centre uniform over the image) set to 0 *after* normalisation, i.e. to the mean colour,
    as in DeVries & Taylor's Cutout (0 = off). All randomness comes from `generator`.
    """
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 0
    flip: bool = False
    cutout: int = 0

    def draw(self, n: int, h: int, w: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The random numbers of one batch of n H×W images, on the generator's device, always in the same
        order. Apart from `__call__` so that a resumed epoch can make the draws of the batches it skips
        without their images (`iterate_batches(start=)`), leaving the generator where an uninterrupted
        epoch has it."""
        def randint(high: int) -> torch.Tensor:
            return torch.randint(high, (n,), generator=generator, device=generator.device)

        draws = {}
        if self.pad:
            draws["rows"], draws["cols"] = randint(2 * self.pad + 1), randint(2 * self.pad + 1)
        if self.flip:
            draws["flip"] = randint(2).bool()
        if self.cutout:
            draws["top"], draws["left"] = randint(h), randint(w)
        return draws

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = images.shape
        dev = images.device
        # Drawn on the generator's device, used on the batch's.
        r = {k: v.to(dev) for k, v in self.draw(n, h, w, generator).items()}
        if self.pad:
            p = self.pad
            rows = r["rows"][:, None] + torch.arange(h, device=dev)  # N×H rows of the padded image
            cols = r["cols"][:, None] + torch.arange(w, device=dev)
            padded = F.pad(images, (p, p, p, p))
            # Advanced indices on dims 0, 2, 3 gather to N×H×W×C; move channels back.
            images = padded[torch.arange(n, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
            images = images.permute(0, 3, 1, 2).contiguous()
        if self.flip:
            images = torch.where(r["flip"][:, None, None, None], images.flip(-1), images)
        mean = torch.tensor(self.mean, device=dev).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=dev).view(1, -1, 1, 1)
        x = (images.float() / 255 - mean) / std
        if self.cutout:
            s = self.cutout
            top, left = r["top"][:, None] - s // 2, r["left"][:, None] - s // 2
            ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)
            in_rows, in_cols = (ys >= top) & (ys < top + s), (xs >= left) & (xs < left + s)  # N×H, N×W
            x = x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)
        return x


def default_augment(dataset: Dataset, train: bool, **overrides) -> Augment:
    """The dataset's training recipe (train=True) or plain normalisation, with `overrides` applied."""
    return Augment(dataset.mean, dataset.std, **{**(dataset.train_recipe if train else {}), **overrides})


# ------------------------------------------------------------------------------------------------ batches
def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator that depends only on (seed, epoch); SeedSequence decorrelates nearby pairs."""
    if seed < 0 or epoch < 0:
        raise BlockswapError(f"seed ({seed}) and epoch ({epoch}) must be non-negative")
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def iterate_batches(dataset: Dataset, batch_size: int, *, train: bool, seed: int = 0, epoch: int = 0,
                    device="cpu", augment: Augment | None = None, workers: int = 2,
                    shard: tuple[int, int] = (0, 1), start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (float images, int64 labels) on `device` for one epoch.

    train=True: order shuffled by `epoch_generator(seed, epoch)`, last partial batch dropped;
    train=False: dataset order, last partial batch kept. `augment` defaults to `default_augment`.
    `workers` only matters for FolderDataset (DataLoader decoding processes); results do not depend on it.
    `shard=(rank, size)`: of each batch only the rank-th of `size` equal contiguous slices (data-parallel
    training; the batch size must divide by `size`), so the slices of all ranks make up the batch of one
    process. In-memory sets augment the whole batch and slice it, so every image gets the augmentation it
    gets in one process; FolderDataset decodes only its slice (crops are per image and seeded, so those
    agree too) but then draws any on-device augmentation (off by default: normalisation only) for its slice.
    `start=j` (a mid-epoch resume): begin with batch j. The first j batches are neither read nor decoded,
    but their random draws are made, so batches j, j+1, ... are bitwise those of the whole epoch.
    """
    n = len(dataset)
    if train and n < batch_size:
        raise BlockswapError(f"{dataset.name}: {n} training examples are fewer than batch size {batch_size}")
    g = epoch_generator(seed, epoch)
    order = torch.randperm(n, generator=g) if train else torch.arange(n)
    stop = n - n % batch_size if train else n
    chunks = [order[i: i + batch_size] for i in range(0, stop, batch_size)]
    if not 0 <= start <= len(chunks):
        raise BlockswapError(f"cannot start at batch {start}: the epoch has {len(chunks)} batches")
    if augment is None:
        augment = default_augment(dataset, train)
    device = torch.device(device)

    rank, size = shard
    yield from dataset.batches(chunks, train=train, generator=g, augment=augment, device=device,
                               part=World(rank, size).share(batch_size), sharded=size > 1, start=start, workers=workers)


def first_batches(dataset: Dataset, batch_size: int, seed: int = 0, k: int = 1, device="cpu",
                  augment: Augment | None = None, workers: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first k training minibatches of epoch 0 for `seed` (training augmentation): the fixed
    minibatch(es) every candidate of a search is scored on."""
    it = iterate_batches(dataset, batch_size, train=True, seed=seed, epoch=0, device=device,
                         augment=augment, workers=workers)
    try:
        return list(itertools.islice(it, k))
    finally:
        it.close()
