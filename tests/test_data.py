"""Dataset readers on tiny files in the real formats, augmentation, batch order and subsets."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from blockswap.core.datadirs import DATASET_SHAPES, locate_fashion_mnist
from blockswap.core.errors import BlockswapError
from blockswap.data import datasets as data
from blockswap.data import imagefolder
from blockswap.data.datasets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Augment,
    TensorDataset,
    dataset_names,
    default_augment,
    first_batches,
    iterate_batches,
    load_dataset,
    stratified_subset,
)

from conftest import write_fashion, write_idx, write_jpeg


# ---------------------------------------------------------------------------------------------- helpers
def write_cifar(folder: Path, per_batch=2, n_test=3, protocol=2):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist(), b"batch_label": name.encode()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        out[name] = batch
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"]}, protocol=protocol))
    return out


def toy_dataset(n=10, size=8, channels=3, num_classes=5) -> TensorDataset:
    """Image i is filled with value i, so a batch's pixels say which examples it holds."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, channels, size, size).clone()
    labels = torch.arange(n) % num_classes
    return TensorDataset("toy", images, labels, tuple(map(str, range(num_classes))),
                         (0.0,) * channels, (1.0,) * channels, dict(pad=2, flip=True, cutout=3))


def example_ids(batch: torch.Tensor) -> list[int]:
    return (batch[:, 0, 0, 0] * 255).round().long().tolist()


# ---------------------------------------------------------------------------------------------- registry
def test_registry_names_and_unknown_name():
    assert {"fashion-mnist", "cifar10", "imagenet"} <= set(dataset_names())
    with pytest.raises(BlockswapError, match="valid names: .*cifar10.*fashion-mnist.*imagenet"):
        load_dataset("mnist")
    with pytest.raises(BlockswapError, match="split"):
        load_dataset("fashion-mnist", split="val")


# ----------------------------------------------------------------------------------------- Fashion-MNIST
def test_fashion_mnist_idx_round_trip(tmp_path):
    written = write_fashion(tmp_path)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = load_dataset("fashion-mnist", tmp_path, split=split)
        images, labels = written[prefix]
        assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
        assert ds.images.shape == (len(labels), 1, 28, 28)
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert ds.labels.tolist() == labels.tolist()
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (10, 1, 28)
    assert ds.classes[9] == "Ankle boot"


