"""ImageNet input pipeline throughput (images/s): ours against torchvision's ImageFolder + DataLoader.

    .venv/bin/python benchmarks/input_pipeline.py [--images 400] [--workers 2] [--batch-size 64] [--rounds 3]

Writes --images synthetic JPEGs of ImageNet-like sizes (about 500×375, both orientations, smooth random
content with some texture, quality 90: 40-80 kB each, near ImageNet's mean) in 8 class folders of a
temporary directory, then times one training epoch of each pipeline at the same worker count and batch
size, both ending in normalised float32 batches:
  (a) ours: `iterate_batches` on `load_dataset("imagenet", ...)` (a `FolderDataset`), train=True;
  (b) torchvision: `datasets.ImageFolder` with `transforms.v2` RandomResizedCrop(224) + RandomHorizontalFlip
      + ToImage + ToDtype(float32, scale=True) + Normalize, `DataLoader(shuffle=True, drop_last=True)`.
The first --warmup batches of each epoch (worker start-up, first decodes) are not timed. The two run
alternately for --rounds rounds so that drift on a shared machine hits them alike; the figures are the best
round's (the one least disturbed by other processes) and the median; the load average is printed first.

    .venv/bin/python benchmarks/input_pipeline.py --decoders [--images 300] [--rounds 3]

Decoding alone, one process, one thread: the same --images files decoded to uint8 RGB C×H×W by
torchvision.io (read_file + decode_image, deprecated since torchvision 0.29), by Pillow
(`imagefolder.decode_image`, what blockswap uses) and by TorchCodec's decode_image where it is installed, as
JPEG (quality 90) and PNG, at the ImageNet-like sizes above and at 32×32 (CIFAR's); alternated for --rounds
rounds, best and median images/s, and whether each gives torchvision.io's pixels (the share of files that
differ and the largest difference if not).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from blockswap.data.datasets import IMAGENET_MEAN, IMAGENET_STD, iterate_batches, load_dataset

CLASSES = 8
SIZES = ((375, 500), (500, 375), (333, 500), (500, 500), (375, 500))  # (height, width), landscape most often


def synthetic_images(n: int, sizes=SIZES):
    """n uint8 3×H×W images: a coarse random colour field upsampled, plus fine noise (a window at a random offset
    into one noise field, which is much quicker than fresh noise per image)."""
    g = torch.Generator().manual_seed(0)
    side = max(max(s) for s in sizes)
    noise = 12 * torch.randn(3, side + 64, side + 64, generator=g)
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        coarse = torch.rand(1, 3, 6, 8, generator=g) * 255
        image = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
        dy, dx = torch.randint(64, (2,), generator=g).tolist()
        yield (image + noise[:, dy: dy + h, dx: dx + w]).clamp(0, 255).to(torch.uint8)


def save(image: torch.Tensor, path: Path, format: str) -> None:
    from PIL import Image

    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, format=format, quality=90)


def write_images(root: Path, n: int) -> None:
    """n JPEGs in root/train/<class>/ (`synthetic_images`)."""
    for c in range(CLASSES):
        (root / "train" / f"n{c:08d}").mkdir(parents=True)
    for i, image in enumerate(synthetic_images(n)):
        save(image, root / "train" / f"n{i % CLASSES:08d}" / f"img{i:06d}.JPEG", "JPEG")


def torchvision_decode(path: str) -> torch.Tensor:
    import warnings

    from torchvision.io import ImageReadMode, decode_image, read_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # what is measured here is why we left it
        return decode_image(read_file(path), mode=ImageReadMode.RGB)


def decoders(n: int, rounds: int) -> None:
    """Decoding speed and agreement of torchvision.io and Pillow on JPEG and PNG files (see the docstring)."""
    from blockswap.data.imagefolder import decode_image

    torch.set_num_threads(1)
    contenders = {"torchvision.io": torchvision_decode, "Pillow": decode_image}
    try:  # TorchCodec, torchvision's successor for decoding, where it is installed
        from torchcodec.decoders import decode_image as torchcodec_decode

        contenders["TorchCodec"] = torchcodec_decode
    except ImportError:
        pass
    print(f"{'files':<22} {'decoder':<15} {'best images/s':>14} {'median':>8}  agreement")
    with tempfile.TemporaryDirectory() as tmp:
        for sizes, label in ((SIZES, "ImageNet-like"), (((32, 32),), "32×32")):
            images = list(synthetic_images(n, sizes))
            for format, suffix in (("JPEG", "JPEG"), ("PNG", "png")):
                paths = [str(Path(tmp) / f"{label}-{i}.{suffix}") for i in range(n)]
                for image, path in zip(images, paths):
                    save(image, Path(path), format)
                rates = {name: [] for name in contenders}
                for _ in range(rounds):
                    for name, decode in contenders.items():
                        start = time.perf_counter()
                        for path in paths:
                            decode(path)
                        rates[name].append(n / (time.perf_counter() - start))
                reference = [torchvision_decode(p).int() for p in paths]
                for name, decode in contenders.items():
                    pairs = [(a, decode(p).int()) for a, p in zip(reference, paths)]
                    differ = sum(not torch.equal(a, b) for a, b in pairs)
                    worst = max((a - b).abs().max().item() for a, b in pairs)
                    agreement = ("identical" if not differ else f"{differ}/{n} files differ, by at most {worst}"
                                 ) + " to torchvision.io"
                    print(f"{label + ' ' + format:<22} {name:<15} {max(rates[name]):>14.0f} "
                          f"{statistics.median(rates[name]):>8.0f}  {agreement}")


def ours(root: Path, batch_size: int, workers: int, seed: int):
    dataset = load_dataset("imagenet", root, "train")
    return iterate_batches(dataset, batch_size, train=True, seed=seed, workers=workers)


def torchvision_loader(root: Path, batch_size: int, workers: int, seed: int):
    from torchvision import datasets
    from torchvision.transforms import v2

    transform = v2.Compose([v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(), v2.ToImage(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    dataset = datasets.ImageFolder(str(root / "train"), transform=transform)
    return iter(torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                            num_workers=workers, generator=torch.Generator().manual_seed(seed)))


def images_per_second(batches, warmup: int) -> float:
    """Throughput over one epoch after the first `warmup` batches; every batch must be float32 224×224."""
    timed = 0
    for k, (images, _) in enumerate(batches):
        assert images.dtype == torch.float32 and images.shape[-2:] == (224, 224)
        if k == warmup - 1:
            start = time.perf_counter()
        elif k >= warmup:
            timed += len(images)
    if not timed:
        raise SystemExit(f"no batches after the {warmup} warm-up ones: use more --images or a smaller --batch-size")
    return timed / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=400, help="JPEGs to write (one epoch)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes, both pipelines")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches at the start of each epoch")
    parser.add_argument("--rounds", type=int, default=3, help="epochs of each pipeline, alternated")
    parser.add_argument("--decoders", action="store_true",
                        help="time decoding alone: torchvision.io against Pillow, on JPEG and PNG files")
    args = parser.parse_args()
    if args.decoders:
        print(f"{args.images} files each, {args.rounds} rounds, 1 thread, torch {torch.__version__}, "
              f"load average {os.getloadavg()[0]:.2f}")
        return decoders(args.images, args.rounds)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the clock starts when the last warm-up batch arrives")
    print(f"{args.images} JPEGs, {args.workers} workers, batch {args.batch_size}, {args.warmup} warm-up batch(es), "
          f"{args.rounds} rounds, torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_images(root, args.images)
        size = sum(p.stat().st_size for p in root.rglob("*.JPEG")) / args.images / 1e3
        print(f"wrote them in {time.perf_counter() - t0:.1f} s, mean {size:.0f} kB")
        pipelines = {"ours": ours, "torchvision": torchvision_loader}
        rates = {name: [] for name in pipelines}
        for r in range(args.rounds):
            for name, make in pipelines.items():
                rates[name].append(images_per_second(make(root, args.batch_size, args.workers, r), args.warmup))
            print(f"round {r + 1}: " + ", ".join(f"{name} {v[-1]:.1f}" for name, v in rates.items()) + " images/s")
    print(f"{'pipeline':<12} {'best images/s':>14} {'median':>8}")
    for name, values in rates.items():
        print(f"{name:<12} {max(values):>14.1f} {statistics.median(values):>8.1f}")
    print(f"ours / torchvision: best {max(rates['ours']) / max(rates['torchvision']):.2f}, "
          f"median {statistics.median(rates['ours']) / statistics.median(rates['torchvision']):.2f}")


if __name__ == "__main__":
    main()
