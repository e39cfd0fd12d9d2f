"""Image files in class folders (ImageNet's layout), decoded lazily in DataLoader workers: `FolderDataset`.

A set too big to hold in memory keeps its file paths; every image is decoded when its batch is read, with the
training crop of Szegedy et al., "Going deeper with convolutions" (CVPR 2015): a random area of 8-100% of
the image and aspect ratio 3/4-4/3, resized to size×size, flipped with probability 1/2 - or, for testing,
the short side resized to size·8/7 and the centre crop. Each image's crop comes from its own seed, drawn
from the epoch's generator in the training process, so the crops do not depend on which worker decodes
which image, nor on how many workers there are.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..core.errors import BlockswapError

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
SMALL_SIDE = 64  # folders of images no larger than this are decoded once and held in memory, as CIFAR is
FOLDER_HOW = "an image folder holds DIR/train/<class>/* and DIR/val/<class>/*, the same class folders in both"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's ImageNet recipe
# How an image is sized to the network's input (`Preprocess.resize`):
RESIZE_CROP = "resize-crop"  # short side resized to size·256/224 (antialiased), then the centre size×size crop
RESIZE = "resize"  # the whole image resized to size×size (a folder of small images: those not at the first's size)
NO_RESIZE = "none"  # the dataset's images are all size×size already


@dataclass(frozen=True)
class Preprocess:
    """What turns an image file into a network's input, as training and testing did it - and as a deployment
    must: sized to `in_channels`×`image_size`² by `resize` (one of RESIZE_CROP, RESIZE, NO_RESIZE, above),
    scaled to [0, 1], minus `mean`, divided by `std` (per channel). `normalize` is where mean and std came from,
    as `--normalize` spells it (imagenet, folder, MEAN:STD) or "dataset" (a built-in dataset's own)."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    in_channels: int
    resize: str
    normalize: str

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "image_size": self.image_size,
                "in_channels": self.in_channels, "resize": self.resize, "normalize": self.normalize}

    def describe(self) -> str:
        """One line for a log or a card: 'imagenet: mean 0.485,0.456,0.406, std ...; 32 px, resize'."""
        return (f"{self.normalize}: mean {as_spec(self.mean)}, std {as_spec(self.std)}; {self.in_channels}×"
                f"{self.image_size}² px, {self.resize}")