def test_fashion_mnist_corrupt_files_name_the_file(tmp_path):
    write_fashion(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    good = images.read_bytes()
    images.write_bytes(good[: len(good) // 2])  # truncated gzip stream
    with pytest.raises(BlockswapError, match=r"train-images-idx3-ubyte\.gz.*truncated or corrupt"):
        load_dataset("fashion-mnist", tmp_path)
    raw = gzip.decompress(good)
    images.write_bytes(gzip.compress(raw[:-100]))  # valid gzip, data shorter than the header says
    with pytest.raises(BlockswapError, match=r"train-images-idx3-ubyte\.gz: header says shape \(7, 28, 28\)"):
        load_dataset("fashion-mnist", tmp_path)
    images.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + raw[4:]))  # type code 0x0d = float
    with pytest.raises(BlockswapError, match=r"train-images-idx3-ubyte\.gz: not an IDX file"):
        load_dataset("fashion-mnist", tmp_path)
    write_idx(images, np.zeros((6, 28, 28), np.uint8))  # 6 images for 7 labels
    with pytest.raises(BlockswapError, match=r"train-images.*\(6, 28, 28\).*train-labels.*\(7,\)"):
        load_dataset("fashion-mnist", tmp_path)


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    with pytest.raises(BlockswapError, match="blockswap data fetch fashion-mnist") as err:
        load_dataset("fashion-mnist", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def _real_fashion_mnist() -> Path | None:
    try:
        return locate_fashion_mnist()
    except BlockswapError:
        return None


@pytest.mark.skipif(_real_fashion_mnist() is None,
                    reason="real Fashion-MNIST not found (`blockswap data fetch fashion-mnist` gets it)")
def test_real_fashion_mnist():
    train, test = load_dataset("fashion-mnist"), load_dataset("fashion-mnist", split="test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.num_classes == 10
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    # The documented constants are the statistics of the training pixels.
    pixels = train.images.double() / 255
    assert pixels.mean().item() == pytest.approx(data.FASHION_MNIST_MEAN[0], abs=1e-4)
    assert pixels.std().item() == pytest.approx(data.FASHION_MNIST_STD[0], abs=1e-4)


# ---------------------------------------------------------------------------------------------- CIFAR-10
@pytest.mark.parametrize("layout", ["torchvision-root", "batches-folder"])
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_round_trip(tmp_path, layout, protocol):
    written = write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    data_dir = tmp_path if layout == "torchvision-root" else tmp_path / "cifar-10-batches-py"
    train = load_dataset("cifar10", data_dir)
    test = load_dataset("cifar10", data_dir, split="test")
    rows = np.concatenate([written[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    assert train.images.shape == (10, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(rows).view(10, 3, 32, 32))
    assert train.labels.tolist() == sum((written[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert test.labels.tolist() == written["test_batch"][b"labels"]
    # Channel planes: bytes 0, 1024, 2048 are the R, G, B of pixel (0, 0); byte 33 is R of pixel (1, 1).
    row = written["test_batch"][b"data"][0]
    assert test.images[0, :, 0, 0].tolist() == [row[0], row[1024], row[2048]]
    assert test.images[0, 0, 1, 1] == row[33]
    assert (train.num_classes, train.in_channels, train.image_size, train.mean) == (10, 3, 32, CIFAR10_MEAN)


def test_cifar10_reads_pickles_from_numpy_1(tmp_path):
    # The published batches name numpy.core.multiarray, which numpy 2 calls numpy._core.multiarray.
    written = write_cifar(tmp_path / "batches", protocol=2)
    path = tmp_path / "batches" / "test_batch"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray\n" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    test = load_dataset("cifar10", tmp_path / "batches", split="test")
    assert torch.equal(test.images.view(3, -1), torch.from_numpy(written["test_batch"][b"data"]))


def test_cifar10_errors(tmp_path):
    with pytest.raises(BlockswapError, match=r"torchvision\.datasets\.CIFAR10\(.*download=True"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(BlockswapError, match="needs a data directory"):
        load_dataset("cifar10")
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-40])
    with pytest.raises(BlockswapError, match=r"data_batch_3: cannot read CIFAR-10 batch"):
        load_dataset("cifar10", tmp_path)
    load_dataset("cifar10", tmp_path, split="test")  # the other split is unaffected
    # A pickle that would run code is refused, not executed.
    (folder / "test_batch").write_bytes(pickle.dumps(Path("x")))
    with pytest.raises(BlockswapError, match=r"test_batch: .*refusing to load pathlib"):
        load_dataset("cifar10", tmp_path, split="test")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(BlockswapError, match=r"test_batch: expected uint8 data N×3072"):
        load_dataset("cifar10", tmp_path, split="test")
    (folder / "data_batch_5").unlink()
    with pytest.raises(BlockswapError, match="data_batch_5 is missing"):
        load_dataset("cifar10", tmp_path)


# ---------------------------------------------------------------------------------------------- ImageNet
@pytest.fixture
def imagenet_dir(tmp_path):
    # Folder names deliberately not in creation order; image sizes vary and are not square.
    sizes = {"n02": [(300, 400), (260, 250), (240, 320)], "n01": [(256, 256), (400, 300)]}
    for split in ("train", "val"):
        for k, (wnid, shapes) in enumerate(sizes.items()):
            (tmp_path / split / wnid).mkdir(parents=True)
            for j, (h, w) in enumerate(shapes):
                colour = torch.tensor([40 * k + 10 * j, 100, 200], dtype=torch.uint8).view(3, 1, 1)
                write_jpeg(colour.expand(3, h, w).clone(), tmp_path / split / wnid / f"img{j}.JPEG")
    (tmp_path / "train" / "n01" / "notes.txt").write_text("not an image")
    return tmp_path


def test_imagenet_folders(imagenet_dir):
    ds = load_dataset("imagenet", imagenet_dir, split="test")
    assert ds.classes == ("n01", "n02") and ds.labels.tolist() == [0, 0, 1, 1, 1]
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (2, 3, 224)
    batches = list(iterate_batches(ds, 2, train=False, workers=0))
    assert [tuple(x.shape) for x, _ in batches] == [(2, 3, 224, 224)] * 2 + [(1, 3, 224, 224)]
    assert torch.cat([y for _, y in batches]).tolist() == [0, 0, 1, 1, 1]
    # A flat-coloured JPEG stays (nearly) that colour after resize, crop and normalisation;
    # the first test image is n01/img0, written with colour (40, 100, 200).
    x = batches[0][0][0]
    expected = (torch.tensor([40, 100, 200]) / 255 - torch.tensor(data.IMAGENET_MEAN)) / torch.tensor(data.IMAGENET_STD)
    assert torch.allclose(x.mean(dim=(1, 2)), expected, atol=0.05)


def test_imagenet_training_batches_are_reproducible(imagenet_dir):
    ds = load_dataset("imagenet", imagenet_dir, split="train")
    rng = torch.get_rng_state()
    first = list(iterate_batches(ds, 2, train=True, seed=3, epoch=1, workers=0))
    assert torch.equal(rng, torch.get_rng_state())  # the global RNG is left alone
    again = list(iterate_batches(ds, 2, train=True, seed=3, epoch=1, workers=2))  # worker count is irrelevant
    assert len(first) == 2 and first[0][0].shape == (2, 3, 224, 224)  # 5 images, drop_last
    for (x1, y1), (x2, y2) in zip(first, again):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other = list(iterate_batches(ds, 2, train=True, seed=4, epoch=1, workers=0))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))


def test_imagenet_errors(imagenet_dir, tmp_path_factory):
    with pytest.raises(BlockswapError, match="image-net.org"):
        load_dataset("imagenet", tmp_path_factory.mktemp("empty"))
    (imagenet_dir / "val" / "n02" / "img1.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    ds = load_dataset("imagenet", imagenet_dir, split="test")
    with pytest.raises(BlockswapError, match=r"val/n02/img1\.JPEG: cannot decode"):
        list(iterate_batches(ds, 8, train=False, workers=0))
    (imagenet_dir / "val" / "n03").mkdir()
    with pytest.raises(BlockswapError, match="different class folders"):
        load_dataset("imagenet", imagenet_dir, split="test")


def test_random_resized_box_stays_inside():
    g = torch.Generator().manual_seed(0)
    for h, w in [(300, 400), (50, 2000), (224, 224)]:
        for _ in range(50):
            top, left, ch, cw = imagefolder._random_resized_box(h, w, g)
            assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0


# ------------------------------------------------------------------------------------------ augmentation
def position_image(n: int, size=12) -> torch.Tensor:
    """n copies of a 1-channel image whose pixel (y, x) holds 1 + y*size + x (0 is left for padding)."""
    return (1 + torch.arange(size * size)).view(1, 1, size, size).expand(n, 1, size, size).to(torch.uint8)


def test_augment_same_seed_same_batch():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    aug = Augment(CIFAR10_MEAN, CIFAR10_STD, pad=4, flip=True, cutout=16)
    a, b = (aug(images, torch.Generator().manual_seed(7)) for _ in range(2))
    assert a.dtype == torch.float32 and a.shape == images.shape and torch.equal(a, b)
    assert not torch.equal(a, aug(images, torch.Generator().manual_seed(8)))


def test_crop_shifts_content_by_offsets_within_pad():
    size, pad = 12, 4
    out = Augment((0.0,), (1.0,), pad=pad)(position_image(400, size), torch.Generator().manual_seed(0))
    out = (out * 255).round().long()[:, 0]
    src = torch.nn.functional.pad(position_image(1, size)[0, 0].long(), (pad,) * 4)
    seen = set()
    for img in out:
        # The crop's top-left corner in the padded image is where the output's pixel (0, 0) came from.
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(img, src[dy: dy + size, dx: dx + size])]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) >= 70  # 400 draws over the 81 offsets: nearly all appear


def test_flip_mirrors():
    images = position_image(64)
    out = (Augment((0.0,), (1.0,), flip=True)(images, torch.Generator().manual_seed(0)) * 255).round().byte()
    flipped = torch.tensor([torch.equal(o, images[0].flip(-1)) for o in out])
    unchanged = torch.tensor([torch.equal(o, images[0]) for o in out])
    assert torch.all(flipped ^ unchanged) and 10 < flipped.sum() < 54


@pytest.mark.parametrize("size", [5, 4])
def test_cutout_zeros_a_square_to_the_mean(size):
    images = torch.full((300, 2, 12, 12), 255, dtype=torch.uint8)
    out = Augment((0.5, 0.5), (0.25, 0.25), cutout=size)(images, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 0], out[:, 1])  # same square in every channel
    values = set(out.unique().tolist())
    assert values <= {0.0, 2.0}  # (1 - 0.5) / 0.25 outside, 0 = the normalised mean inside
    full = 0
    for img in out[:, 0]:
        rows, cols = (img == 0).any(1).nonzero().flatten(), (img == 0).any(0).nonzero().flatten()
        assert len(rows) and len(cols)  # the centre is inside the image, so something is always cut
        # The zeros form a rectangle, at most size×size, and exactly that unless clipped by a border.
        assert (img == 0).sum() == len(rows) * len(cols) and len(rows) <= size and len(cols) <= size
        assert torch.equal(rows, torch.arange(rows[0], rows[-1] + 1))
        if 0 < rows[0] and rows[-1] < 11 and 0 < cols[0] and cols[-1] < 11:
            assert (len(rows), len(cols)) == (size, size)
            full += 1
    assert full > 50


def test_normalisation_formula():
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    out = Augment(CIFAR10_MEAN, CIFAR10_STD)(images, torch.Generator())
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    assert torch.allclose(out.double(), (images.double() / 255 - mean.double()) / std.double(), atol=1e-6)


def test_default_augment_recipes():
    ds = toy_dataset()
    assert default_augment(ds, train=True) == Augment(ds.mean, ds.std, pad=2, flip=True, cutout=3)
    assert default_augment(ds, train=False) == Augment(ds.mean, ds.std)
    assert default_augment(ds, train=True, cutout=0).cutout == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_augment_on_cuda_matches_cpu():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    aug = Augment(CIFAR10_MEAN, CIFAR10_STD, pad=4, flip=True, cutout=16)
    cpu = aug(images, torch.Generator().manual_seed(1))
    gpu = aug(images.cuda(), torch.Generator().manual_seed(1))
    assert gpu.is_cuda and torch.allclose(cpu, gpu.cpu(), atol=1e-6)


# ------------------------------------------------------------------------------------------------ batches
def test_test_batches_are_ordered_and_keep_the_last():
    ds = toy_dataset(n=10)
    batches = list(iterate_batches(ds, 4, train=False))
    assert [example_ids(x) for x, _ in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert torch.cat([y for _, y in batches]).tolist() == ds.labels.tolist()


def test_train_batches_shuffle_drop_last_and_keep_labels_aligned():
    ds = toy_dataset(n=10)
    aug = Augment(ds.mean, ds.std)  # no randomness in the pixels, so they still name the example
    batches = list(iterate_batches(ds, 4, train=True, seed=0, epoch=0, augment=aug))
    ids = [example_ids(x) for x, _ in batches]
    assert len(ids) == 2 and all(len(b) == 4 for b in ids) and len(set(sum(ids, []))) == 8
    for (_, y), b in zip(batches, ids):
        assert y.tolist() == [i % 5 for i in b]
    with pytest.raises(BlockswapError, match="fewer than batch size"):
        next(iterate_batches(ds, 11, train=True))


def test_epoch_order_depends_only_on_seed_and_epoch():
    ds = toy_dataset(n=40)

    def epoch(seed, e):
        return [x for x, _ in iterate_batches(ds, 8, train=True, seed=seed, epoch=e)]

    # A fresh run of epochs 0..2 and a run "resumed" at epoch 2 see the same batches at epoch 2.
    uninterrupted = [epoch(5, e) for e in range(3)]
    resumed = epoch(5, 2)
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted[2], resumed))
    order = [[example_ids(x) for x in ep] for ep in uninterrupted]
    assert order[0] != order[1] != order[2]
    assert [example_ids(x) for x in epoch(6, 0)] != order[0]


def test_fixed_batch_is_the_first_training_batch():
    ds = toy_dataset(n=40)
    rng = torch.get_rng_state()
    (x, y), = first_batches(ds, 8, seed=3)
    assert torch.equal(rng, torch.get_rng_state())  # only the epoch generator is used
    x0, y0 = next(iterate_batches(ds, 8, train=True, seed=3, epoch=0))
    assert torch.equal(x, x0) and torch.equal(y, y0)
    (x2, _), = first_batches(ds, 8, seed=3)
    assert torch.equal(x, x2) and not torch.equal(x, first_batches(ds, 8, seed=4)[0][0])
    three = first_batches(ds, 8, seed=3, k=3)
    expected = list(iterate_batches(ds, 8, train=True, seed=3, epoch=0))[:3]
    assert len(three) == 3 and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                   for a, b in zip(three, expected))


def _same_batches(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in zip(a, b))


@pytest.mark.parametrize("shard", [(0, 1), (1, 2)])
def test_resumed_epoch_yields_the_rest_of_the_uninterrupted_one(shard):
    ds = toy_dataset(n=40)  # pad, flip and cutout on: every batch draws from the epoch generator
    whole = list(iterate_batches(ds, 8, train=True, seed=2, epoch=3, shard=shard))
    assert len(whole) == 5
    for start in range(6):
        rest = list(iterate_batches(ds, 8, train=True, seed=2, epoch=3, shard=shard, start=start))
        assert _same_batches(rest, whole[start:]), start
    test = list(iterate_batches(ds, 16, train=False))  # test batches: the last one is partial
    assert _same_batches(list(iterate_batches(ds, 16, train=False, start=2)), test[2:])
    with pytest.raises(BlockswapError, match="cannot start at batch 6: the epoch has 5 batches"):
        next(iterate_batches(ds, 8, train=True, start=6))


@pytest.fixture
def noise_jpegs(tmp_path):
    """imagenet/train/ with 2 class folders of 5 random-noise JPEGs of assorted sizes: crops differ visibly."""
    g = torch.Generator().manual_seed(0)
    for i in range(10):
        folder = tmp_path / "train" / f"n{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        image = torch.randint(0, 256, (3, 40 + 4 * i, 60 - 2 * i), dtype=torch.uint8, generator=g)
        write_jpeg(image, folder / f"img{i}.JPEG")
    return tmp_path


@pytest.mark.parametrize("shard", [(0, 1), (1, 2)])
def test_resumed_folder_epoch_decodes_only_what_it_yields(noise_jpegs, monkeypatch, shard):
    from dataclasses import replace
    ds = replace(load_dataset("imagenet", noise_jpegs), image_size=32)  # small crops: a quick test
    augment = Augment(ds.mean, ds.std, flip=True, cutout=8)  # on-device draws after the per-image crops
    whole = list(iterate_batches(ds, 2, train=True, seed=1, epoch=2, augment=augment, workers=0, shard=shard))
    decoded = []

    def counting(path, seed, size):
        decoded.append(path)
        return load_image(path, seed, size)

    load_image = imagefolder.load_image
    monkeypatch.setattr(imagefolder, "load_image", counting)
    per_batch = 2 // shard[1]
    for start in (1, 3, 5):
        decoded.clear()
        rest = list(iterate_batches(ds, 2, train=True, seed=1, epoch=2, augment=augment, workers=0, shard=shard,
                                    start=start))
        assert _same_batches(rest, whole[start:]), start
        assert len(decoded) == (5 - start) * per_batch  # the skipped batches' images were never decoded
    # With worker processes too (the count is not visible there, the batches are).
    monkeypatch.undo()
    rest = list(iterate_batches(ds, 2, train=True, seed=1, epoch=2, augment=augment, workers=2, shard=shard,
                                start=2))
    assert _same_batches(rest, whole[2:])


# ------------------------------------------------------------------------------------------------ subsets
def test_stratified_subset_counts_and_seeds():
    shuffle = torch.randperm(60, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0] * 10 + [1] * 20 + [2] * 30)[shuffle]
    idx = stratified_subset(labels, 12, seed=0)
    assert torch.bincount(labels[idx]).tolist() == [2, 4, 6]
    assert torch.equal(idx, idx.unique())  # sorted, no repeats
    assert torch.equal(idx, stratified_subset(labels, 12, seed=0))
    assert not torch.equal(idx, stratified_subset(labels, 12, seed=1))
    # Remainders go to the largest fractional shares: 7 of (10, 20, 30) -> exact (1.17, 2.33, 3.5).
    assert torch.bincount(labels[stratified_subset(labels, 7, seed=0)]).tolist() == [1, 2, 4]
    with pytest.raises(BlockswapError, match="subset=61"):
        stratified_subset(labels, 61, seed=0)


def test_load_dataset_subset(tmp_path):
    write_fashion(tmp_path, n_train=200)
    full = load_dataset("fashion-mnist", tmp_path)
    sub = load_dataset("fashion-mnist", tmp_path, subset=50, seed=2)
    idx = stratified_subset(full.labels, 50, seed=2)
    assert len(sub) == 50 and torch.equal(sub.images, full.images[idx]) and torch.equal(sub.labels, full.labels[idx])
    share = torch.bincount(full.labels, minlength=10) * 50 / 200
    assert (torch.bincount(sub.labels, minlength=10) - share).abs().max() < 1


def test_every_dataset_yields_its_declared_shape(tmp_path, imagenet_dir):
    """The workflow's config check reads DATASET_SHAPES without loading data: it must match the loaders."""
    write_fashion(tmp_path / "fashion")
    write_cifar(tmp_path / "cifar")
    folders = {"fashion-mnist": tmp_path / "fashion", "cifar10": tmp_path / "cifar", "imagenet": imagenet_dir}
    # "folder" (a user's image folder) has the shape of its images: no profile names it
    assert set(DATASET_SHAPES) == set(dataset_names()) - {"folder"} == set(folders)
    for name, folder in folders.items():
        ds = load_dataset(name, folder, split="test")
        declared = DATASET_SHAPES[name]
        assert ds.in_channels == declared["in_channels"] and ds.image_size == declared["image_size"], name
        assert declared["num_classes"] in (None, ds.num_classes), name