def as_spec(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def normalize_spec(mean, std) -> str:
    """MEAN:STD, as --normalize takes it."""
    return f"{as_spec(mean)}:{as_spec(std)}"


def class_folders(root: Path) -> list[str]:
    """The sorted names of the folders in `root` (none if it is missing): the classes, labelled by rank."""
    return sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []


def image_files(root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    """(paths, labels) of the images in root/<class>/ for each class, sorted by name within a class."""
    paths, labels = [], []
    for k, c in enumerate(classes):
        files = sorted(str(f) for f in (root / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [k] * len(files)
    return paths, labels


def folder_split(data_dir: Path | None, split: str, how: str, min_classes: int = 1
                 ) -> tuple[list[str], list[str], list[int]]:
    """(classes, paths, labels) of data_dir/train (split "train") or data_dir/val (else), checked: class folders
    present, at least `min_classes`, the same in both splits (labels are folder ranks), each with images.
    `how` ends each error: what the user should give."""
    if data_dir is None:
        raise BlockswapError(f"no data directory given (--data-dir); {how}")
    root = data_dir / ("train" if split == "train" else "val")
    classes = class_folders(root)
    if not classes:
        raise BlockswapError(f"{root} is missing or has no class folders; {how}")
    if len(classes) < min_classes:
        raise BlockswapError(f"{root} has {len(classes)} class folder ({classes[0]}); a classifier needs "
                             f"{min_classes} or more; {how}")
    other = class_folders(data_dir / ("val" if split == "train" else "train"))
    if other and other != classes:
        raise BlockswapError(f"{data_dir}/train and {data_dir}/val hold different class folders "
                             f"({len(classes)} vs {len(other)}); {how}")
    paths, labels = image_files(root, classes)
    empty = sorted(set(range(len(classes))) - set(labels))
    if empty:
        raise BlockswapError(f"{root / classes[empty[0]]} holds no .JPEG/.jpg/.png images; {how}")
    return classes, paths, labels


def undecodable(path: str, error: Exception) -> BlockswapError:
    """One line for a file the decoder refused: its reason without the decoder's source location."""
    reason = " ".join(str(error).split()).rsplit(".cpp:", 1)[-1].lstrip("0123456789, ")
    return BlockswapError(f"{path}: cannot decode image ({reason[:200]}); replace or delete the file")


PNG_SIGNATURE, JPEG_START, JPEG_END = b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"\xff\xd9"


def check_image_files(paths) -> None:
    """Refuse, in one line naming the first, a file that is not a whole PNG or JPEG: its signature, and its end
    (PNG's IEND chunk, JPEG's end-of-image marker in its last KiB) - what a truncated copy lacks. Reads 1 KiB a
    file (3,000 files: 0.16 s; decoding them all took 6.6 s), so a folder decoded lazily, image by image during
    training, is checked before any work; a folder of small images is decoded whole at once anyway."""
    for path in paths:
        with open(path, "rb") as f:
            head, size = f.read(8), f.seek(0, 2)
            f.seek(max(0, size - 1024))
            tail = f.read()
        if head.startswith(PNG_SIGNATURE):
            whole = tail[-12:-4] == b"\0\0\0\0IEND"
        elif head.startswith(JPEG_START):
            whole = JPEG_END in tail
        else:
            raise BlockswapError(f"{path}: not a PNG or JPEG image (its first bytes are {head[:4]!r}); replace "
                                 "or delete the file")
        if not whole:
            raise BlockswapError(f"{path}: truncated image ({size:,} bytes, no end marker); replace or delete "
                                 "the file")


GREY_MODES = {"1", "L", "I", "I;16", "F"}  # Pillow's modes of one-channel images


def decode_image(path: str, mode: str | None = "RGB") -> torch.Tensor:
    """One image file decoded by Pillow to uint8 C×H×W: `mode` "RGB" (three channels; alpha dropped, grey
    repeated), "L" (one: grey, or ITU-R 601 luma of a colour image) or None (one if the file is grey, else
    three). A file Pillow cannot decode raises `undecodable`'s one-line error."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as img:
            if mode is None:
                mode = "L" if img.mode in GREY_MODES else "RGB"
            img = img.convert(mode) if img.mode != mode else img
            pixels = np.array(img)  # decodes, and copies into a writable array torch can share
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's UnidentifiedImageError is an OSError
        raise undecodable(path, e) from None
    return torch.from_numpy(pixels).unsqueeze(0) if pixels.ndim == 2 else torch.from_numpy(pixels).permute(2, 0, 1)


def encode_png(image: torch.Tensor, path) -> None:
    """uint8 C×H×W (C 1 or 3) written as a PNG file (lossless: `decode_image` gives the same tensor back)."""
    from PIL import Image

    pixels = image.permute(1, 2, 0).numpy()
    Image.fromarray(pixels[..., 0] if image.shape[0] == 1 else pixels).save(path, format="PNG")


def decode_all(paths: list[str]) -> torch.Tensor:
    """Every image of `paths` decoded, uint8 N×C×H×W at the first image's size (others resized to it): one
    channel if the first image has one (grayscale), else three (RGB)."""
    from torchvision.transforms.v2 import functional as TF

    first = decode_image(paths[0], None)
    mode = "L" if first.shape[0] == 1 else "RGB"
    size = list(first.shape[-2:])
    out = torch.empty(len(paths), first.shape[0], *size, dtype=torch.uint8)
    for i, path in enumerate(paths):
        img = decode_image(path, mode)
        out[i] = img if list(img.shape[-2:]) == size else TF.resize(img, size, antialias=True)
    return out


@functools.lru_cache(maxsize=2)  # training reads the train split's statistics again for the test split
def decoded_split(data_dir: str, split: str) -> torch.Tensor:
    """The images of one split of a user's folder (`folder_split`), decoded (`decode_all`)."""
    return decode_all(folder_split(Path(data_dir), split, FOLDER_HOW, min_classes=2)[1])


def pixel_statistics(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 N×C×H×W images in [0, 1] units, to 4 places."""
    pixels = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255
    return tuple(tuple(round(float(v), 4) for v in stat) for stat in (pixels.mean(1), pixels.std(1)))


def first_image_side(path: str) -> int:
    """The longer side of one image, read from its header."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return max(img.size)
    except (OSError, SyntaxError, ValueError) as e:
        raise undecodable(path, e) from None


def write_folder(train, test, root: Path) -> Path:
    """Two in-memory splits as an image folder: root/{train,val}/<class>/<index>.png ("/" in a class name
    becomes "-"); written into a temporary folder renamed at the end, so a folder present is complete."""
    from ..core.files import atomic_dir

    with atomic_dir(root) as tmp:
        for split, ds in (("train", train), ("val", test)):
            names = [c.replace("/", "-") for c in ds.classes]
            for name in names:
                (tmp / split / name).mkdir(parents=True)
            for i, (img, label) in enumerate(zip(ds.images, ds.labels.tolist())):
                encode_png(img, tmp / split / names[label] / f"{i:05d}.png")
    return root


@dataclass(frozen=True)
class FolderDataset:
    """Image files in class folders, decoded on demand to uint8 3×224×224 (see `load_image`)."""
    name: str
    paths: tuple[str, ...]
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_recipe: dict  # crop and flip happen while decoding, so on the device only normalisation is left
    in_channels: int = 3
    image_size: int = 224
    normalize: str = "imagenet"  # where mean and std came from (`Preprocess.normalize`)

    @property
    def preprocess(self) -> Preprocess:
        """Testing's preprocessing (`load_image` with no seed): the short side to size·8/7, the centre crop."""
        return Preprocess(self.mean, self.std, self.image_size, self.in_channels, RESIZE_CROP, self.normalize)

    def statistics(self, most: int = 512) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel pixel mean and std of (at most `most`, evenly spaced) images as testing crops them: a
        folder's statistics without decoding all of it."""
        step = max(1, -(-len(self) // most))
        images = torch.stack([load_image(p, None, self.image_size) for p in self.paths[::step]])
        return pixel_statistics(images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, index: torch.Tensor) -> FolderDataset:
        return replace(self, paths=tuple(self.paths[i] for i in index.tolist()), labels=self.labels[index])

    def to(self, device) -> FolderDataset:
        """Itself: the files stay where they are, each batch is decoded on the host."""
        return self

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """`item` = (index, seed): seed >= 0 gives the training crop drawn from that seed, -1 the test crop."""
        index, seed = item
        return load_image(self.paths[index], None if seed < 0 else seed, self.image_size), self.labels[index]

    def batches(self, chunks: list[torch.Tensor], *, train: bool, generator: torch.Generator, augment,
                device: torch.device, part: slice, sharded: bool, start: int, workers: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches of `chunks` (index tensors) from `start` on, as `data.iterate_batches` yields them:
        only this process's `part` of each is decoded (when `sharded`), in `workers` DataLoader processes."""
        g, n = generator, len(self)
        # Each image gets its own crop seed, drawn here, so that the crops do not depend on which worker
        # decodes the image.
        seeds = torch.randint(2**62, (n,), generator=g) if train else torch.full((n,), -1)
        batches = [list(zip(idx.tolist(), seeds[idx].tolist())) for idx in chunks]
        if sharded:
            batches = [b[part] for b in batches]
        for b in batches[:start]:
            augment.draw(len(b), self.image_size, self.image_size, g)
        # Imported here, before the workers fork: they inherit what load_image needs rather than each
        # importing it anew (about a second) every epoch.
        import PIL.Image  # noqa: F401
        import torchvision.transforms.v2.functional  # noqa: F401
        # Our own generator, because without one the DataLoader draws its worker seed from (and so moves)
        # torch's global RNG; decoding never uses that seed.
        loader = torch.utils.data.DataLoader(self, batch_sampler=batches[start:], num_workers=workers,
                                             pin_memory=device.type == "cuda", generator=torch.Generator())
        for images, labels in loader:
            yield augment(images.to(device, non_blocking=True), g), labels.to(device, non_blocking=True)


def _random_resized_box(h: int, w: int, g: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """(top, left, height, width) of the standard Inception-style crop: random area and aspect ratio."""
    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand((), generator=g).item()
    for _ in range(10):
        area = h * w * uniform(*scale)
        aspect = math.exp(uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(h - ch + 1, (), generator=g))
            left = int(torch.randint(w - cw + 1, (), generator=g))
            return top, left, ch, cw
    # Rarely (very elongated images) no sample fits: fall back to the central crop of clamped aspect.
    cw, ch = (w, min(h, round(w / ratio[0]))) if w / h < ratio[0] else (min(w, round(h * ratio[1])), h)
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def load_image(path: str, seed: int | None, size: int = 224) -> torch.Tensor:
    """Decode one image to uint8 3×size×size: random-resized crop + flip from `seed`, or (seed None)
    resize the short side to size·8/7 (256 for 224) and take the centre crop."""
    from torchvision.transforms.v2 import functional as TF  # slow import, only image folders need it

    img = decode_image(path, "RGB")
    if seed is None:  # RESIZE_CROP
        return TF.center_crop(TF.resize(img, [size * 8 // 7], antialias=True), [size, size])
    g = torch.Generator().manual_seed(seed)
    top, left, h, w = _random_resized_box(img.shape[-2], img.shape[-1], g)
    img = TF.resized_crop(img, top, left, h, w, [size, size], antialias=True)
    return img.flip(-1) if torch.rand((), generator=g) < 0.5 else img
